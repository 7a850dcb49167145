"""The RQ worker: a SimpleWorker whose process loads the model once, before its first job.

RQ's default Worker forks a work horse per job: a model loaded in the horse would be
loaded again for every job, and metrics recorded there would die with it. A SimpleWorker
runs jobs in its own process instead, so the model (loaded here, once) serves every job
and the metrics survive. Isolation from a crashing job comes from the pool
(`transcriber.pool`), which restarts a dead worker process and re-queues its job at once.
Job timeouts still apply (RQ's SIGALRM death penalty runs in the main thread).

`python -m transcriber` starts the service: the pool (`transcriber.pool`), which runs
these workers; this module knows nothing of the pool.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys

from rq import SimpleWorker
from rq.scheduler import RQScheduler

from moked.queue import SERIALIZER, redis_client, transcription_queue

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s[%(process)d] %(name)s: %(message)s"


class TranscriberWorker(SimpleWorker):
    """Jobs run in this process, next to the model loaded once at start."""


def die_with_parent() -> None:
    """Linux: SIGTERM (RQ's warm shutdown) when the pool dies, even by SIGKILL, so no
    orphaned worker keeps taking jobs beside the pool's replacements."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        log.warning("cannot ask to die with the pool on this platform")


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stdout, force=True)
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)  # logs every request
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run_worker(name: str) -> None:
    """A worker process (the pool's child): preload the model, then take jobs forever."""
    die_with_parent()
    configure_logging()
    from moked.db.session import reset_engine
    from moked.settings import get_settings
    from transcriber.backends import get_backend

    settings = get_settings()
    reset_engine()
    backend = get_backend(settings)  # once per process, before the first job
    backend.warm_up()
    log.info("worker %s ready with %s/%s (pid %d)", name, backend.name, backend.model, os.getpid())
    redis = redis_client(settings.redis_url)
    worker = TranscriberWorker(
        [transcription_queue(redis)],
        connection=redis,
        name=name,
        log_job_description=True,
        serializer=SERIALIZER,
    )
    worker.work(with_scheduler=False, logging_level="INFO", max_idle_time=None)


class TranscriptionScheduler(RQScheduler):
    """RQ's scheduler, made to come back from a Redis restart at once.

    RQ's own retries its queue's lock only every DEFAULT_SCHEDULER_FALLBACK_PERIOD (2 min)
    once it has lost it, and a restarted scheduler with a new name waits until the dead
    one's lock expires (1 min): meanwhile retries whose backoff elapsed sit in the
    scheduled registry with nothing to move them (issue 13, item 12). This one keeps
    asking on every pass, and the pool gives it the same name across restarts, so it
    reclaims its own lock at once.
    """

    @property
    def should_reacquire_locks(self) -> bool:
        return bool(self._queue_names != self.acquired_locks)


def scheduler_name(pool_pid: int) -> str:
    """Stable for the life of one pool: a restarted scheduler owns its predecessor's lock."""
    return f"transcriber.{socket.gethostname()}.{pool_pid}.scheduler"


def run_scheduler(name: str) -> None:
    """The RQ scheduler process: moves retries whose backoff elapsed back onto the queue."""
    die_with_parent()
    configure_logging()
    from moked.settings import get_settings

    settings = get_settings()
    redis = redis_client(settings.redis_url)
    scheduler = TranscriptionScheduler(
        [transcription_queue(redis)],
        connection=redis,
        interval=1,
        name=name,
        serializer=SERIALIZER,
    )
    scheduler.acquire_locks()  # type: ignore[no-untyped-call]
    scheduler.work()  # type: ignore[no-untyped-call]
