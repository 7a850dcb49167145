"""A transcript made by a model poor at its language is stored marked low-confidence
(migration 0007), and `moked call show --json` says why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select

from moked import recordings
from moked.calls import describe_call
from moked.db.models import Call, Recording
from moked.db.session import session_scope
from moked.statuses import ProcessingStatus
from tests.harness import StackUnderTest
from tests.helpers import new_call_sid, new_recording_sid

REASON = "Whisper base transcribes he poorly"


@pytest.fixture
def transcribing(stack: StackUnderTest) -> Iterator[str]:
    """A recording being transcribed; its call removed afterwards."""
    sid = new_recording_sid()
    with session_scope() as session:
        call = Call(call_sid=new_call_sid())
        session.add(call)
        session.flush()
        call_id = call.id
        session.add(
            Recording(
                recording_sid=sid,
                call_id=call.id,
                processing_status=ProcessingStatus.TRANSCRIBING,
                media_url="https://media.example.invalid/Recordings/RE1",
            )
        )
    yield sid
    with session_scope() as session:
        session.execute(delete(Call).where(Call.id == call_id))


@pytest.mark.parametrize("reason", [REASON, None])
def test_the_mark_is_stored_with_the_transcript(
    stack: StackUnderTest, transcribing: str, reason: str | None
) -> None:
    transcript = recordings.Transcript(
        "שלום", "he", "local", "whisper-base", 3.0, low_confidence=reason
    )
    with session_scope() as session:
        assert recordings.finish(session, transcribing, transcript) is ProcessingStatus.READY

    with session_scope() as session:
        row = session.scalar(select(Recording).where(Recording.recording_sid == transcribing))
        assert row is not None
        assert row.low_confidence is (reason is not None)
        assert row.low_confidence_reason == reason
        shown = describe_call(row.call, stack.settings.recordings_dir)
    assert shown["transcript_low_confidence"] == reason
