"""Twilio Debugger events become bounded metric labels; the backlog gauges measure Postgres
and Redis from outside the workers; nginx fallback answers are counted once."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sqlalchemy import delete

from moked import backlog, metrics, reconcile
from moked.db.models import Call, Recording
from moked.db.session import session_scope
from moked.intake import InboundEvent
from moked.queue import redis_client
from moked.statuses import Endpoint, ProcessingStatus
from moked.twilio import debugger
from tests.harness import StackUnderTest
from tests.helpers import new_call_sid, new_recording_sid


def event(**params: str) -> debugger.DebuggerEvent:
    return debugger.parse(params)


def test_the_code_and_level_come_from_payload_and_level():
    parsed = event(
        Sid="NO" + "a" * 32,
        Level="ERROR",
        Payload=json.dumps({"error_code": 11200, "resource_sid": "CA" + "b" * 32}),
    )
    assert (parsed.code, parsed.level) == ("11200", "error")
    assert parsed.resource_sid == "CA" + "b" * 32
    assert debugger.event_id(parsed) == "twilio-alert-NO" + "a" * 32


def test_label_values_stay_bounded_whatever_is_posted():
    assert event(Level="Warning", Payload='{"error_code": "12300"}').level == "warning"
    assert event(Level="PANIC", Payload="{}").level == "unknown"
    assert event(Payload="not json").code == "unknown"
    assert event(Payload="[1, 2]").code == "unknown"
    assert event(Payload='{"error_code": "1234567"}').code == "invalid"
    assert event(Payload='{"error_code": "11200; drop"}').code == "invalid"
    assert event(Payload='{"error_code": "١١٢٠٠"}').code == "invalid"  # non-ASCII digits
    assert event(Sid="NO<script>").sid is None
    assert debugger.event_id(event()) is None  # no Sid: a fresh id, counted every time


def test_watched_codes_exist_at_zero_before_any_error():
    debugger.initialise_metrics()
    for code in ("11200", "12300"):
        assert metrics.TWILIO_ERRORS.labels(code=code, level="error")._value.get() >= 0


def test_backlog_gauges_measure_waiting_recordings_and_live_workers(stack: StackUnderTest):
    now = dt.datetime.now(dt.UTC)
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    with session_scope() as session:
        call = Call(call_sid=call_sid)
        session.add(call)
        session.flush()
        session.add(
            Recording(
                recording_sid=recording_sid,
                call_id=call.id,
                processing_status=ProcessingStatus.TRANSCRIBING,
                completed_at=now - dt.timedelta(minutes=20),
            )
        )
    try:
        measured = backlog.measure(redis_client(stack.settings.redis_url), now=now)
    finally:
        with session_scope() as session:
            session.execute(delete(Recording).where(Recording.recording_sid == recording_sid))
            session.execute(delete(Call).where(Call.call_sid == call_sid))
    assert measured.oldest_waiting_seconds is not None
    assert measured.oldest_waiting_seconds >= 20 * 60
    assert measured.queue_depth is not None and measured.queue_depth >= 0
    assert measured.workers is not None
    assert metrics.TRANSCRIPTION_OLDEST_WAITING._value.get() == measured.oldest_waiting_seconds


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
