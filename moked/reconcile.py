"""The reconciler: whatever a crash, an outage or a lost queue left behind, it puts right.

Each pass, in order:
1. replays webhook events spooled to disk while Postgres was down;
2. replays callbacks nginx answered with fallback TwiML while the app was down (their
   bodies are in nginx's fallback log; the signature is checked again);
3. re-queues recordings waiting for a transcript whose job is gone (Redis lost its data)
   or abandoned (its worker was killed: the job's lease in Redis expired);
4. with Twilio credentials: asks Twilio's REST API for recordings of completed calls
   whose status callback never arrived, and retries deletions from Twilio
   (RECORDING_DELETE_FROM_TWILIO); see moked/twilio_sync.py;
5. decides the alerts of calls that became due by waiting (a late transcript, a missed
   call), and queues deliveries whose backoff is over or whose job was lost, and digests
   whose quiet hours ended (moked.notify.dispatch.sweep);
6. flags callers as likely spam: SPAM_CALLS calls within SPAM_MINUTES, none with a message
   (moked.callers.sweep).
Every step is idempotent, so running it twice, or in two processes, is harmless.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from redis import Redis
from redis.exceptions import RedisError
from rq.registry import StartedJobRegistry
from sqlalchemy import or_, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from moked import backlog, callback_wait, callbacks, callers, metrics, recordings, twilio_sync
from moked.db.models import Recording
from moked.db.session import postgres_refuses, settings_session
from moked.intake import InboundEvent, apply_event, utcnow
from moked.notify import dispatch
from moked.ownership import hand_over
from moked.queue import (
    LEASE_TTL_SECONDS,
    SCHEDULER_GRACE_SECONDS,
    enqueue_transcription,
    pending_job,
    requeue_abandoned,
    requeue_stranded,
    transcription_queue,
)
from moked.settings import Settings
from moked.spool import Spool, SpoolCorrupt
from moked.statuses import Endpoint, EventSource, ProcessingStatus
from moked.twilio import debugger, signature

log = logging.getLogger(__name__)

RETRYABLE = (SQLAlchemyError, RedisError, OSError)


@dataclass
class ReconcileReport:
    spool_replayed: int = 0
    fallback_replayed: int = 0
    requeued: int = 0
    twilio_recovered: int = 0
    twilio_deleted: int = 0
    notifications_queued: int = 0
    spam_flagged: int = 0
    callbacks_overdue: int = 0
    callbacks_expired: int = 0
    errors: list[str] = field(default_factory=list)


def _enqueue_quietly(redis: Redis, recording_sid: str | None) -> None:
    if not recording_sid:
        return
    try:
        enqueue_transcription(redis, recording_sid)
    except RedisError as exc:
        log.warning("could not queue %s yet: %s", recording_sid, exc)


def replay_spool(settings: Settings, redis: Redis) -> int:
    spool = Spool(settings.spool_dir)
    replayed = 0
    try:
        for path, event in spool.pending():
            try:
                with settings_session(settings) as session:
                    effects = apply_event(session, event)
            except DBAPIError as exc:
                if not postgres_refuses(exc):
                    raise  # Postgres away, or not ready for it yet: try again next pass
                bad = spool.quarantine(path)
                log.error("spooled event refused by Postgres, set aside as %s: %s", bad, exc)
                continue
            spool.done(path)
            replayed += 1
            metrics.WEBHOOK_EVENTS_REPLAYED.labels(EventSource.SPOOL.value).inc()
            _enqueue_quietly(redis, effects.enqueue_recording_sid)
    except SpoolCorrupt as exc:
        log.error("set aside an unreadable spool file (next pass goes on): %s", exc)
    return replayed


def parse_fallback_line(line: str, settings: Settings) -> InboundEvent | None:
    """One line of nginx's fallback log as an event, or None when it is not Twilio's."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    uri = str(entry.get("uri", ""))
    parts = urlsplit(uri)
    name = parts.path.removeprefix("/webhook/")
    try:
        endpoint = Endpoint(name)
    except ValueError:
        return None
    body = str(entry.get("body", ""))
    pairs = parse_qsl(body, keep_blank_values=True)
    params: dict[str, str | list[str]] = {}
    for key, value in pairs:
        existing = params.get(key)
        if existing is None:
            params[key] = value
        else:
            params[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
    url = signature.signed_url(settings.public_base, parts.path, parts.query)
    token = settings.twilio_auth_token.get_secret_value()
    multi = {k: v if isinstance(v, list) else [v] for k, v in params.items()}
    if not signature.is_valid(token, url, signature.FormParams(multi), entry.get("signature")):
        log.warning("fallback log entry %s has no valid signature; ignored", entry.get("id"))
        return None
    try:
        received = dt.datetime.fromisoformat(str(entry.get("time")))
    except ValueError:
        received = utcnow()
    # The live app's id for the same request: if the app took it too (nginx answered while
    # it was slow), the replay is applied again (idempotently) but not logged twice.
    return InboundEvent.signed(
        endpoint,
        callbacks.with_attempt(endpoint, params, parts.query),
        str(entry.get("signature") or ""),
        received_at=received,
        source=EventSource.NGINX_FALLBACK,
    )


_fallback_counted: dict[Path, int] = {}
"""Per fallback log, the offset up to which its answers are counted: a line whose replay
fails (Postgres down) is read again next pass but counted once."""


def _count_fallback_once(path: Path, offset: int, event: InboundEvent) -> None:
    if offset < _fallback_counted.get(path, -1):
        return
    _fallback_counted[path] = offset + 1
    metrics.NGINX_FALLBACK_ANSWERS.labels(event.endpoint.value).inc()
    if event.endpoint is Endpoint.TWILIO_ALERTS:
        # The app was down when Twilio reported this error: count it now.
        debugger.count(debugger.parse(event.flat))


def replay_nginx_fallback(settings: Settings, redis: Redis) -> int:
    """Apply new lines of nginx's fallback log; the offset is kept next to the log."""
    path = settings.nginx_fallback_log
    offset_file = path.with_name(path.name + ".offset")
    if not path.exists():
        return 0
    offset = int(offset_file.read_text() or 0) if offset_file.exists() else 0
    size = path.stat().st_size
    if size < offset:  # rotated
        offset = 0
        _fallback_counted.pop(path, None)
    replayed = 0
    with open(path, "rb") as handle:
        handle.seek(offset)
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # nginx is still writing this line
            event = parse_fallback_line(raw.decode("utf-8", "replace"), settings)
            if event is not None:
                _count_fallback_once(path, offset, event)
                try:
                    with settings_session(settings) as session:
                        effects = apply_event(session, event)
                except DBAPIError as exc:
                    if not postgres_refuses(exc):
                        raise  # the offset stays; the next pass retries this line
                    log.error(
                        "nginx fallback entry %s refused by Postgres: %s", event.event_id, exc
                    )
                else:
                    replayed += 1
                    metrics.WEBHOOK_EVENTS_REPLAYED.labels(EventSource.NGINX_FALLBACK.value).inc()
                    _enqueue_quietly(redis, effects.enqueue_recording_sid)
            offset += len(raw)
            offset_file.write_text(str(offset))
            hand_over(offset_file)  # replayed as root (`moked reconcile`): the service's next
    return replayed


def recovery_bound_seconds(settings: Settings) -> float:
    """How long after it was due a job a fault stranded can wait before it is on the queue
    again (docs/transcription.md): a dead worker's job, a retry its scheduler forgot, or
    one Redis lost. The scheduler and the pool usually act within seconds; this is the
    reconciler's guarantee when they do not."""
    waits = max(SCHEDULER_GRACE_SECONDS, settings.reconcile_stale_after_seconds)
    return waits + settings.reconcile_interval_seconds + LEASE_TTL_SECONDS


def requeue_stale(settings: Settings, redis: Redis) -> int:
    """Queue recordings that wait for a transcript but have no live job."""
    StartedJobRegistry(queue=transcription_queue(redis)).cleanup()
    cutoff = utcnow() - dt.timedelta(seconds=settings.reconcile_stale_after_seconds)
    with settings_session(settings) as session:
        rows = session.execute(
            select(Recording.recording_sid, Recording.processing_status).where(
                Recording.processing_status.in_(recordings.WAITING_FOR_TRANSCRIPT),
                or_(Recording.queued_at.is_(None), Recording.queued_at < cutoff),
            )
        ).all()
    requeued = 0
    for recording_sid, status in rows:
        try:
            requeued += _requeue_one(settings, redis, recording_sid, status)
        except RETRYABLE:
            raise
        except Exception:
            # One odd job (a corrupt hash, an RQ surprise) must not block the others.
            log.exception("could not re-queue %s; the next pass tries again", recording_sid)
    return requeued


def _requeue_one(
    settings: Settings, redis: Redis, recording_sid: str, status: ProcessingStatus
) -> int:
    if requeue_abandoned(redis, recording_sid):
        # RQ says started, but the worker's lease expired: it died (SIGKILL, OOM).
        metrics.RECONCILER_REQUEUED.labels("abandoned").inc()
        return 1
    if requeue_stranded(redis, recording_sid):
        # RQ says pending, but nothing will run it (a retry its scheduler forgot).
        metrics.RECONCILER_REQUEUED.labels("stranded").inc()
        return 1
    if pending_job(redis, recording_sid) is not None:
        return 0
    if not enqueue_transcription(redis, recording_sid):
        return 0
    metrics.RECONCILER_REQUEUED.labels(status.value).inc()
    with settings_session(settings) as session:
        recordings.mark_queued(session, recording_sid)
    return 1


def expire_callbacks(settings: Settings, _redis: Redis) -> int:
    """Callback attempts Twilio will not finish (a report lost) are failed."""
    with settings_session(settings) as session:
        return callbacks.expire_stale(session)


def run_once(settings: Settings, redis: Redis) -> ReconcileReport:
    report = ReconcileReport()
    steps = (
        ("spool_replayed", replay_spool),
        ("fallback_replayed", replay_nginx_fallback),
        ("requeued", requeue_stale),
        ("twilio_recovered", twilio_sync.recover_recordings),
        ("twilio_deleted", twilio_sync.retry_deletions),
        ("notifications_queued", dispatch.sweep),
        ("spam_flagged", callers.sweep),
        ("callbacks_overdue", callback_wait.measure),
        ("callbacks_expired", expire_callbacks),
    )
    for attribute, step in steps:
        try:
            setattr(report, attribute, step(settings, redis))
        except RETRYABLE as exc:
            report.errors.append(f"{attribute}: {type(exc).__name__}: {exc}")
            log.warning("reconcile %s deferred: %s", attribute, exc)
        except Exception as exc:  # a bug in one step must not stop the others, or the process
            report.errors.append(f"{attribute}: {type(exc).__name__}: {exc}")
            log.exception("reconcile %s failed", attribute)
    backlog.measure(settings, redis)
    return report


def initialise_metrics() -> None:
    """Series the alerts watch, at 0 from start, so their first increase is visible."""
    debugger.initialise_metrics()
    for endpoint in Endpoint:
        metrics.NGINX_FALLBACK_ANSWERS.labels(endpoint.value)
    for source in (EventSource.SPOOL, EventSource.NGINX_FALLBACK):
        metrics.WEBHOOK_EVENTS_REPLAYED.labels(source.value)


def run_forever(settings: Settings, redis: Redis, *, interval: float | None = None) -> None:
    pause = interval if interval is not None else settings.reconcile_interval_seconds
    while True:
        report = run_once(settings, redis)
        if (
            report.spool_replayed
            or report.fallback_replayed
            or report.requeued
            or report.twilio_recovered
            or report.notifications_queued
        ):
            log.info("reconciled: %s", report)
        time.sleep(pause)
