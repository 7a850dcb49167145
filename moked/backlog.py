"""The transcription backlog as gauges, measured from outside the workers.

A worker cannot report that no worker is alive, and a dead worker's gauges vanish with
it, so the reconciler (one long-running process) measures the backlog on every pass:
the queue and the live workers from Redis, the oldest recording still waiting for its
transcript from Postgres. The alert rules in monitoring/prometheus/rules read these.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from moked import metrics
from moked.db.models import Recording
from moked.db.session import settings_session
from moked.queue import transcription_queue
from moked.recordings import WAITING_FOR_TRANSCRIPT
from moked.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backlog:
    queue_depth: int | None
    workers: int | None
    oldest_waiting_seconds: float | None


def oldest_waiting_seconds(settings: Settings, now: dt.datetime) -> float:
    """Age of the oldest recording waiting for its transcript; 0 when none waits."""
    since = func.coalesce(Recording.completed_at, Recording.queued_at, Recording.created_at)
    with settings_session(settings) as session:
        oldest = session.scalar(
            select(func.min(since)).where(Recording.processing_status.in_(WAITING_FOR_TRANSCRIPT))
        )
    return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0


def measure(settings: Settings, redis: Redis, now: dt.datetime | None = None) -> Backlog:
    """Read the backlog and set its gauges; a store that is down leaves its gauges as they
    were (its own alert fires) and is reported as None."""
    now = now or dt.datetime.now(dt.UTC)
    depth = workers = None
    oldest = None
    try:
        queue = transcription_queue(redis)
        depth = queue.count
        # A worker's registration hash expires with its heartbeat: killed workers drop out.
        workers = len(Worker.all(queue=queue))
    except RedisError as exc:
        log.warning("backlog: redis unavailable (%s)", exc)
    try:
        oldest = oldest_waiting_seconds(settings, now)
    except SQLAlchemyError as exc:
        log.warning("backlog: postgres unavailable (%s)", type(exc).__name__)
    if depth is not None:
        metrics.TRANSCRIPTION_QUEUE_DEPTH.set(depth)
    if workers is not None:
        metrics.TRANSCRIPTION_WORKERS.set(workers)
    if oldest is not None:
        metrics.TRANSCRIPTION_OLDEST_WAITING.set(oldest)
    return Backlog(queue_depth=depth, workers=workers, oldest_waiting_seconds=oldest)
