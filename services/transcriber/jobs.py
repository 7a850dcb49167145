"""The transcription job: one recording, by its RecordingSid, to a stored transcript.

Delivery is at least once (Twilio's duplicate callbacks, RQ retries, the reconciler's
re-queues, a worker killed mid-job); the effect is exactly once because every change of
the recording goes through `moked.recordings`, under a row lock, and a recording already
final is never changed again. This module keeps the rest: download, transcription,
retry budget and metrics. A transient failure raises so RQ retries with backoff; after
MAX_ATTEMPTS (counted on the row, across jobs and Redis losses) the recording is
`failed` with the reason. A permanent failure (not audio, too large, host not allowed)
is `failed` at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from rq import get_current_job
from sqlalchemy import select
from sqlalchemy.orm import Session

from moked import metrics, recordings, transcripts, twilio_sync
from moked.db.models import Business, Call, Recording
from moked.db.session import settings_session
from moked.notify.dispatch import alert_soon
from moked.queue import MAX_ATTEMPTS, redis_client
from moked.settings import Settings, get_settings
from moked.statuses import JobOutcome, ProcessingStatus
from transcriber import media
from transcriber.backends import LanguageRequest, get_backend, load_count, whisper_language
from transcriber.errors import MediaRejected, TranscriptionError
from transcriber.lease import lease
from transcriber.summary import SummaryError, get_summarizer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    """What one attempt needs, read under the row lock when the attempt starts."""

    recording_sid: str
    media_url: str | None
    local_path: str | None
    size_bytes: int | None
    language: LanguageRequest
    completed_at: dt.datetime | None
    audio_seconds: float | None
    """Measured when the file was verified (kept across attempts)."""
    attempt: int


def _language(session: Session, settings: Settings, recording: Recording) -> LanguageRequest:
    """The business's language, the ones its callers may speak, and staff's choice."""
    row = session.execute(
        select(Business.language, Business.expected_languages)
        .join(Call, Call.business_id == Business.id)
        .where(Call.id == recording.call_id)
    ).first()
    own = whisper_language(row.language if row else None)
    configured = row.expected_languages if row else None
    expected = transcripts.expected_languages(own, configured, settings.default_expected_languages)
    return LanguageRequest(business=own, expected=expected, forced=recording.forced_language)


def claim(settings: Settings, recording_sid: str) -> Claim:
    """Start an attempt (`recordings.claim`); raises NothingToDo."""
    with settings_session(settings) as session:
        recording = recordings.claim(session, recording_sid)
        return Claim(
            recording_sid=recording_sid,
            media_url=recording.media_url,
            local_path=recording.local_path,
            size_bytes=recording.size_bytes,
            language=_language(session, settings, recording),
            completed_at=recording.completed_at,
            audio_seconds=recording.audio_seconds,
            attempt=recording.attempts,
        )


def fetch_policy(settings: Settings) -> media.FetchPolicy:
    return media.FetchPolicy(
        allowed_hosts=settings.media_hosts,
        auth=(settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value())
        if settings.twilio_auth_token.get_secret_value()
        else None,
        max_bytes=settings.media_max_bytes,
        timeout_seconds=settings.media_timeout_seconds,
        require_https=settings.is_production,
    )


def ensure_media(settings: Settings, claim_: Claim) -> tuple[Path, float | None]:
    """The local copy (downloading it unless a previous attempt kept it) and its length."""
    root = settings.recordings_dir
    kept = media.existing(root, claim_.local_path, claim_.size_bytes)
    if kept is not None:
        return kept, claim_.audio_seconds
    if not claim_.media_url:
        raise MediaRejected("Twilio gave no RecordingUrl for this recording")
    started = time.monotonic()
    stored = media.store(claim_.media_url, claim_.recording_sid, root, fetch_policy(settings))
    metrics.TRANSCRIPTION_DOWNLOAD_SECONDS.observe(time.monotonic() - started)
    with settings_session(settings) as session:
        recordings.media_stored(
            session,
            claim_.recording_sid,
            recordings.StoredMedia(
                local_path=stored.local_path,
                content_type=stored.content_type,
                size_bytes=stored.size_bytes,
                audio_seconds=stored.audio_seconds,
            ),
        )
    return root / stored.local_path, stored.audio_seconds


def _count(outcome: JobOutcome, backend_name: str) -> None:
    metrics.TRANSCRIPTION_JOBS.labels(outcome.value, backend_name).inc()


def _observe(
    backend_name: str,
    status: ProcessingStatus,
    seconds: float,
    audio_seconds: float | None,
    completed_at: dt.datetime | None,
) -> None:
    _count(JobOutcome.of(status), backend_name)
    metrics.TRANSCRIPTION_SECONDS.labels(backend_name).observe(seconds)
    if audio_seconds:
        metrics.TRANSCRIPTION_RTF.labels(backend_name).observe(seconds / audio_seconds)
    if completed_at is not None:
        metrics.TRANSCRIPTION_LAG.observe(
            max(0.0, (recordings.utcnow() - completed_at).total_seconds())
        )


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (for the benchmark's contention-free RTF)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _last_attempt(attempt: int) -> bool:
    if attempt >= MAX_ATTEMPTS:
        return True
    job = get_current_job()
    return job is not None and not job.retries_left


def _fail(settings: Settings, recording_sid: str, message: str, *, final: bool) -> None:
    with settings_session(settings) as session:
        recordings.fail(session, recording_sid, message, final=final)


def _skipped(result: dict[str, Any], reason: str, backend_name: str) -> dict[str, Any]:
    _count(JobOutcome.SKIPPED, backend_name)
    return {**result, "outcome": JobOutcome.SKIPPED.value, "reason": reason}


def process(settings: Settings, recording_sid: str) -> dict[str, Any]:
    """One attempt at one recording; raises to have RQ retry a transient failure.

    The recording's state is changed only through `moked.recordings`; this job downloads,
    transcribes and measures.
    """
    result: dict[str, Any] = {"recording_sid": recording_sid, "pid": os.getpid()}
    backend_name = settings.effective_backend.value
    try:
        claimed = claim(settings, recording_sid)
    except recordings.NothingToDo as nothing:
        log.info("nothing to do for %s: %s", recording_sid, nothing)
        return _skipped(result, str(nothing), backend_name)
    # Loaded at worker start, so this is a lookup. Outside the try: a model that cannot load
    # is this worker's fault, not the recording's; its lease expires and it is queued again.
    backend = get_backend(settings)
    try:
        result["model_loads"] = load_count()
        audio, probed_seconds = ensure_media(settings, claimed)
        with settings_session(settings) as session:
            transcribing = recordings.start_transcribing(session, recording_sid)
        if not transcribing:
            return _skipped(result, "finished by another job", backend_name)
        started, cpu_started = time.monotonic(), _cpu_seconds()
        transcript = backend.transcribe_call(audio, claimed.language)
        elapsed, cpu = time.monotonic() - started, _cpu_seconds() - cpu_started
    except TranscriptionError as exc:
        final = exc.permanent or _last_attempt(claimed.attempt)
        _fail(settings, recording_sid, exc.message, final=final)
        outcome = JobOutcome.FAILED if final else JobOutcome.RETRY
        _count(outcome, backend_name)
        log.warning("%s attempt %d: %s (%s)", recording_sid, claimed.attempt, exc.message, outcome)
        if exc.permanent:
            return {**result, "outcome": outcome.value, "error": exc.message}
        raise
    except Exception as exc:
        # A bug or an outage (Postgres, Redis): retried like any transient failure.
        message = f"{type(exc).__name__}: {exc}"
        final = _last_attempt(claimed.attempt)
        try:
            _fail(settings, recording_sid, message, final=final)
        except Exception:
            log.exception("could not record the failure of %s", recording_sid)
        _count(JobOutcome.FAILED if final else JobOutcome.RETRY, backend_name)
        raise
    audio_seconds = transcript.audio_seconds or probed_seconds
    # The router says which of its backends (and models) served this language.
    used, model = transcript.backend or backend.name, transcript.model or backend.model
    with settings_session(settings) as session:
        status = recordings.finish(
            session,
            recording_sid,
            recordings.Transcript(
                text=transcript.text,
                language=transcript.language,
                backend=used,
                model=model,
                audio_seconds=audio_seconds,
                low_confidence=transcript.low_confidence,
                segments=transcript.segments,
                detected_language=transcript.detected_language,
                language_probability=transcript.language_probability,
            ),
        )
    if status is None:
        log.info("%s was finished by another job; this transcript is dropped", recording_sid)
        return _skipped(result, "finished by another job", used)
    _observe(used, status, elapsed, audio_seconds, claimed.completed_at)
    log.info(
        "%s %s in %.2f s (%s s of audio, %s/%s)",
        recording_sid,
        status.value,
        elapsed,
        f"{audio_seconds:.1f}" if audio_seconds else "?",
        used,
        model,
    )
    if status is ProcessingStatus.READY:
        summarize(settings, recording_sid, transcript.text, claimed.language.business)
    try:
        twilio_sync.delete_now(settings, recording_sid)
    except Exception:  # the transcript is stored; the reconciler retries the deletion
        log.exception("deleting %s from Twilio failed", recording_sid)
    return {
        **result,
        "outcome": JobOutcome.of(status).value,
        "seconds": round(elapsed, 3),
        "cpu_seconds": round(cpu, 3),
        "audio_seconds": audio_seconds,
    }


def summarize(settings: Settings, recording_sid: str, text: str, language: str) -> bool:
    """The summary and intent in the business's language, when SUMMARY_BACKEND asks for them
    (before the alerts go out, so they can carry it). Never raises: a transcript without
    a summary is complete."""
    summarizer = get_summarizer(settings)
    if summarizer is None:
        return False
    try:
        summary = summarizer.summarize(text, language)
        with settings_session(settings) as session:
            return recordings.summarized(
                session, recording_sid, text, summary.text, summary.intent.value, summary.model
            )
    except SummaryError as exc:
        log.warning("%s: no summary: %s", recording_sid, exc)
    except Exception:
        log.exception("%s: no summary", recording_sid)
    return False


def transcribe_recording(recording_sid: str) -> dict[str, Any]:
    """The RQ job (moked.queue.TRANSCRIBE_JOB): takes the RecordingSid, never an object."""
    settings = get_settings()
    job = get_current_job()
    redis: Redis = job.connection if job is not None else redis_client(settings.redis_url)
    try:
        with lease(redis, recording_sid):
            return process(settings, recording_sid)
    finally:
        # The transcript is final (or this attempt failed for good): the call's alerts go
        # out now rather than at the reconciler's next sweep. A no-op when not yet due.
        alert_soon(settings, redis, recording_sid)
