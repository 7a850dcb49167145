"""gunicorn settings for the webhooks service, the same natively and in Docker.

PROMETHEUS_MULTIPROC_DIR must be set and emptied by the launcher before gunicorn starts.
"""

import multiprocessing
import os

bind = os.environ.get("WEBHOOKS_BIND", "127.0.0.1:8001")
workers = int(os.environ.get("WEBHOOKS_WORKERS", str(multiprocessing.cpu_count() * 2)))
worker_class = "gthread"
threads = int(os.environ.get("WEBHOOKS_THREADS", "4"))
# Twilio gives up after 15 s; nginx after 10 s; a stuck worker is recycled well before.
timeout = 12
graceful_timeout = 10
keepalive = 30
backlog = 2048
# Importing the app in the master shares the code pages; engines are created lazily per worker.
preload_app = True
accesslog = os.environ.get("WEBHOOKS_ACCESS_LOG") or None
errorlog = "-"
proc_name = "moked-webhooks"
# gunicorn 27 opens a control socket at one per-user path; several gunicorns (webhooks,
# CRM, test stacks) would fight over it, and supervisord is our control interface.
control_socket_disable = True


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    from moked.db.session import reset_engine

    reset_engine()


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from moked.metrics import mark_process_dead

    mark_process_dead(worker.pid)
