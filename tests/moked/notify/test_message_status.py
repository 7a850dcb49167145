"""Twilio's delivery reports on SMS/WhatsApp alerts (/webhook/message_status): signed like
every webhook, logged once, recorded on the delivery whose MessageSid it names, never
backwards; replayed from nginx's fallback log like the others; and, end to end, posted by
the Messaging API simulator through nginx after the channel sent the message."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from moked import reconcile
from moked.db.models import Business, Call, NotificationDelivery, WebhookEvent
from moked.db.session import session_scope
from moked.notify import alerts
from moked.notify.channels import Envelope, twilio_messages
from moked.queue import redis_client
from moked.simulator.twilio_api import TwilioApiSimulator
from moked.statuses import AlertKind, Channel, DeliveryStatus, Endpoint
from moked.twilio.signature import FormParams, sign
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, unique_number
from tests.moked.notify.conftest import Isolated

PATH = Endpoint.MESSAGE_STATUS.path


def new_message_sid() -> str:
    return "SM" + secrets.token_hex(16)


def a_call(twilio: TwilioClient) -> str:
    call_sid = new_call_sid()
    assert (
        twilio.post(Endpoint.INCOMING_CALL.path, call_params(call_sid, unique_number())).status_code
        == 200
    )
    return call_sid


def sent_delivery(session: Session, call_sid: str, provider_id: str | None) -> int:
    call = session.scalar(select(Call).where(Call.call_sid == call_sid))
    assert call is not None
    delivery = NotificationDelivery(
        call_id=call.id,
        channel=Channel.SMS,
        recipient=unique_number(),
        kind=AlertKind.MESSAGE_READY,
        status=DeliveryStatus.SENT,
        message_id="msg_" + secrets.token_hex(16),
        attempts=1,
        provider_id=provider_id,
        sent_at=dt.datetime.now(dt.UTC),
    )
    session.add(delivery)
    session.flush()
    return delivery.id


def report(message_sid: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "AccountSid": "AC" + "0123456789abcdef" * 2,
        "ApiVersion": "2010-04-01",
        "From": "+97235550100",
        "To": "+972541234567",
        "MessageSid": message_sid,
        "MessageStatus": status,
        "SmsSid": message_sid,
        "SmsStatus": status,
        **extra,
    }


def provider_state(isolated: Isolated, delivery_id: int) -> tuple[str | None, str | None]:
    with isolated.session() as session:
        delivery = session.get(NotificationDelivery, delivery_id)
        assert delivery is not None
        return delivery.provider_status, delivery.provider_error_code


def test_delivered_is_recorded_on_the_delivery_and_the_event_logged_once(
    isolated: Isolated,
) -> None:
    sid = new_message_sid()
    with isolated.session() as session:
        delivery_id = sent_delivery(session, a_call(isolated.twilio), sid)

    for status in ("sent", "delivered", "delivered"):  # Twilio may send one twice
        answer = isolated.twilio.post(PATH, report(sid, status))
        assert answer.status_code == 200
        assert answer.mimetype == "text/plain"
        assert answer.get_data(as_text=True) == "OK"

    assert provider_state(isolated, delivery_id) == ("delivered", None)
    with isolated.session() as session:
        logged = session.scalars(
            select(WebhookEvent).where(WebhookEvent.endpoint == Endpoint.MESSAGE_STATUS.value)
        ).all()
        assert sum(1 for e in logged if e.params.get("MessageSid") == sid) == 2
    # A late `sent` never moves it back.
    isolated.twilio.post(PATH, report(sid, "sent", SmsStatus="sent"))
    assert provider_state(isolated, delivery_id) == ("delivered", None)


def test_undelivered_keeps_twilios_error_code(isolated: Isolated) -> None:
    sid = new_message_sid()
    with isolated.session() as session:
        delivery_id = sent_delivery(session, a_call(isolated.twilio), sid)

    isolated.twilio.post(PATH, report(sid, "undelivered", ErrorCode="30003"))

    assert provider_state(isolated, delivery_id) == ("undelivered", "30003")


def test_unsigned_is_refused_and_an_unknown_message_is_acknowledged(isolated: Isolated) -> None:
    sid = new_message_sid()
    with isolated.session() as session:
        delivery_id = sent_delivery(session, a_call(isolated.twilio), sid)

    assert isolated.twilio.post(PATH, report(sid, "delivered"), signed=False).status_code == 403
    assert provider_state(isolated, delivery_id) == (None, None)
    for params in (report(new_message_sid(), "delivered"), {"MessageSid": "garbage"}):
        answer = isolated.twilio.post(PATH, params)
        assert (answer.status_code, answer.get_data(as_text=True)) == (200, "OK")


def test_a_report_nginx_answered_is_replayed_from_its_log(isolated: Isolated, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sid = new_message_sid()
    with isolated.session() as session:
        delivery_id = sent_delivery(session, a_call(isolated.twilio), sid)
    settings = isolated.settings.model_copy(
        update={"nginx_fallback_log": tmp_path / "twilio_fallback.log"}
    )
    params = report(sid, "undelivered", ErrorCode="30005")
    token = settings.twilio_auth_token.get_secret_value()
    signature = sign(
        token, settings.public_url(PATH), FormParams({k: [v] for k, v in params.items()})
    )
    line = {
        "id": secrets.token_hex(16),
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "uri": PATH,
        "signature": signature,
        "status": "502",
        "body": urlencode(params),
    }
    settings.nginx_fallback_log.write_text(json.dumps(line) + "\n")

    event = reconcile.parse_fallback_line(json.dumps(line), settings)
    assert event is not None and event.endpoint is Endpoint.MESSAGE_STATUS
    assert reconcile.replay_nginx_fallback(settings, redis_client(settings.redis_url)) == 1

    assert provider_state(isolated, delivery_id) == ("undelivered", "30005")


def test_the_simulator_reports_through_nginx_what_the_channel_sent(
    stack: StackUnderTest, twilio: TwilioClient
) -> None:
    """The development loop: the channel sends to the simulator, which posts its signed
    reports to PUBLIC_HOST like Twilio; nginx, the webhooks and the delivery row do the rest."""
    settings = stack.settings
    now = dt.datetime.now(dt.UTC)
    call_sid = a_call(twilio)
    with TwilioApiSimulator(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        callback_delay=0.5,  # time to record the MessageSid before Twilio reports on it
    ) as simulator:
        routed = settings.model_copy(update={"twilio_api_base": simulator.url})
        with session_scope() as session:
            delivery_id = sent_delivery(session, call_sid, None)
        recipient = "+972541230003"  # the simulator's undeliverable handset
        envelope = Envelope(
            channel=Channel.SMS,
            recipient=recipient,
            alerts=(alerts.sample(settings, Business(name="עסק", language="he"), now),),
            message_id="msg_" + secrets.token_hex(8),
            attempt=1,
            sent_at=now,
            sender="+97235550100",
            status_callback=settings.public_url(PATH),
        )
        receipt = twilio_messages.send(routed, envelope)
        with session_scope() as session:
            delivery = session.get(NotificationDelivery, delivery_id)
            assert delivery is not None
            delivery.provider_id = receipt.provider_id
        assert receipt.provider_id is not None
        callbacks = simulator.wait_for_callbacks(receipt.provider_id, 2, timeout=20)

    assert [(c.status, c.http_status) for c in callbacks] == [
        ("sent", 200),
        ("undelivered", 200),
    ]
    deadline = time.monotonic() + 10
    while True:
        with session_scope() as session:
            delivery = session.get(NotificationDelivery, delivery_id)
            assert delivery is not None
            state = (delivery.provider_status, delivery.provider_error_code)
        if state == ("undelivered", "30003") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert state == ("undelivered", "30003")
