"""The webhooks' upkeep: one process per gunicorn master (per pod), beside the workers.

What the webhooks keep on their own disk must not depend on another process seeing it:
- the spool (events kept while Postgres was down) is replayed here, with the reconciler's
  own `replay_spool`, whenever it holds files, retrying while Postgres is down. On
  Kubernetes each pod's spool is its own volume and only this process sees it; natively
  and in Compose the reconciler replays the same directory too, which is harmless (an
  event is logged once by its id);
- the last-known answers are rebuilt from the database on start and every
  ANSWERS_REFRESH_SECONDS, so a process started on an empty state directory greets a
  caller with the business's greeting even if Postgres goes down before anyone called.

gunicorn.conf.py starts it (`when_ready`, once per master) as `python -m webhooks.upkeep
MASTER_PID`; it exits when that master is gone, and stops on SIGTERM with it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

from moked import metrics
from moked.answers import LastKnownAnswers, current_answers, current_blocked
from moked.db.session import settings_session
from moked.queue import redis_client
from moked.reconcile import replay_spool
from moked.settings import ConfigurationError, Settings, get_settings
from moked.spool import Spool
from moked.statuses import EventSource

log = logging.getLogger("webhooks.upkeep")  # run as __main__

LOG_FORMAT = "%(asctime)s %(levelname)s webhooks-upkeep[%(process)d] %(name)s: %(message)s"
SPOOL_POLL_SECONDS = 2.0
"""How often the spool directory is looked at (a directory listing; Postgres is asked
only when it holds files)."""
ANSWERS_REFRESH_SECONDS = 300.0
"""How often the last-known answers are rebuilt once they were (the workers keep them
current as calls come in; this catches numbers nobody called since a change)."""
RETRY_SECONDS = (2.0, 5.0, 10.0, 30.0)
"""Waits after successive failures (Postgres down or starting), the last one repeated."""


@dataclass
class Task:
    """A step run every `every` seconds once it succeeds, sooner again after a failure."""

    name: str
    step: Callable[[], object]
    every: float
    due: float = 0.0
    failures: int = 0

    def run_if_due(self, now: float) -> None:
        if now < self.due:
            return
        try:
            self.step()
        except Exception as exc:  # Postgres or Redis down, a disk error: try again soon
            wait = RETRY_SECONDS[min(self.failures, len(RETRY_SECONDS) - 1)]
            self.failures += 1
            log.warning("%s deferred %.0f s: %s: %s", self.name, wait, type(exc).__name__, exc)
            self.due = now + wait
            return
        self.failures = 0
        self.due = now + self.every


def replay_own_spool(settings: Settings, redis: Redis) -> int:
    """Replay the spool when it holds events; raises while Postgres cannot take them."""
    spool = Spool(settings.spool_dir)
    if not spool.count():
        return 0
    replayed = replay_spool(settings, redis)
    if replayed:
        log.info("replayed %d spooled event(s) from %s", replayed, settings.spool_dir)
    if spool.count():
        # replay_spool stops quietly on a corrupt file (set aside); the rest waits for
        # the next pass, which must not be SPOOL_POLL_SECONDS of silence on a dead database.
        raise RuntimeError(f"{spool.count()} event(s) still spooled")
    return replayed


def rebuild_answers(settings: Settings, store: LastKnownAnswers) -> int:
    """Write every known number's answer; raises while Postgres is down."""
    read_at = time.time()
    with settings_session(settings) as session:
        answers = current_answers(session, settings)
        blocked = current_blocked(session)
    written, removed = store.rebuild(answers, read_at=read_at)
    store.rebuild_blocked(blocked)
    if written or removed:
        log.info(
            "last-known answers rebuilt: %d number(s), %d written, %d removed",
            len(answers),
            written,
            removed,
        )
    return len(answers)


def run(settings: Settings, master_pid: int) -> None:
    # This pod's replays are counted on the webhooks' /metrics (the same multiprocess
    # directory), at 0 from start so their first increase is visible to rate().
    metrics.WEBHOOK_EVENTS_REPLAYED.labels(EventSource.SPOOL.value)
    log.info(
        "keeping %s replayed and %s rebuilt for gunicorn master %d",
        settings.spool_dir,
        settings.last_known_answers_dir,
        master_pid,
    )
    redis = redis_client(settings.redis_url)
    store = LastKnownAnswers(settings.last_known_answers_dir)
    tasks = [
        Task("answers", lambda: rebuild_answers(settings, store), ANSWERS_REFRESH_SECONDS),
        Task("spool replay", lambda: replay_own_spool(settings, redis), SPOOL_POLL_SECONDS),
    ]
    # The master's death (SIGKILL, OOM) leaves this process to init: it goes too, and the
    # next master starts its own.
    while os.getppid() == master_pid:
        for task in tasks:
            task.run_if_due(time.monotonic())
        time.sleep(0.5)
    log.info("gunicorn master %d is gone; stopping", master_pid)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stdout, force=True)
    args = sys.argv[1:] if argv is None else argv
    master_pid = int(args[0]) if args else os.getppid()
    # SIGTERM (supervisord's stop, a pod's end) stops the loop between steps' statements;
    # every step is idempotent, so whatever it was doing is simply done again next start.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        print(f"webhooks-upkeep: {exc}", file=sys.stderr)
        return 2
    run(settings, master_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
