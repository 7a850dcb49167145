"""moked/backlog.py: the backlog gauges measure Postgres and Redis from outside the workers."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, make_url
from sqlalchemy.exc import OperationalError

from moked import backlog, metrics
from moked.db.models import Call, Recording
from moked.db.session import session_scope
from moked.queue import redis_client
from moked.statuses import ProcessingStatus
from tests.harness import StackUnderTest
from tests.helpers import new_call_sid, new_recording_sid


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
        measured = backlog.measure(stack.settings, redis_client(stack.settings.redis_url), now=now)
    finally:
        with session_scope() as session:
            session.execute(delete(Recording).where(Recording.recording_sid == recording_sid))
            session.execute(delete(Call).where(Call.call_sid == call_sid))
    assert measured.oldest_waiting_seconds is not None
    assert measured.oldest_waiting_seconds >= 20 * 60
    assert measured.queue_depth is not None and measured.queue_depth >= 0
    assert measured.workers is not None
    assert metrics.TRANSCRIPTION_OLDEST_WAITING._value.get() == measured.oldest_waiting_seconds


def test_the_backlog_reads_the_database_of_its_settings(stack: StackUnderTest) -> None:
    """Given settings for another database, it reads that one (here: none is listening),
    never the process's own."""
    elsewhere = stack.settings.database_url.replace(
        f":{make_url(stack.settings.database_url).port}/", ":9/"
    )
    settings = stack.settings.model_copy(update={"database_url": elsewhere})
    with pytest.raises(OperationalError):
        backlog.oldest_waiting_seconds(settings, dt.datetime.now(dt.UTC))
    assert backlog.oldest_waiting_seconds(stack.settings, dt.datetime.now(dt.UTC)) >= 0
