"""transcriber/jobs.py: one attempt at one recording, `process(settings, sid)` called
in-process (no worker) on the test run's Postgres, with a stand-in speech-to-text backend;
the media comes from the loopback Twilio (`twilio_api`, tests/conftest.py).

The recordings are made directly in Postgres and never queued, so the stack's workers do
not race these calls (its reconciler would queue one only seconds after it waited).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from moked import recordings
from moked.db.models import Business, Call, Recording
from moked.db.session import session_scope
from moked.queue import MAX_ATTEMPTS
from moked.settings import Settings
from moked.statuses import JobOutcome, ProcessingStatus, RecordingStatus
from tests.harness import StackUnderTest
from tests.helpers import new_call_sid, new_recording_sid
from tests.services.transcriber.audio import telephone_mp3
from tests.services.transcriber.conftest import recording
from tests.services.transcriber.doubles import TwilioDouble
from transcriber import jobs
from transcriber.backends import LanguageRequest, Transcript
from transcriber.errors import MediaUnavailable


class FakeBackend:
    """Hears what it is told to; notes what it was given."""

    name = "fake"
    model = "fake-1"

    def __init__(self, text: str) -> None:
        self.text = text
        self.heard: list[tuple[Path, str]] = []

    def transcribe(self, audio: Path, language: str) -> Transcript:
        self.heard.append((audio, language))
        return Transcript(self.text, language, 2.5)

    def transcribe_call(self, audio: Path, request: LanguageRequest) -> Transcript:
        return self.transcribe(audio, request.forced or request.business)

    def warm_up(self) -> None:
        pass


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], FakeBackend]:
    def use(text: str) -> FakeBackend:
        fake = FakeBackend(text)
        monkeypatch.setattr(jobs, "get_backend", lambda settings: fake)
        return fake

    use("never asked")  # a test that reaches the backend unexpectedly loads no model
    return use


@pytest.fixture
def make_recording(english_business: Business) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def factory(
        media_url: str | None, *, recording_sid: str | None = None, completed: bool = True
    ) -> str:
        call_sid, recording_sid = new_call_sid(), recording_sid or new_recording_sid()
        with session_scope() as session:
            call = Call(call_sid=call_sid, business_id=english_business.id)
            session.add(call)
            session.flush()
            session.add(
                Recording(recording_sid=recording_sid, call_id=call.id, media_url=media_url)
            )
            session.flush()
            row = recordings.lock(session, recording_sid)
            assert row is not None
            if completed:
                recordings.media_reported(row, RecordingStatus.COMPLETED, recordings.utcnow())
        made.append(recording_sid)
        return recording_sid

    yield factory
    for recording_sid in made:  # none is left waiting for the stack's workers
        with session_scope() as session:
            row = recordings.lock(session, recording_sid)
            if row is not None and row.processing_status in recordings.WAITING_FOR_TRANSCRIPT:
                recordings.fail(session, recording_sid, "test over", final=True)


def test_an_unknown_recording_is_skipped(stack: StackUnderTest, backend) -> None:
    result = jobs.process(stack.settings, new_recording_sid())

    assert result["outcome"] == JobOutcome.SKIPPED
    assert result["reason"] == "unknown recording"


def test_a_recording_twilio_has_not_completed_is_skipped_untouched(
    stack: StackUnderTest, backend, make_recording: Callable[..., str]
) -> None:
    sid = make_recording(
        "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1", completed=False
    )

    result = jobs.process(stack.settings, sid)

    assert result["outcome"] == JobOutcome.SKIPPED
    assert "not reported" in result["reason"]
    row = recording(sid)
    assert (row.processing_status, row.attempts) == (ProcessingStatus.AWAITING_MEDIA, 0)


def test_media_on_a_host_not_allowed_fails_the_recording_at_once(
    stack: StackUnderTest, backend, make_recording: Callable[..., str]
) -> None:
    sid = make_recording(f"https://recordings.example.com/{new_recording_sid()}.mp3")

    result = jobs.process(stack.settings, sid)

    assert result["outcome"] == JobOutcome.FAILED
    assert "recordings.example.com" in result["error"]
    row = recording(sid)
    assert row.processing_status is ProcessingStatus.FAILED
    assert row.error == result["error"]
    assert row.attempts == 1 and row.processing_finished_at is not None
    assert row.local_path is None
    # Final: a duplicate job finds nothing to do.
    assert jobs.process(stack.settings, sid)["outcome"] == JobOutcome.SKIPPED


def test_a_transient_failure_is_retried_until_the_attempts_run_out(
    stack: StackUnderTest, twilio_api: TwilioDouble, backend, make_recording: Callable[..., str]
) -> None:
    """Twilio refuses the credentials (401): transient (configuration can be fixed), so the
    job raises for RQ to retry; the MAX_ATTEMPTS-th attempt fails the recording."""
    sid = new_recording_sid()
    make_recording(twilio_api.publish(sid, b"never served"), recording_sid=sid)
    revoked = stack.settings.model_copy(update={"twilio_auth_token": SecretStr("revoked")})

    for attempt in range(1, MAX_ATTEMPTS + 1):
        with pytest.raises(MediaUnavailable, match="401"):
            jobs.process(revoked, sid)
        row = recording(sid)
        assert row.attempts == attempt
        assert row.error is not None and "401" in row.error
        if attempt < MAX_ATTEMPTS:
            assert row.processing_status is ProcessingStatus.AWAITING_TRANSCRIPTION
    assert row.processing_status is ProcessingStatus.FAILED
    assert len(twilio_api.gets_of(sid)) == MAX_ATTEMPTS


@pytest.mark.parametrize(
    ("heard", "status"),
    [("  Call me back.  ", ProcessingStatus.READY), ("", ProcessingStatus.EMPTY)],
)
def test_the_media_is_fetched_once_and_the_transcript_stored(
    stack: StackUnderTest,
    twilio_api: TwilioDouble,
    backend,
    make_recording: Callable[..., str],
    heard: str,
    status: ProcessingStatus,
) -> None:
    settings: Settings = stack.settings
    fake = backend(heard)
    sid = new_recording_sid()
    make_recording(twilio_api.publish(sid, telephone_mp3("Call me back.")), recording_sid=sid)

    result = jobs.process(settings, sid)

    assert result["outcome"] == JobOutcome.of(status)
    row = recording(sid)
    assert row.processing_status is status
    assert row.transcript == heard.strip()
    assert (row.backend, row.model, row.transcript_language) == ("fake", "fake-1", "en")
    assert row.local_path is not None
    audio = settings.recordings_dir / row.local_path
    assert fake.heard == [(audio, "en")]  # the business speaks en-US
    assert audio.read_bytes() == twilio_api.media[sid].body
    assert [s.authorized for s in twilio_api.gets_of(sid)] == [True]
    assert jobs.process(settings, sid)["outcome"] == JobOutcome.SKIPPED
    with session_scope() as session:
        assert session.scalar(select(Recording.attempts).where(Recording.recording_sid == sid)) == 1
