"""A recording's life: the one module that changes `Recording.processing_status`.

Every other module asks this one, as rq's `Job.set_status` is the one place a job's status
is set. Each change happens on a row the caller has locked (`lock`), inside the caller's
transaction, so two callbacks, two jobs or a job and a retry never interleave.

    awaiting_media ──Twilio: completed──▶ awaiting_transcription ◀──────────────┐
        │                                   │ claim                           │ fail (transient)
        │ Twilio: absent / failed           ▼                                 │ retry (staff:
        ▼                                 downloading ──▶ transcribing ───────┤   failed, empty;
    absent | failed                             │               │ finish      │   ready too, in
                                                └─ fail ─▶ failed ◀─ fail ────┘   a language
                                                                ▼                 staff chose)
                                                          ready | empty

- A change that arrives for a recording already final (a duplicate callback, a job that
  lost a race) is not an error: it changes nothing and the function says so (False/None).
- A change the machine does not allow from a state that is not final raises
  `InvalidTransition`: it is a bug, and the caller's transaction rolls back.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from moked.db.models import Recording
from moked.queue import enqueue_transcription
from moked.statuses import ProcessingStatus, RecordingStatus
from moked.transcripts import Segment

log = logging.getLogger(__name__)

S = ProcessingStatus

PENDING = frozenset({S.AWAITING_MEDIA, S.AWAITING_TRANSCRIPTION, S.DOWNLOADING, S.TRANSCRIBING})
"""Not final yet: staff see a spinner, and the CRM polls."""
WAITING_FOR_TRANSCRIPT = frozenset({S.AWAITING_TRANSCRIPTION, S.DOWNLOADING, S.TRANSCRIBING})
"""Twilio finished the recording and there is no transcript yet: what the backlog measures
and the reconciler queues again when its job is gone."""
RETRYABLE = frozenset({S.FAILED, S.EMPTY})
"""What staff (CRM) and operators (`moked recording retry`) may send back to be transcribed."""
RETRYABLE_IN_A_LANGUAGE = RETRYABLE | {S.READY}
"""A transcript in the wrong language is redone when staff name the right one."""

TRANSITIONS: dict[ProcessingStatus, frozenset[ProcessingStatus]] = {
    S.AWAITING_MEDIA: frozenset({S.AWAITING_TRANSCRIPTION, S.ABSENT, S.FAILED}),
    S.AWAITING_TRANSCRIPTION: frozenset({S.DOWNLOADING, S.AWAITING_TRANSCRIPTION, S.FAILED}),
    # A job abandoned by a dead worker is claimed again from where it stopped.
    S.DOWNLOADING: frozenset({S.DOWNLOADING, S.TRANSCRIBING, S.AWAITING_TRANSCRIPTION, S.FAILED}),
    S.TRANSCRIBING: frozenset(
        {S.DOWNLOADING, S.READY, S.EMPTY, S.AWAITING_TRANSCRIPTION, S.FAILED}
    ),
    S.READY: frozenset({S.AWAITING_TRANSCRIPTION}),  # only `retry` with a language
    S.EMPTY: frozenset({S.AWAITING_TRANSCRIPTION}),
    S.FAILED: frozenset({S.AWAITING_TRANSCRIPTION}),
    S.ABSENT: frozenset(),
}
"""Every change allowed, from → to. Everything not listed raises `InvalidTransition`."""

ERROR_LIMIT = 1000
"""Characters of an error message kept on the row."""


class InvalidTransition(RuntimeError):
    """A change the state machine does not allow: a bug in the caller."""

    def __init__(self, recording_sid: str, current: ProcessingStatus, wanted: ProcessingStatus):
        super().__init__(f"{recording_sid}: {current.value} cannot become {wanted.value}")
        self.current = current
        self.wanted = wanted


class RetryRefused(ValueError):
    """Staff or an operator asked to transcribe again what cannot be; the message says why."""


class NothingToDo(Exception):
    """A job found nothing to do; the message says why (for the log and the job's result)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _move(recording: Recording, to: ProcessingStatus) -> None:
    current = recording.processing_status
    if to not in TRANSITIONS[current]:
        raise InvalidTransition(recording.recording_sid, current, to)
    recording.processing_status = to


def lock(session: Session, recording_sid: str) -> Recording | None:
    """The recording, locked until the caller's transaction ends; None when unknown."""
    return session.scalar(
        select(Recording).where(Recording.recording_sid == recording_sid).with_for_update()
    )


def _locked(session: Session, recording_sid: str) -> Recording:
    recording = lock(session, recording_sid)
    if recording is None:
        raise NothingToDo("unknown recording")
    return recording


# --- Twilio's callbacks -------------------------------------------------------------------


def media_reported(
    recording: Recording,
    status: RecordingStatus,
    when: dt.datetime,
    error_code: str | None = None,
) -> bool:
    """Twilio's recording status callback (or the same fact found through its API).

    Returns True when the recording must be queued for transcription now (the first time
    Twilio reports it completed). Duplicates and late callbacks change nothing.
    """
    if recording.processing_status.is_final:
        return False
    if recording.twilio_status is not RecordingStatus.COMPLETED:
        recording.twilio_status = status
    if status is RecordingStatus.COMPLETED:
        recording.completed_at = recording.completed_at or when
        if recording.processing_status is S.AWAITING_MEDIA:
            _move(recording, S.AWAITING_TRANSCRIPTION)
        if recording.queued_at is None:
            recording.queued_at = utcnow()
            return True
        return False
    if recording.processing_status is not S.AWAITING_MEDIA:
        return False  # an absent/failed report after Twilio said completed: keep the media
    recording.error_code = error_code
    if status is RecordingStatus.ABSENT:
        _move(recording, S.ABSENT)
    elif status is RecordingStatus.FAILED:
        _move(recording, S.FAILED)
        recording.error = f"Twilio could not record (error {error_code or '?'})"
    return False


# --- the transcription job ----------------------------------------------------------------


def claim(session: Session, recording_sid: str) -> Recording:
    """Start an attempt: `downloading`, one more attempt counted. Raises NothingToDo."""
    recording = _locked(session, recording_sid)
    status = recording.processing_status
    if status.is_final:
        raise NothingToDo(f"already {status.value}")
    if status is S.AWAITING_MEDIA:
        raise NothingToDo("Twilio has not reported the recording completed")
    _move(recording, S.DOWNLOADING)
    recording.attempts = (recording.attempts or 0) + 1
    recording.processing_started_at = utcnow()
    recording.processing_finished_at = None
    return recording


@dataclass(frozen=True, slots=True)
class StoredMedia:
    local_path: str
    content_type: str | None
    size_bytes: int | None
    audio_seconds: float | None


def media_stored(session: Session, recording_sid: str, media: StoredMedia) -> bool:
    """Remember the local copy (kept for later attempts); False when already final."""
    recording = lock(session, recording_sid)
    if recording is None or recording.processing_status.is_final:
        return False
    recording.local_path = media.local_path
    recording.content_type = media.content_type
    recording.size_bytes = media.size_bytes
    recording.audio_seconds = media.audio_seconds
    return True


def start_transcribing(session: Session, recording_sid: str) -> bool:
    """The media is here: `transcribing`. False when another job finished it meanwhile."""
    recording = lock(session, recording_sid)
    if recording is None or recording.processing_status.is_final:
        return False
    _move(recording, S.TRANSCRIBING)
    return True


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str
    backend: str
    model: str | None
    audio_seconds: float | None = None
    low_confidence: str | None = None
    """Why staff should listen rather than trust the text (e.g. Hebrew on Whisper base)."""
    segments: tuple[Segment, ...] = ()
    """Timed segments in order (`moked.transcripts`); empty when the backend gave none."""
    detected_language: str | None = None
    """What the language detector heard (None: not run, e.g. one expected language)."""
    language_probability: float | None = None


def finish(session: Session, recording_sid: str, transcript: Transcript) -> ProcessingStatus | None:
    """Store the transcript: `ready`, or `empty` when there was no speech.

    None when another job finished the recording first: its transcript stays, this one is
    dropped, so a recording never holds two transcripts or a mix.
    """
    recording = lock(session, recording_sid)
    if recording is None or recording.processing_status.is_final:
        return None
    text = transcript.text.strip()
    status = S.READY if text else S.EMPTY
    _move(recording, status)
    recording.transcript = text
    recording.transcript_language = transcript.language
    recording.backend = transcript.backend
    recording.model = transcript.model
    recording.low_confidence = transcript.low_confidence is not None
    recording.low_confidence_reason = transcript.low_confidence
    recording.transcript_segments = [segment.to_dict() for segment in transcript.segments]
    recording.summary = recording.intent = recording.summary_model = None  # of the old text
    recording.detected_language = transcript.detected_language
    recording.language_probability = transcript.language_probability
    if transcript.audio_seconds is not None:
        recording.audio_seconds = transcript.audio_seconds
    recording.error = None
    recording.processing_finished_at = utcnow()
    return status


def summarized(
    session: Session, recording_sid: str, transcript: str, summary: str, intent: str, model: str
) -> bool:
    """Keep the summary of a `ready` transcript; False (nothing kept) when the recording is
    no longer ready with that very transcript (staff sent it back meanwhile)."""
    recording = lock(session, recording_sid)
    if recording is None or recording.processing_status is not S.READY:
        return False
    if recording.transcript != transcript.strip():
        return False
    recording.summary = summary
    recording.intent = intent
    recording.summary_model = model
    return True


def fail(
    session: Session, recording_sid: str, message: str, *, final: bool
) -> ProcessingStatus | None:
    """An attempt failed: `failed` when final, else back to `awaiting_transcription` for
    the job's retry. None when the recording was already final (nothing changed)."""
    recording = lock(session, recording_sid)
    if recording is None or recording.processing_status.is_final:
        return None
    if recording.processing_status not in WAITING_FOR_TRANSCRIPT:
        # Only a job fails a recording, and no job runs before Twilio completed it.
        wanted = S.FAILED if final else S.AWAITING_TRANSCRIPTION
        raise InvalidTransition(recording_sid, recording.processing_status, wanted)
    recording.error = message[:ERROR_LIMIT]
    if final:
        _move(recording, S.FAILED)
        recording.processing_finished_at = utcnow()
    else:
        _move(recording, S.AWAITING_TRANSCRIPTION)
    return recording.processing_status


# --- staff, operators and the reconciler --------------------------------------------------


def check_language(language: str) -> str:
    """A Whisper language code (he, en, ar); raises RetryRefused otherwise."""
    code = language.strip().lower()
    if not (2 <= len(code) <= 3 and code.isascii() and code.isalpha()):
        raise RetryRefused(f"{language[:20]!r} is not a language code such as he or en")
    return code


def retry(session: Session, recording_sid: str, language: str | None = None) -> Recording:
    """Send a failed or empty recording back to be transcribed, with a fresh attempt
    budget; with `language`, any finished transcript, in that language (kept on the row as
    `forced_language`, so every later attempt uses it). Raises RetryRefused (with the
    reason) when it cannot be."""
    forced = check_language(language) if language is not None else None
    recording = lock(session, recording_sid)
    if recording is None:
        raise RetryRefused(f"no recording {recording_sid}")
    allowed = RETRYABLE if forced is None else RETRYABLE_IN_A_LANGUAGE
    if recording.processing_status not in allowed:
        raise RetryRefused(
            f"{recording_sid} is {recording.processing_status.value}; only failed or empty"
            " recordings are transcribed again"
            + ("" if forced is None else ", or ready ones in another language")
        )
    if not recording.media_url and not recording.local_path:
        raise RetryRefused(f"{recording_sid} has no media to transcribe")
    _move(recording, S.AWAITING_TRANSCRIPTION)
    if forced is not None:
        recording.forced_language = forced
    recording.error = None
    recording.attempts = 0
    recording.queued_at = utcnow()
    recording.processing_started_at = None
    recording.processing_finished_at = None
    return recording


def retry_and_queue(
    session: Session, redis: Redis, recording_sid: str, language: str | None = None
) -> bool:
    """`retry`, committed, then queued. The one way the CLI and the CRM transcribe again.

    Returns False when Redis is away: the row already waits for a transcript, so the
    reconciler queues it when Redis is back. Raises RetryRefused.
    """
    retry(session, recording_sid, language)
    session.commit()  # before queueing: a fast worker must see the new state
    try:
        enqueue_transcription(redis, recording_sid)
    except RedisError as exc:
        log.warning(
            "%s is waiting; Redis unavailable (%s), the reconciler queues it", recording_sid, exc
        )
        return False
    return True


def mark_queued(session: Session, recording_sid: str) -> None:
    """The reconciler queued the recording again: its staleness clock restarts."""
    recording = lock(session, recording_sid)
    if recording is not None and recording.processing_status in WAITING_FOR_TRANSCRIPT:
        recording.queued_at = utcnow()


# --- reading ------------------------------------------------------------------------------


def is_pending(recording: Recording | None) -> bool:
    return recording is not None and recording.processing_status in PENDING


def can_retry(recording: Recording | None, in_a_language: bool = False) -> bool:
    """Whether `retry` would accept the recording (the CRM shows the button only then);
    `in_a_language`: with a language named (a finished transcript may be redone)."""
    allowed = RETRYABLE_IN_A_LANGUAGE if in_a_language else RETRYABLE
    return (
        recording is not None
        and recording.processing_status in allowed
        and bool(recording.media_url or recording.local_path)
    )


def main_recording(recordings: Sequence[Recording]) -> Recording | None:
    """The recording that stands for the call (staff listen to it, the API describes it):
    the newest one that has audio, else the newest. `recordings` are in creation order."""
    with_audio = [r for r in recordings if r.local_path]
    if with_audio:
        return with_audio[-1]
    return recordings[-1] if recordings else None
