"""A recording's life (moked.recordings): every change, allowed and refused, on real Postgres.

The expected table is written here by hand, from the states' meaning, not derived from
`recordings.TRANSITIONS`: a change to the machine that this table does not expect fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from redis import Redis
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from moked import recordings
from moked.db.models import Call, Recording
from moked.db.session import session_scope
from moked.queue import pending_job, redis_client
from moked.statuses import ProcessingStatus, RecordingStatus
from tests.harness import StackUnderTest
from tests.helpers import new_call_sid, new_recording_sid

S = ProcessingStatus
NOW = dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC)
QUEUED_AT = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
"""In the future, so the stack's reconciler never takes these rows for stale and queues them."""
MEDIA = "https://media.example.invalid/Recordings/RE1"
"""Not a Twilio host: should a worker take one of these, it refuses it at once, offline."""

Operation = Callable[[Session, str], object]


def _reported(status: RecordingStatus) -> Operation:
    def operation(session: Session, sid: str) -> object:
        recording = recordings.lock(session, sid)
        assert recording is not None
        return recordings.media_reported(recording, status, NOW, "16101")

    return operation


def _finish(text: str) -> Operation:
    def operation(session: Session, sid: str) -> object:
        transcript = recordings.Transcript(text, "he", "local", "base", 3.0)
        return recordings.finish(session, sid, transcript)

    return operation


def _fail(final: bool) -> Operation:
    def operation(session: Session, sid: str) -> object:
        return recordings.fail(session, sid, "boom", final=final)

    return operation


OPERATIONS: dict[str, Operation] = {
    "twilio_completed": _reported(RecordingStatus.COMPLETED),
    "twilio_absent": _reported(RecordingStatus.ABSENT),
    "twilio_failed": _reported(RecordingStatus.FAILED),
    "claim": recordings.claim,
    "start_transcribing": recordings.start_transcribing,
    "finish_speech": _finish("שלום, תחזרו אליי"),
    "finish_silence": _finish("   "),
    "fail_transient": _fail(False),
    "fail_final": _fail(True),
    "retry": recordings.retry,
}

REFUSED = "InvalidTransition"
NOTHING = "NothingToDo"
RETRY_REFUSED = "RetryRefused"
SAME = "unchanged"
"""A late or duplicate change to a recording already final (or a no-op): nothing moves."""

WORKING = (S.AWAITING_TRANSCRIPTION, S.DOWNLOADING, S.TRANSCRIBING)
FINAL = (S.READY, S.EMPTY, S.FAILED, S.ABSENT)

EXPECTED: dict[tuple[ProcessingStatus, str], ProcessingStatus | str] = {}
for _final in FINAL:
    for _name in OPERATIONS:
        EXPECTED[_final, _name] = SAME
    EXPECTED[_final, "claim"] = NOTHING
    EXPECTED[_final, "retry"] = RETRY_REFUSED
EXPECTED[S.EMPTY, "retry"] = S.AWAITING_TRANSCRIPTION
EXPECTED[S.FAILED, "retry"] = S.AWAITING_TRANSCRIPTION
EXPECTED.update(
    {
        (S.AWAITING_MEDIA, "twilio_completed"): S.AWAITING_TRANSCRIPTION,
        (S.AWAITING_MEDIA, "twilio_absent"): S.ABSENT,
        (S.AWAITING_MEDIA, "twilio_failed"): S.FAILED,
        (S.AWAITING_MEDIA, "claim"): NOTHING,
        (S.AWAITING_MEDIA, "start_transcribing"): REFUSED,
        (S.AWAITING_MEDIA, "finish_speech"): REFUSED,
        (S.AWAITING_MEDIA, "finish_silence"): REFUSED,
        (S.AWAITING_MEDIA, "fail_transient"): REFUSED,
        (S.AWAITING_MEDIA, "fail_final"): REFUSED,
        (S.AWAITING_MEDIA, "retry"): RETRY_REFUSED,
    }
)
for _working in WORKING:
    EXPECTED.update(
        {
            (_working, "twilio_completed"): SAME,
            (_working, "twilio_absent"): SAME,
            (_working, "twilio_failed"): SAME,
            (_working, "claim"): S.DOWNLOADING,
            (_working, "fail_transient"): S.AWAITING_TRANSCRIPTION,
            (_working, "fail_final"): S.FAILED,
            (_working, "retry"): RETRY_REFUSED,
        }
    )
EXPECTED.update(
    {
        (S.AWAITING_TRANSCRIPTION, "start_transcribing"): REFUSED,
        (S.AWAITING_TRANSCRIPTION, "finish_speech"): REFUSED,
        (S.AWAITING_TRANSCRIPTION, "finish_silence"): REFUSED,
        (S.DOWNLOADING, "start_transcribing"): S.TRANSCRIBING,
        (S.DOWNLOADING, "finish_speech"): REFUSED,
        (S.DOWNLOADING, "finish_silence"): REFUSED,
        (S.TRANSCRIBING, "start_transcribing"): REFUSED,
        (S.TRANSCRIBING, "finish_speech"): S.READY,
        (S.TRANSCRIBING, "finish_silence"): S.EMPTY,
    }
)


def test_the_table_covers_every_state_and_operation() -> None:
    assert set(EXPECTED) == {(state, name) for state in S for name in OPERATIONS}


_created: list[int] = []


@pytest.fixture(autouse=True)
def _remove_rows() -> Iterator[None]:
    """The rows are the test's alone: gone before the stack's workers could see them."""
    yield
    if _created:
        with session_scope() as session:
            session.execute(delete(Call).where(Call.id.in_(_created)))  # recordings cascade
        _created.clear()


@dataclass
class Row:
    sid: str
    queued_at: dt.datetime | None


def make_recording(status: ProcessingStatus, *, media: bool = True, queued: bool = True) -> Row:
    """A call and a recording put in `status`: the fixture of a state, written as a row."""
    sid = new_recording_sid()
    queued_at = QUEUED_AT if queued else None
    with session_scope() as session:
        call = Call(call_sid=new_call_sid())
        session.add(call)
        session.flush()
        _created.append(call.id)
        session.add(
            Recording(
                recording_sid=sid,
                call_id=call.id,
                processing_status=status,
                media_url=MEDIA if media else None,
                queued_at=queued_at,
                attempts=2,
                transcript="קודם" if status is S.READY else None,
            )
        )
    return Row(sid, queued_at)


def read(sid: str) -> Recording:
    with session_scope() as session:
        recording = session.scalar(select(Recording).where(Recording.recording_sid == sid))
        assert recording is not None
        session.expunge(recording)
        return recording


@pytest.mark.parametrize(("state", "operation"), sorted(EXPECTED))
def test_transition(stack: StackUnderTest, state: ProcessingStatus, operation: str) -> None:
    row = make_recording(state)
    before = read(row.sid)
    expected = EXPECTED[state, operation]
    errors = {
        REFUSED: recordings.InvalidTransition,
        NOTHING: recordings.NothingToDo,
        RETRY_REFUSED: recordings.RetryRefused,
    }
    if isinstance(expected, str) and expected in errors:
        with pytest.raises(errors[expected]), session_scope() as session:
            OPERATIONS[operation](session, row.sid)
        assert read(row.sid).processing_status is state, "a refused change rolled back"
        return
    with session_scope() as session:
        OPERATIONS[operation](session, row.sid)
    after = read(row.sid)
    if expected == SAME:
        assert after.processing_status is state
        assert (after.transcript, after.attempts, after.error) == (
            before.transcript,
            before.attempts,
            before.error,
        )
        return
    assert after.processing_status is expected
    if operation == "claim":
        assert after.attempts == before.attempts + 1
        assert after.processing_started_at is not None
    if operation == "retry":
        assert after.attempts == 0 and after.error is None
        assert after.queued_at is not None and after.queued_at < QUEUED_AT
    if operation.startswith("finish"):
        assert after.processing_finished_at is not None
        assert after.transcript == ("שלום, תחזרו אליי" if expected is S.READY else "")
    if operation == "fail_final":
        assert after.error == "boom" and after.processing_finished_at is not None


def test_twilio_completed_queues_once(stack: StackUnderTest) -> None:
    row = make_recording(S.AWAITING_MEDIA, queued=False)
    completed = OPERATIONS["twilio_completed"]
    with session_scope() as session:
        assert completed(session, row.sid) is True
    with session_scope() as session:
        assert completed(session, row.sid) is False, "a duplicate callback queues nothing"
    assert read(row.sid).completed_at == NOW


def test_twilio_failure_keeps_its_code(stack: StackUnderTest) -> None:
    row = make_recording(S.AWAITING_MEDIA)
    with session_scope() as session:
        OPERATIONS["twilio_failed"](session, row.sid)
    after = read(row.sid)
    assert after.error_code == "16101" and "16101" in (after.error or "")


def test_retry_needs_media(stack: StackUnderTest) -> None:
    row = make_recording(S.FAILED, media=False)
    with pytest.raises(recordings.RetryRefused, match="no media"), session_scope() as session:
        recordings.retry(session, row.sid)
    assert not recordings.can_retry(read(row.sid))
    assert recordings.can_retry(read(make_recording(S.EMPTY).sid))


def test_unknown_recording(stack: StackUnderTest) -> None:
    with pytest.raises(recordings.NothingToDo), session_scope() as session:
        recordings.claim(session, new_recording_sid())
    with pytest.raises(recordings.RetryRefused), session_scope() as session:
        recordings.retry(session, new_recording_sid())


def test_retry_and_queue_commits_then_queues(stack: StackUnderTest) -> None:
    row = make_recording(S.FAILED)
    redis = redis_client(stack.settings.redis_url)
    with session_scope() as session:
        assert recordings.retry_and_queue(session, redis, row.sid) is True
    assert read(row.sid).processing_status is S.AWAITING_TRANSCRIPTION
    assert pending_job(redis, row.sid) is not None


def test_retry_without_redis_leaves_it_to_the_reconciler(stack: StackUnderTest) -> None:
    row = make_recording(S.EMPTY)
    nowhere = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    with session_scope() as session:
        assert recordings.retry_and_queue(session, nowhere, row.sid) is False
    after = read(row.sid)
    assert after.processing_status in recordings.WAITING_FOR_TRANSCRIPT
    assert after.queued_at is not None


def test_mark_queued_restarts_the_clock_only_while_waiting(stack: StackUnderTest) -> None:
    waiting, done = make_recording(S.AWAITING_TRANSCRIPTION), make_recording(S.READY)
    with session_scope() as session:
        recordings.mark_queued(session, waiting.sid)
        recordings.mark_queued(session, done.sid)
    assert read(waiting.sid).queued_at < QUEUED_AT  # type: ignore[operator]
    assert read(done.sid).queued_at == QUEUED_AT


def test_main_recording_is_the_newest_with_audio() -> None:
    def rec(sid: str, path: str | None) -> Recording:
        return Recording(recording_sid=sid, local_path=path)

    assert recordings.main_recording([]) is None
    only = [rec("RE1", None), rec("RE2", None)]
    assert recordings.main_recording(only) is only[-1]
    mixed = [rec("RE1", "a.mp3"), rec("RE2", "b.mp3"), rec("RE3", None)]
    assert recordings.main_recording(mixed) is mixed[1]


def test_sets_agree_with_the_statuses() -> None:
    assert {s for s in S if not s.is_final} == recordings.PENDING
    assert recordings.PENDING - {S.AWAITING_MEDIA} == recordings.WAITING_FOR_TRANSCRIPT
    assert all(s.is_final for s in recordings.RETRYABLE)
