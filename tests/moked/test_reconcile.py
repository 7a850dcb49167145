"""moked/reconcile.py, one step at a time, in-process on the test run's Postgres.

The stack's own reconciler runs too, every second: these tests give the step a spool
directory and a fallback log of their own (a settings copy), and a Redis database no
process of the stack reads (`private_redis`), so what they assert is their step's doing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from redis import Redis
from sqlalchemy import select

from moked import metrics, reconcile, recordings
from moked.db.models import Call, Recording, WebhookEvent
from moked.db.session import session_scope
from moked.intake import InboundEvent
from moked.queue import pending_job
from moked.settings import Settings
from moked.spool import Spool
from moked.statuses import Endpoint, EventSource, ProcessingStatus, RecordingStatus
from moked.twilio.signature import FormParams, sign
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, new_recording_sid

# Not a Twilio host: should the stack's worker take one of these recordings, it refuses
# the URL at once, offline.
MEDIA = "https://media.example.invalid/Recordings/"


@pytest.fixture
def settings(stack: StackUnderTest, tmp_path: Path) -> Settings:
    return stack.settings.model_copy(
        update={"spool_dir": tmp_path / "spool", "nginx_fallback_log": tmp_path / "fallback.log"}
    )


def _event(endpoint: Endpoint, params: dict[str, str]) -> InboundEvent:
    return InboundEvent(endpoint, dict(params), dt.datetime.now(dt.UTC))


def _recorded_call(number: str) -> tuple[str, str, dict[str, str]]:
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    completed = call_params(
        call_sid,
        number,
        CallStatus="completed",
        RecordingStatus="completed",
        RecordingSid=recording_sid,
        RecordingUrl=MEDIA + recording_sid,
    )
    return call_sid, recording_sid, completed


def _recording(recording_sid: str) -> Recording:
    with session_scope() as session:
        row = session.scalar(select(Recording).where(Recording.recording_sid == recording_sid))
        assert row is not None, recording_sid
        session.expunge(row)
        return row


# --- 1. the spool --------------------------------------------------------------------------


def test_spooled_events_are_applied_in_order_and_their_recording_queued(
    settings: Settings, private_redis: Redis, make_business
) -> None:
    number = make_business().numbers[0].e164
    call_sid, recording_sid, completed = _recorded_call(number)
    spool = Spool(settings.spool_dir)
    spool.put(_event(Endpoint.INCOMING_CALL, call_params(call_sid, number)))
    spool.put(_event(Endpoint.RECORDING_STATUS, completed))

    assert reconcile.replay_spool(settings, private_redis) == 2

    assert spool.count() == 0
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None and call.business_id is not None
        sources = session.scalars(
            select(WebhookEvent.source).where(WebhookEvent.call_sid == call_sid)
        ).all()
    assert sorted(sources) == [EventSource.SPOOL, EventSource.SPOOL]
    assert _recording(recording_sid).processing_status is ProcessingStatus.AWAITING_TRANSCRIPTION
    assert pending_job(private_redis, recording_sid) is not None
    assert reconcile.replay_spool(settings, private_redis) == 0  # nothing left, nothing twice


def test_an_unreadable_spool_file_is_set_aside_and_the_next_pass_goes_on(
    settings: Settings, private_redis: Redis, make_business
) -> None:
    number = make_business().numbers[0].e164
    call_sid = new_call_sid()
    settings.spool_dir.mkdir(parents=True)
    (settings.spool_dir / "00000000000000000000-torn.json").write_text('{"endpoint": "inc')
    Spool(settings.spool_dir).put(_event(Endpoint.INCOMING_CALL, call_params(call_sid, number)))

    assert reconcile.replay_spool(settings, private_redis) == 0
    assert (settings.spool_dir / "00000000000000000000-torn.bad").exists()
    assert reconcile.replay_spool(settings, private_redis) == 1
    with session_scope() as session:
        assert session.scalar(select(Call.id).where(Call.call_sid == call_sid)) is not None


# --- 2. nginx's fallback log ------------------------------------------------------------------


def _fallback_line(settings: Settings, uri: str, params: dict[str, str], **entry: str) -> str:
    """One line of nginx's fallback log for a request Twilio signed (nginx/…: log_format)."""
    token = settings.twilio_auth_token.get_secret_value()
    signature = sign(
        token, settings.public_base + uri, FormParams({k: [v] for k, v in params.items()})
    )
    line = {
        "id": "0123456789abcdef0123456789abcdef",
        "time": "2026-12-01T10:00:05+00:00",
        "uri": uri,
        "signature": signature,
        "status": "502",
        "body": urlencode(params),
        **entry,
    }
    return json.dumps(line)


def test_a_signed_fallback_line_is_a_twilio_event(stack: StackUnderTest) -> None:
    settings = stack.settings
    params = call_params(new_call_sid(), "+97235550000", CallStatus="completed")

    event = reconcile.parse_fallback_line(
        _fallback_line(settings, "/webhook/call_status", params), settings
    )

    assert event is not None
    assert event.endpoint is Endpoint.CALL_STATUS
    assert event.source is EventSource.NGINX_FALLBACK
    assert event.params == params
    assert event.received_at == dt.datetime(2026, 12, 1, 10, 0, 5, tzinfo=dt.UTC)


def test_a_fallback_line_twilio_did_not_sign_is_ignored(stack: StackUnderTest) -> None:
    settings = stack.settings
    params = call_params(new_call_sid(), "+97235550000")
    good = json.loads(_fallback_line(settings, "/webhook/incoming_call", params))
    forged = {**good, "body": urlencode({**params, "From": "+972509999999"})}
    unsigned = {**good, "signature": None}
    elsewhere = json.loads(_fallback_line(settings, "/metrics", params))
    unknown = json.loads(_fallback_line(settings, "/webhook/nope", params))

    for entry in (forged, unsigned, elsewhere, unknown):
        assert reconcile.parse_fallback_line(json.dumps(entry), settings) is None, entry
    assert reconcile.parse_fallback_line("not json", settings) is None
    other_token = settings.model_copy(update={"twilio_auth_token": settings.secret_key})
    assert reconcile.parse_fallback_line(json.dumps(good), other_token) is None


def test_new_fallback_lines_are_applied_once(
    settings: Settings, private_redis: Redis, make_business
) -> None:
    number = make_business().numbers[0].e164
    call_sid, recording_sid, completed = _recorded_call(number)
    log = settings.nginx_fallback_log
    first = _fallback_line(settings, "/webhook/incoming_call", call_params(call_sid, number))
    forged = json.dumps({**json.loads(first), "signature": "Zm9yZ2Vk"})
    log.write_text(first + "\n" + forged + "\n")

    assert reconcile.replay_nginx_fallback(settings, private_redis) == 1
    assert reconcile.replay_nginx_fallback(settings, private_redis) == 0  # read up to here

    second = _fallback_line(settings, "/webhook/recording_status", completed)
    with log.open("a") as handle:
        handle.write(second + "\n" + second[:40])  # nginx is still writing the last one
    assert reconcile.replay_nginx_fallback(settings, private_redis) == 1
    assert pending_job(private_redis, recording_sid) is not None
    with session_scope() as session:
        sources = session.scalars(
            select(WebhookEvent.source).where(WebhookEvent.call_sid == call_sid)
        ).all()
    assert sources == [EventSource.NGINX_FALLBACK, EventSource.NGINX_FALLBACK]


def test_a_fallback_line_read_again_after_a_failed_replay_is_counted_once(tmp_path: Path):
    log = tmp_path / "twilio_fallback.log"
    alert = InboundEvent(
        endpoint=Endpoint.TWILIO_ALERTS,
        params={"Level": "ERROR", "Payload": '{"error_code": "12300"}'},
        received_at=dt.datetime.now(dt.UTC),
    )
    fallback = metrics.NGINX_FALLBACK_ANSWERS.labels("twilio_alerts")
    errors = metrics.TWILIO_ERRORS.labels(code="12300", level="error")
    answers_before, errors_before = fallback._value.get(), errors._value.get()

    reconcile._count_fallback_once(log, 0, alert)
    reconcile._count_fallback_once(log, 0, alert)  # the same line, read again next pass
    reconcile._count_fallback_once(log, 120, alert)  # the next line

    assert fallback._value.get() == answers_before + 2
    assert errors._value.get() == errors_before + 2  # Debugger events nginx answered count too


# --- 3. recordings whose job is gone -------------------------------------------------------


@pytest.fixture
def waiting(make_business) -> Iterator[str]:
    """A recording Twilio completed (queued just now, in the stack's Redis: none here)."""
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    business = make_business()
    with session_scope() as session:
        call = Call(call_sid=call_sid, business_id=business.id)
        session.add(call)
        session.flush()
        session.add(Recording(recording_sid=recording_sid, call_id=call.id, media_url=MEDIA))
        session.flush()
        recording = recordings.lock(session, recording_sid)
        assert recording is not None
        assert recordings.media_reported(recording, RecordingStatus.COMPLETED, recordings.utcnow())
    yield recording_sid
    with session_scope() as session:  # not left for the stack's workers to try
        recordings.fail(session, recording_sid, "test over", final=True)


def test_a_waiting_recording_without_a_job_is_queued_again(
    settings: Settings, private_redis: Redis, waiting: str
) -> None:
    queued_before = _recording(waiting).queued_at
    assert queued_before is not None
    stale_now = settings.model_copy(update={"reconcile_stale_after_seconds": 0.0})

    assert reconcile.requeue_stale(stale_now, private_redis) >= 1

    job = pending_job(private_redis, waiting)
    assert job is not None
    after = _recording(waiting)
    assert after.processing_status is ProcessingStatus.AWAITING_TRANSCRIPTION
    assert after.queued_at is not None and after.queued_at > queued_before
    # Its job is pending now: another pass queues nothing for it.
    reconcile.requeue_stale(stale_now, private_redis)
    assert pending_job(private_redis, waiting).enqueued_at == job.enqueued_at  # type: ignore[union-attr]


def test_a_recording_queued_recently_is_left_to_its_job(
    settings: Settings, private_redis: Redis, waiting: str
) -> None:
    patient = settings.model_copy(update={"reconcile_stale_after_seconds": 3600.0})

    reconcile.requeue_stale(patient, private_redis)

    assert pending_job(private_redis, waiting) is None
