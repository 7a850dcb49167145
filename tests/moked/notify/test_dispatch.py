"""From a final transcript to a person, with the clock in the test's hands: the planner
decides once, the dispatcher sends under the row's lock, retries back off, quiet hours
hold and release a digest. Real Postgres (a database of its own), a real SMTP server and a
real webhook receiver on loopback."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from moked import recordings
from moked.db.models import Business, Call, NotificationDelivery
from moked.notify import alerts, dispatch, planner, rules
from moked.notify.channels import webhook as webhook_channel
from moked.queue import fetch_job, notifications_queue, redis_client
from moked.statuses import AlertKind, Channel, DeliveryStatus, NotifyWhen, ProcessingStatus
from tests.helpers import call_params, recorded_call, settle
from tests.moked.notify.conftest import Isolated
from tests.moked.notify.receivers import SmtpServer, WebhookReceiver

JERUSALEM = ZoneInfo("Asia/Jerusalem")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver().start()
    yield running
    running.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def add_rule(isolated: Isolated, business: Business, **fields: object) -> int:
    with isolated.session() as session:
        business_row = session.get(Business, business.id)
        assert business_row is not None
        rule = rules.add(session, isolated.settings, business_row, rules.NewRule(**fields))  # type: ignore[arg-type]
        return rule.id


def webhook_rule(
    isolated: Isolated, business: Business, url: str, **fields: object
) -> tuple[int, str]:
    secret = webhook_channel.new_secret()
    return add_rule(
        isolated, business, channel=Channel.WEBHOOK, target=url, secret=secret, **fields
    ), secret


def voicemail(
    isolated: Isolated, business: Business, status: ProcessingStatus, transcript: str = ""
) -> tuple[str, str]:
    call_sid, recording_sid = recorded_call(isolated.twilio, business.numbers[0].e164)
    with isolated.session() as session:
        settle(session, recording_sid, status, transcript=transcript)
    return call_sid, recording_sid


def deliveries_of(isolated: Isolated, call_sid: str) -> list[NotificationDelivery]:
    with isolated.session() as session:
        rows = session.scalars(
            select(NotificationDelivery)
            .join(Call, Call.id == NotificationDelivery.call_id)
            .where(Call.call_sid == call_sid)
        ).all()
        session.expunge_all()
        return list(rows)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def plan(isolated: Isolated, call_sid: str, at: dt.datetime) -> list[int]:
    with isolated.session() as session:
        return planner.plan_call(session, isolated.settings, call_sid, at)


def test_a_ready_voicemail_reaches_a_webhook_once_signed(
    isolated: Isolated, isolated_business: Callable[..., Business], receiver: WebhookReceiver
) -> None:
    business = isolated_business()
    _rule, secret = webhook_rule(isolated, business, receiver.url)
    call_sid, _ = voicemail(isolated, business, ProcessingStatus.READY, "שלום, תחזרו אליי")
    ids = plan(isolated, call_sid, now())
    assert len(ids) == 1
    assert plan(isolated, call_sid, now()) == []  # decided once
    assert dispatch.deliver(isolated.settings, ids[0]) is DeliveryStatus.SENT
    assert dispatch.deliver(isolated.settings, ids[0]) is None  # already sent: nothing
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    Webhook(secret).verify(request.body, request.headers)
    event = json.loads(request.body)
    assert event["type"] == "call.message_ready"
    assert event["data"]["call_sid"] == call_sid
    assert event["data"]["transcript"] == "שלום, תחזרו אליי"
    (row,) = deliveries_of(isolated, call_sid)
    assert (row.status, row.attempts, row.provider_id) == (DeliveryStatus.SENT, 1, "HTTP 200")
    assert row.kind is AlertKind.MESSAGE_READY


def test_503_twice_then_200_is_one_delivery_with_one_id(
    isolated: Isolated, isolated_business: Callable[..., Business]
) -> None:
    receiver = WebhookReceiver(statuses=(503, 503, 200)).start()
    try:
        business = isolated_business()
        _rule, secret = webhook_rule(isolated, business, receiver.url)
        call_sid, _ = voicemail(isolated, business, ProcessingStatus.READY, "hello")
        (delivery_id,) = plan(isolated, call_sid, now())
        clock = now()
        assert dispatch.deliver(isolated.settings, delivery_id, clock) is DeliveryStatus.PENDING
        # Not due yet: the backoff holds the next attempt back.
        assert dispatch.deliver(isolated.settings, delivery_id, clock) is None
        (row,) = deliveries_of(isolated, call_sid)
        assert row.next_attempt_at is not None and row.next_attempt_at > clock
        first_wait = row.next_attempt_at - clock
        clock = row.next_attempt_at
        assert dispatch.deliver(isolated.settings, delivery_id, clock) is DeliveryStatus.PENDING
        (row,) = deliveries_of(isolated, call_sid)
        assert row.next_attempt_at is not None
        assert row.next_attempt_at - clock > first_wait  # exponential
        assert "503" in (row.last_error or "")
        clock = row.next_attempt_at
        assert dispatch.deliver(isolated.settings, delivery_id, clock) is DeliveryStatus.SENT
    finally:
        receiver.stop()
    assert len(receiver.requests) == 3
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1
    for request in receiver.requests:
        Webhook(secret).verify(request.body, request.headers)
    (row,) = deliveries_of(isolated, call_sid)
    assert (row.status, row.attempts, row.last_error) == (DeliveryStatus.SENT, 3, None)
    assert row.message_id in ids


def test_a_4xx_fails_at_once_with_its_reason(
    isolated: Isolated, isolated_business: Callable[..., Business]
) -> None:
    receiver = WebhookReceiver(statuses=(404,)).start()
    try:
        business = isolated_business()
        webhook_rule(isolated, business, receiver.url)
        call_sid, _ = voicemail(isolated, business, ProcessingStatus.READY, "hello")
        (delivery_id,) = plan(isolated, call_sid, now())
        assert dispatch.deliver(isolated.settings, delivery_id) is DeliveryStatus.FAILED
        assert dispatch.deliver(isolated.settings, delivery_id, force=True) is None
    finally:
        receiver.stop()
    assert len(receiver.requests) == 1
    (row,) = deliveries_of(isolated, call_sid)
    assert row.status is DeliveryStatus.FAILED
    assert "404" in (row.last_error or "")
    assert row.provider_error_code == "404"


def test_transient_failures_give_up_after_the_retry_window(
    isolated: Isolated, isolated_business: Callable[..., Business]
) -> None:
    receiver = WebhookReceiver(statuses=(500,)).start()
    try:
        business = isolated_business()
        webhook_rule(isolated, business, receiver.url)
        call_sid, _ = voicemail(isolated, business, ProcessingStatus.READY, "hello")
        (delivery_id,) = plan(isolated, call_sid, now())
        assert dispatch.deliver(isolated.settings, delivery_id) is DeliveryStatus.PENDING
        later = now() + dt.timedelta(hours=isolated.settings.notify_retry_hours, minutes=1)
        assert dispatch.deliver(isolated.settings, delivery_id, later) is DeliveryStatus.FAILED
    finally:
        receiver.stop()
    (row,) = deliveries_of(isolated, call_sid)
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 2)
    assert (row.last_error or "").startswith("gave up after 24 h")


def test_the_smtp_server_down_then_up_delivers_once(
    isolated: Isolated, isolated_business: Callable[..., Business]
) -> None:
    server = SmtpServer()  # not started: the port refuses connections
    settings = isolated.settings.model_copy(update={"smtp_url": server.url})
    business = isolated_business()
    add_rule(isolated, business, channel=Channel.EMAIL, target="owner@example.org")
    call_sid, _ = voicemail(isolated, business, ProcessingStatus.READY, "שלום")
    (delivery_id,) = plan(isolated, call_sid, now())
    clock = now()
    assert dispatch.deliver(settings, delivery_id, clock) is DeliveryStatus.PENDING
    server.start()
    try:
        (row,) = deliveries_of(isolated, call_sid)
        clock = row.next_attempt_at or clock
        assert dispatch.deliver(settings, delivery_id, clock) is DeliveryStatus.SENT
        assert dispatch.deliver(settings, delivery_id, clock, force=True) is None
    finally:
        server.stop()
    assert len(server.inbox) == 1
    assert server.inbox[0]["To"] == "owner@example.org"
    (row,) = deliveries_of(isolated, call_sid)
    assert (row.status, row.attempts, row.provider_id) == (DeliveryStatus.SENT, 2, "Q1")


def test_a_transcriber_that_never_finishes_still_yields_one_alert(
    isolated: Isolated, isolated_business: Callable[..., Business], receiver: WebhookReceiver
) -> None:
    business = isolated_business()
    webhook_rule(isolated, business, receiver.url)
    call_sid, recording_sid = voicemail(isolated, business, ProcessingStatus.TRANSCRIBING)
    wait = dt.timedelta(seconds=isolated.settings.notify_transcript_wait_seconds)
    assert plan(isolated, call_sid, now() + wait / 2) == []
    (delivery_id,) = plan(isolated, call_sid, now() + wait + dt.timedelta(seconds=1))
    assert dispatch.deliver(isolated.settings, delivery_id) is DeliveryStatus.SENT
    event = json.loads(receiver.requests[0].body)
    assert event["type"] == "call.message_ready"
    assert event["data"]["transcript"] is None
    # The transcript arrives after all: no second alert.
    with isolated.session() as session:
        assert recordings.finish(
            session, recording_sid, recordings.Transcript("late words", "he", "local", "m")
        )
    assert plan(isolated, call_sid, now() + 2 * wait) == []
    assert len(receiver.requests) == 1
    assert len(deliveries_of(isolated, call_sid)) == 1


def test_a_missed_call_waits_for_the_grace_then_alerts_missed_rules_only(
    isolated: Isolated, isolated_business: Callable[..., Business], receiver: WebhookReceiver
) -> None:
    business = isolated_business()
    webhook_rule(isolated, business, receiver.url, when=NotifyWhen.MISSED)
    smtp_only_messages = add_rule(
        isolated, business, channel=Channel.EMAIL, target="staff@example.org"
    )
    to = business.numbers[0].e164
    params = call_params("CA" + "7" * 32, to)
    assert isolated.twilio.post("/webhook/incoming_call", params).status_code == 200
    ended = {**params, "CallStatus": "completed", "CallDuration": "4"}
    assert isolated.twilio.post("/webhook/call_status", ended).status_code == 200
    grace = dt.timedelta(seconds=isolated.settings.notify_missed_grace_seconds)
    assert plan(isolated, params["CallSid"], now()) == []  # the recording may still come
    ids = plan(isolated, params["CallSid"], now() + grace + dt.timedelta(seconds=1))
    assert len(ids) == 1  # the missed-call rule; not the voicemail one
    rows = deliveries_of(isolated, params["CallSid"])
    assert [(r.kind, r.channel) for r in rows] == [(AlertKind.MISSED, Channel.WEBHOOK)]
    assert rows[0].rule_id != smtp_only_messages
    assert dispatch.deliver(isolated.settings, ids[0]) is DeliveryStatus.SENT
    assert json.loads(receiver.requests[0].body)["type"] == "call.missed"


def test_a_rule_covers_calls_after_it_only(
    isolated: Isolated, isolated_business: Callable[..., Business], receiver: WebhookReceiver
) -> None:
    business = isolated_business()
    call_sid, _ = voicemail(isolated, business, ProcessingStatus.READY, "before the rule")
    webhook_rule(isolated, business, receiver.url)
    assert plan(isolated, call_sid, now()) == []
    assert deliveries_of(isolated, call_sid) == []


def _next_local(hour: int, minute: int) -> dt.datetime:
    local = now().astimezone(JERUSALEM)
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= local:
        candidate += dt.timedelta(days=1)
    return candidate.astimezone(dt.UTC)


def test_quiet_hours_hold_the_night_and_send_one_digest_at_seven(
    isolated: Isolated, isolated_business: Callable[..., Business], smtp: SmtpServer
) -> None:
    settings = isolated.settings.model_copy(
        update={"smtp_url": smtp.url, "notify_lookback_hours": 48.0}
    )
    business = isolated_business(timezone="Asia/Jerusalem")
    rule_id = add_rule(
        isolated,
        business,
        channel=Channel.EMAIL,
        target="owner@example.org",
        quiet_hours="22:00-07:00",
        hold_in_quiet_hours=True,
    )
    night = _next_local(23, 30)
    first, _ = voicemail(isolated, business, ProcessingStatus.READY, "first message")
    second, _ = voicemail(isolated, business, ProcessingStatus.READY, "second message")
    with isolated.session() as session:
        assert planner.plan_call(session, settings, first, night) == []
        assert planner.plan_call(session, settings, second, night + dt.timedelta(minutes=20)) == []
    held = deliveries_of(isolated, first) + deliveries_of(isolated, second)
    assert {r.status for r in held} == {DeliveryStatus.HELD}
    seven = night.astimezone(JERUSALEM).replace(hour=7, minute=0) + dt.timedelta(days=1)
    assert {r.held_until for r in held} == {seven.astimezone(dt.UTC)}
    assert dispatch.release_digest(settings, None, rule_id, seven - dt.timedelta(minutes=1)) == 0
    assert smtp.inbox == []
    assert dispatch.release_digest(settings, None, rule_id, seven) == 2
    assert dispatch.release_digest(settings, None, rule_id, seven) == 0
    (digest,) = smtp.inbox
    body = digest.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "first message" in text and "second message" in text
    rows = deliveries_of(isolated, first) + deliveries_of(isolated, second)
    assert {(r.status, r.provider_id) for r in rows} == {(DeliveryStatus.SENT, "Q1")}


def test_the_sweep_plans_what_waited_and_queues_each_delivery_once(
    isolated: Isolated, isolated_business: Callable[..., Business], receiver: WebhookReceiver
) -> None:
    redis = redis_client(isolated.settings.redis_url)
    redis.flushdb()
    business = isolated_business()
    webhook_rule(isolated, business, receiver.url)
    call_sid, _ = voicemail(isolated, business, ProcessingStatus.READY, "hello")
    dispatch.sweep(isolated.settings, redis, now())
    (row,) = deliveries_of(isolated, call_sid)
    assert fetch_job(redis, f"delivery-{row.id}").args == [row.id]
    queued = notifications_queue(redis).job_ids
    # Its job is still waiting: the next sweeps queue nothing more (other tests' leftovers
    # in this database are queued by the first sweep too, hence the comparison of lists).
    assert dispatch.sweep(isolated.settings, redis, now()) == 0
    assert notifications_queue(redis).job_ids == queued
    assert queued.count(f"delivery-{row.id}") == 1


def test_removing_a_rule_cancels_what_it_held(
    isolated: Isolated, isolated_business: Callable[..., Business], receiver: WebhookReceiver
) -> None:
    redis = redis_client(isolated.settings.redis_url)
    redis.flushdb()
    business = isolated_business(timezone="Asia/Jerusalem")
    rule_id, _ = webhook_rule(
        isolated, business, receiver.url, quiet_hours="22:00-07:00", hold_in_quiet_hours=True
    )
    call_sid, _ = voicemail(isolated, business, ProcessingStatus.READY, "at night")
    night = _next_local(23, 0)
    assert plan(isolated, call_sid, night) == []
    (row,) = deliveries_of(isolated, call_sid)
    assert row.status is DeliveryStatus.HELD and row.held_until is not None
    with isolated.session() as session:
        assert rules.remove(session, business.id, rule_id)
    # The person taken off the list hears nothing, even when the quiet hours end.
    dispatch.sweep(isolated.settings, redis, row.held_until + dt.timedelta(seconds=1))
    (row,) = deliveries_of(isolated, call_sid)
    assert not redis.exists(f"rq:job:delivery-{row.id}")
    assert (row.status, row.rule_id) == (DeliveryStatus.FAILED, None)
    assert "rule was removed" in (row.last_error or "")
    assert receiver.requests == []


def test_twilios_anonymous_number_is_a_withheld_caller(
    isolated: Isolated, isolated_business: Callable[..., Business], receiver: WebhookReceiver
) -> None:
    # Twilio puts +266696687 in From for an anonymous caller: no one to call back. The
    # alert says "withheld" and the payload has no number (moked.callers decides, for the
    # alerts, the inbox and the CRM's tel: links alike).
    business = isolated_business()
    webhook_rule(isolated, business, receiver.url)
    call_sid = "CA" + "6" * 32
    params = call_params(call_sid, business.numbers[0].e164, From="+266696687")
    assert isolated.twilio.post("/webhook/incoming_call", params).status_code == 200
    with isolated.session() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        alert = alerts.build(session, isolated.settings, call, AlertKind.MISSED)
    assert alert.from_number is None
    assert alerts.caller(alert) == "מספר חסוי"
    assert alerts.payload(alert, now())["data"]["from"] is None
