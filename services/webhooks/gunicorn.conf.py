"""gunicorn settings for the webhooks service, the same natively and in Docker.

Every value comes from the settings (WEBHOOKS_BIND_HOST, WEBHOOKS_PORT, WEBHOOKS_WORKERS,
WEBHOOKS_THREADS, WEBHOOKS_ACCESS_LOG; moked/settings.py). PROMETHEUS_MULTIPROC_DIR must be set
and emptied by the launcher before gunicorn starts.
"""

import os
import subprocess
import sys

from moked.settings import ConfigurationError, get_settings

try:
    settings = get_settings()
except ConfigurationError as exc:  # one clear line, not gunicorn's traceback
    sys.exit(f"moked-webhooks: {exc}")

bind = settings.webhooks_bind
workers = settings.webhooks_worker_count
worker_class = "gthread"
threads = settings.webhooks_threads
# Twilio gives up after 15 s; nginx after 10 s; a stuck worker is recycled well before.
timeout = 12
graceful_timeout = 10
keepalive = 30
backlog = 2048
# Importing the app in the master shares the code pages; engines are created lazily per worker.
preload_app = True
accesslog = settings.webhooks_access_log or None
errorlog = "-"
proc_name = "moked-webhooks"
# gunicorn 27 opens a control socket at one per-user path; several gunicorns (webhooks,
# CRM, test stacks) would fight over it, and supervisord is our control interface.
control_socket_disable = True


_upkeep: subprocess.Popen[bytes] | None = None


def when_ready(server):  # type: ignore[no-untyped-def]
    """Once per master (per pod), not per worker: the process that replays this pod's spool
    and rebuilds its last-known answers (services/webhooks/upkeep.py). A process of its own,
    started after the sockets are bound: no thread in the master that forks the workers,
    no listening socket inherited, and start-up is not delayed by a database that is down."""
    global _upkeep
    _upkeep = subprocess.Popen([sys.executable, "-m", "webhooks.upkeep", str(os.getpid())])


def on_exit(server):  # type: ignore[no-untyped-def]
    if _upkeep is not None and _upkeep.poll() is None:
        _upkeep.terminate()
        try:
            _upkeep.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _upkeep.kill()


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    from moked.db.session import reset_engine

    reset_engine()


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from moked.metrics import mark_process_dead

    mark_process_dead(worker.pid)
