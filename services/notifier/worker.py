"""The notifications worker: one process taking the `notifications` queue's jobs.

A SimpleWorker runs each job in this process (no fork per job): sending an alert is a
few network round trips, so a fork would cost more than the job, and the metrics the job
records stay in the process that serves /metrics. A job stuck on a provider is bounded by
the provider's timeout and RQ's job timeout; a crash is restarted by the supervisor, and
the reconciler's sweep queues again whatever was left pending. Retries are not RQ's: the
delivery row keeps the attempts and the next time (moked.notify.deliveries).
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from prometheus_client import start_http_server
from rq import SimpleWorker

from moked.queue import SERIALIZER, notifications_queue, redis_client
from moked.settings import ConfigurationError, get_settings

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s notifier[%(process)d] %(name)s: %(message)s"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stdout, force=True)
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        print(f"notifier: {exc}", file=sys.stderr)
        return 2
    from moked.notify.dispatch import initialise_metrics

    initialise_metrics()
    addr = settings.metrics_bind_host
    start_http_server(settings.notifier_metrics_port, addr=addr)
    log.info("metrics on http://%s:%d/metrics", addr, settings.notifier_metrics_port)
    redis = redis_client(settings.redis_url)
    worker = SimpleWorker(
        [notifications_queue(redis)],
        connection=redis,
        name=f"notifier-{socket.gethostname()}-{os.getpid()}",
        log_job_description=True,
        serializer=SERIALIZER,
    )
    worker.work(with_scheduler=False, logging_level="INFO", max_idle_time=None)
    return 0
