"""Two small helpers the Kubernetes manifests run (deploy/kubernetes/, docs/deploy-kubernetes.md).

    python -m moked.kube wait-for-schema   # init container of every app: the Job migrated
    python -m moked.kube replay-fallback   # sidecar of every nginx pod: its own fallback log

`wait-for-schema` returns once the database is at the head revision of the migrations in
this image, so a new image's pods start only after the `moked-migrate` Job applied them
(plain `kubectl apply -k` has no hooks to order a Job before Deployments).

`replay-fallback` is the reconciler's fallback-log step (moked.reconcile.replay_nginx_fallback,
idempotent) run in a loop next to one nginx: each nginx pod writes its fallback log on its
own persistent volume, and only a process in that pod sees it. The log and the offset file
keep working across a restart of the pod, which gets the same volume back.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from moked.settings import Settings, get_settings

log = logging.getLogger(__name__)


def schema_ready(settings: Settings) -> bool:
    """True when the database's revisions are exactly the head(s) of this image's migrations."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    from moked.db.migrate import alembic_config

    heads = set(ScriptDirectory.from_config(alembic_config(settings.database_url)).get_heads())
    engine = create_engine(settings.database_url, pool_pre_ping=True)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as exc:
        log.info("database not reachable yet: %s", type(exc).__name__)
        return False
    finally:
        engine.dispose()
    if current != heads:
        log.info("database at %s, waiting for %s", sorted(current), sorted(heads))
    return current == heads


def wait_for_schema(settings: Settings, *, interval: float = 3.0, timeout: float = 0) -> bool:
    """Poll until the schema is current; False after `timeout` seconds (0 = wait forever)."""
    deadline = time.monotonic() + timeout
    while not schema_ready(settings):
        if timeout and time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def replay_fallback_forever(settings: Settings, *, interval: float | None = None) -> None:
    """The fallback-log step of the reconciler, every RECONCILE_INTERVAL_SECONDS."""
    from prometheus_client import start_http_server

    from moked.queue import redis_client
    from moked.reconcile import RETRYABLE, initialise_metrics, replay_nginx_fallback

    redis = redis_client(settings.redis_url)
    initialise_metrics()
    # moked_nginx_fallback_answers_total and the replay counter are counted where replayed.
    start_http_server(settings.reconciler_metrics_port, addr=settings.metrics_bind_host)
    pause = interval if interval is not None else settings.reconcile_interval_seconds
    while True:
        try:
            replayed = replay_nginx_fallback(settings, redis)
        except RETRYABLE as exc:  # Postgres or Redis still down: the offset stays
            log.warning("fallback replay deferred: %s", exc)
        else:
            if replayed:
                log.info("replayed %d fallback callbacks", replayed)
        time.sleep(pause)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moked.kube", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    wait = commands.add_parser("wait-for-schema", help="block until migrations are applied")
    wait.add_argument("--timeout", type=float, default=0, help="seconds; 0 = forever")
    commands.add_parser("replay-fallback", help="replay this pod's nginx fallback log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    if args.command == "wait-for-schema":
        if not wait_for_schema(settings, timeout=args.timeout):
            print("moked: the database schema is not current; is the migrate Job done?")
            return 1
        print("database schema is current")
        return 0
    replay_fallback_forever(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
