"""Twilio's REST API as the reconciler's last resort (only when Twilio credentials are set).

- Recordings whose status callback never arrived: for completed calls of the last day that
  have no recording past `awaiting_media`, ask Twilio for the call's recordings and apply
  each as if its `completed` (or `absent`) callback had arrived: one code path, the same
  idempotent upserts, the same queue.
- RECORDING_DELETE_FROM_TWILIO: retry deletions the transcriber could not make.

Twilio unreachable or refusing: the step backs off (1 min doubling to 30 min), so a dead
API costs one request per backoff period, not one per call per pass.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from redis import Redis
from sqlalchemy import exists, select

from moked import metrics
from moked.db.models import Call, Recording
from moked.db.session import settings_session
from moked.intake import InboundEvent, apply_event, utcnow
from moked.queue import enqueue_transcription
from moked.settings import Settings
from moked.statuses import CallStatus, Endpoint, EventSource, ProcessingStatus
from moked.twilio import rest

log = logging.getLogger(__name__)

LOOKBACK = dt.timedelta(hours=24)
"""Completed calls older than this are not asked about again."""
CALLS_PER_PASS = 25
CANDIDATES_PER_CALL = 8
"""Calls read from Postgres per call asked of Twilio: room for the checked ones."""
CHECKED_KEY = "moked:reconcile:twilio-checked:{}"
"""Set once Twilio said all it will say about a call (kept for LOOKBACK)."""
FINAL_REMOTE = frozenset({"completed", "absent", "failed", "deleted"})
DELETE_AFTER = dt.timedelta(seconds=60)
"""A deletion the transcriber just made is not retried by the sweep before this."""
_MIN_BACKOFF = 60.0
_MAX_BACKOFF = 1800.0


@dataclass
class _Backoff:
    until: float = 0.0
    failures: int = 0

    def ready(self) -> bool:
        return time.monotonic() >= self.until

    def failed(self, exc: Exception) -> None:
        self.failures += 1
        pause = min(_MAX_BACKOFF, _MIN_BACKOFF * 2 ** (self.failures - 1))
        self.until = time.monotonic() + pause
        log.warning("Twilio's API failed (%s); next try in %.0f s", exc, pause)

    def succeeded(self) -> None:
        self.failures = 0
        self.until = 0.0


_backoffs: dict[str, _Backoff] = {}


def _backoff_for(settings: Settings) -> _Backoff:
    """One backoff per API origin and account: an unreachable one never silences another."""
    key = f"{rest.api_origin(settings)}|{settings.twilio_account_sid}"
    return _backoffs.setdefault(key, _Backoff())


def calls_missing_recordings(settings: Settings, limit: int = CALLS_PER_PASS) -> list[str]:
    """Completed calls (ended after the grace period, within LOOKBACK) with no recording
    that Twilio reported completed or absent."""
    now = utcnow()
    grace = dt.timedelta(seconds=settings.reconcile_stale_after_seconds)
    reported = exists().where(
        Recording.call_id == Call.id,
        Recording.processing_status != ProcessingStatus.AWAITING_MEDIA,
    )
    with settings_session(settings) as session:
        return list(
            session.scalars(
                select(Call.call_sid)
                .where(
                    Call.status == CallStatus.COMPLETED,
                    Call.ended_at.is_not(None),
                    Call.ended_at > now - LOOKBACK,
                    Call.ended_at < now - grace,
                    ~reported,
                )
                .order_by(Call.ended_at.desc())
                .limit(limit)
            ).all()
        )


def _event(settings: Settings, remote: rest.RemoteRecording) -> InboundEvent:
    params: dict[str, str | list[str]] = {
        "AccountSid": settings.twilio_account_sid,
        "CallSid": remote.call_sid,
        "RecordingSid": remote.sid,
        "RecordingUrl": remote.media_url,
        "RecordingStatus": remote.status,
    }
    if remote.duration_seconds is not None:
        params["RecordingDuration"] = str(remote.duration_seconds)
    return InboundEvent(
        endpoint=Endpoint.RECORDING_STATUS,
        params=params,
        received_at=utcnow(),
        event_id=f"twilio-api-{remote.sid}-{remote.status}"[:64],
        source=EventSource.TWILIO_API,
    )


def recover_recordings(settings: Settings, redis: Redis) -> int:
    """Apply recordings Twilio holds for calls whose callback never came; queued count."""
    backoff = _backoff_for(settings)
    if not rest.rest_enabled(settings) or not backoff.ready():
        return 0
    # Calls already checked are left out before the pass's limit is applied, not after:
    # otherwise the newest checked calls (every missed call is one) would fill each pass
    # and starve an older call whose recording Twilio still holds.
    candidates = calls_missing_recordings(settings, limit=CALLS_PER_PASS * CANDIDATES_PER_CALL)
    with redis.pipeline(transaction=False) as pipe:
        for sid in candidates:
            pipe.exists(CHECKED_KEY.format(sid))
        checked = pipe.execute()
    call_sids = [sid for sid, seen in zip(candidates, checked, strict=True) if not seen]
    call_sids = call_sids[:CALLS_PER_PASS]
    if not call_sids:
        return 0
    client = rest.make_client(settings)
    recovered = 0
    for call_sid in call_sids:
        try:
            remotes = rest.call_recordings(settings, client, call_sid)
        except rest.TwilioApiError as exc:
            backoff.failed(exc)
            break
        backoff.succeeded()
        for remote in remotes:
            if remote.status not in ("completed", "absent"):
                continue
            with settings_session(settings) as session:
                effects = apply_event(session, _event(settings, remote))
            if effects.enqueue_recording_sid:
                enqueue_transcription(redis, effects.enqueue_recording_sid)
                recovered += 1
                metrics.RECONCILER_TWILIO_RECOVERED.inc()
                log.warning(
                    "recording %s of %s found through Twilio's API (its callback never came)",
                    remote.sid,
                    call_sid,
                )
        if all(remote.status in FINAL_REMOTE for remote in remotes):
            redis.set(CHECKED_KEY.format(call_sid), "1", ex=int(LOOKBACK.total_seconds()))
    return recovered


def retry_deletions(settings: Settings, redis: Redis) -> int:
    """RECORDING_DELETE_FROM_TWILIO: delete Twilio's copy of recordings we hold and used."""
    if not settings.recording_delete_from_twilio or not rest.rest_enabled(settings):
        return 0
    backoff = _backoff_for(settings)
    if not backoff.ready():
        return 0
    with settings_session(settings) as session:
        sids = list(
            session.scalars(
                select(Recording.recording_sid)
                .where(
                    Recording.processing_status.in_(
                        [ProcessingStatus.READY, ProcessingStatus.EMPTY]
                    ),
                    Recording.local_path.is_not(None),
                    Recording.deleted_from_twilio_at.is_(None),
                    Recording.processing_finished_at < utcnow() - DELETE_AFTER,
                )
                .order_by(Recording.processing_finished_at)
                .limit(CALLS_PER_PASS)
            ).all()
        )
    if not sids:
        return 0
    client = rest.make_client(settings)
    deleted = 0
    for sid in sids:
        try:
            rest.delete_recording(settings, client, sid)
        except rest.TwilioApiError as exc:
            metrics.TWILIO_RECORDINGS_DELETED.labels("error").inc()
            backoff.failed(exc)
            break
        backoff.succeeded()
        metrics.TWILIO_RECORDINGS_DELETED.labels("deleted").inc()
        mark_deleted(settings, sid)
        deleted += 1
    return deleted


def mark_deleted(settings: Settings, recording_sid: str) -> None:
    with settings_session(settings) as session:
        recording = session.scalar(
            select(Recording).where(Recording.recording_sid == recording_sid).with_for_update()
        )
        if recording is not None and recording.deleted_from_twilio_at is None:
            recording.deleted_from_twilio_at = utcnow()


def delete_now(settings: Settings, recording_sid: str) -> bool:
    """Delete one recording from Twilio (the transcriber, right after the transcript).

    False (logged, counted) when it failed; `retry_deletions` tries again later.
    """
    if not settings.recording_delete_from_twilio or not rest.rest_enabled(settings):
        return False
    try:
        rest.delete_recording(settings, rest.make_client(settings), recording_sid)
    except rest.TwilioApiError as exc:
        metrics.TWILIO_RECORDINGS_DELETED.labels("error").inc()
        log.warning("could not delete %s from Twilio (will retry): %s", recording_sid, exc)
        return False
    metrics.TWILIO_RECORDINGS_DELETED.labels("deleted").inc()
    mark_deleted(settings, recording_sid)
    return True
