"""The notifier on the whole stack: a voicemail through nginx, transcribed by the real
worker, reaches a webhook receiver once, however often Twilio, RQ and the reconciler
repeat themselves."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from moked.db.models import Business, Call, NotificationDelivery
from moked.db.session import session_scope
from moked.notify import dispatch, rules
from moked.notify.channels import webhook as webhook_channel
from moked.queue import redis_client
from moked.statuses import Channel, DeliveryStatus
from tests.harness import StackUnderTest
from tests.helpers import call_params
from tests.moked.notify.receivers import WebhookReceiver
from tests.services.transcriber.audio import VOICEMAIL_TEXT, telephone_mp3
from tests.services.transcriber.conftest import leave_voicemail, wait_for
from tests.services.transcriber.doubles import TwilioDouble


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver().start()
    yield running
    running.stop()


def _deliveries(call_sid: str) -> list[NotificationDelivery]:
    with session_scope() as session:
        rows = list(
            session.scalars(
                select(NotificationDelivery)
                .join(Call, Call.id == NotificationDelivery.call_id)
                .where(Call.call_sid == call_sid)
            )
        )
        session.expunge_all()
        return rows


def _wait_for_requests(receiver: WebhookReceiver, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.requests) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{len(receiver.requests)} webhook requests, wanted {count}")
        time.sleep(0.1)


def test_one_alert_per_voicemail_whatever_repeats(
    stack: StackUnderTest,
    twilio_api: TwilioDouble,
    english_business: Business,
    receiver: WebhookReceiver,
) -> None:
    secret = webhook_channel.new_secret()
    with session_scope() as session:
        business = session.get(Business, english_business.id)
        assert business is not None
        rules.add(
            session,
            stack.settings,
            business,
            rules.NewRule(channel=Channel.WEBHOOK, target=receiver.url, secret=secret),
        )
    message = leave_voicemail(stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT))
    stored = wait_for(message.recording_sid)
    assert stored.processing_status.value == "ready"
    _wait_for_requests(receiver, 1)

    # Twilio repeats its callback, RQ runs the jobs again, the reconciler sweeps (every
    # second in the test stack): still one delivery, one request.
    to = english_business.numbers[0].e164
    again = stack.post(
        "/webhook/recording_status",
        call_params(
            message.call_sid,
            to,
            RecordingSid=message.recording_sid,
            RecordingUrl=twilio_api.recording_url(message.recording_sid),
            RecordingStatus="completed",
        ),
    )
    assert again.status_code < 300
    redis = redis_client(stack.settings.redis_url)
    (delivery,) = _deliveries(message.call_sid)
    dispatch.queue_plan(redis, message.call_sid)
    dispatch.queue_delivery(redis, delivery.id)
    time.sleep(4 * stack.settings.reconcile_interval_seconds)

    assert len(receiver.requests) == 1
    (delivery,) = _deliveries(message.call_sid)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)
    request = receiver.requests[0]
    Webhook(secret).verify(request.body, request.headers)
    event = json.loads(request.body)
    assert event["data"]["call_sid"] == message.call_sid
    assert "cake" in (event["data"]["transcript"] or "").lower()
    assert delivery.sent_at is not None and delivery.trigger_at is not None

    metrics = requests.get(
        f"http://127.0.0.1:{stack.settings.notifier_metrics_port}/metrics", timeout=5
    ).text
    assert 'moked_notifications_total{channel="webhook",outcome="sent"}' in metrics
    assert "moked_notification_latency_seconds_bucket" in metrics
