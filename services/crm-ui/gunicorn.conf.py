"""gunicorn settings for the CRM, the same natively and in Docker.

PROMETHEUS_MULTIPROC_DIR must be set and emptied by the launcher before gunicorn starts.
"""

import multiprocessing
import os

bind = os.environ.get("CRM_BIND", "127.0.0.1:8002")
workers = int(os.environ.get("CRM_WORKERS", str(max(2, multiprocessing.cpu_count()))))
worker_class = "gthread"
threads = int(os.environ.get("CRM_THREADS", "4"))
# Uploads of greetings and slow pages stay well inside nginx's 8 s read timeout.
timeout = 30
graceful_timeout = 10
keepalive = 30
# Importing the app in the master shares the code pages; engines are created lazily per worker.
preload_app = True
accesslog = os.environ.get("CRM_ACCESS_LOG") or None
errorlog = "-"
proc_name = "moked-crm-ui"
# gunicorn 27 opens a control socket at one per-user path; several gunicorns would fight
# over it, and supervisord is our control interface.
control_socket_disable = True


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    from moked.db.session import reset_engine

    reset_engine()


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from moked.metrics import mark_process_dead

    mark_process_dead(worker.pid)
