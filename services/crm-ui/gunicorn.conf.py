"""gunicorn settings for the CRM, the same natively and in Docker.

Every value comes from the settings (CRM_BIND_HOST, CRM_PORT, CRM_WORKERS,
CRM_THREADS, CRM_ACCESS_LOG; moked/settings.py). PROMETHEUS_MULTIPROC_DIR must be set
and emptied by the launcher before gunicorn starts.
"""

import sys

from moked.settings import ConfigurationError, get_settings

try:
    settings = get_settings()
except ConfigurationError as exc:  # one clear line, not gunicorn's traceback
    sys.exit(f"moked-crm-ui: {exc}")

bind = settings.crm_bind
workers = settings.crm_worker_count
worker_class = "gthread"
threads = settings.crm_threads
# Uploads of greetings and slow pages stay well inside nginx's 8 s read timeout.
timeout = 30
graceful_timeout = 10
keepalive = 30
# Importing the app in the master shares the code pages; engines are created lazily per worker.
preload_app = True
accesslog = settings.crm_access_log or None
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
