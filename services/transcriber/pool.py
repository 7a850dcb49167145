"""The transcriber service: TRANSCRIBER_WORKERS worker processes, the RQ scheduler, /metrics.

One supervised process (supervisord natively, the container's PID 1 in Docker) that:
- starts the worker processes (each loads the model once) and the scheduler (retries
  with backoff need it), restarting any that dies, with backoff;
- when a worker dies mid-job (SIGKILL, OOM), drops its lease and re-queues its job at
  once, so the recording is not left to RQ's sweep (minutes) or the reconciler;
- serves /metrics on TRANSCRIBER_METRICS_PORT: every process writes to the shared
  prometheus multiprocess directory (PROMETHEUS_MULTIPROC_DIR, emptied by the launcher),
  so job metrics survive the process that recorded them. (The backlog gauges, queue depth,
  oldest waiting recording and live workers, are measured by the reconciler: a dead
  worker cannot report that it is dead; see moked/backlog.py.)
On SIGTERM it asks every worker to finish its current job (RQ's warm shutdown), then exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 50.0
"""Below supervisord's stopwaitsecs for the program: a job in progress may finish."""
MAX_RESTART_DELAY_SECONDS = 30.0


@dataclass
class Child:
    role: str
    """"worker" or "scheduler"."""
    index: int
    process: BaseProcess | None = None
    name: str = ""
    restarts: int = 0
    not_before: float = 0.0
    started_at: float = field(default_factory=time.monotonic)


def _ensure_multiproc_dir() -> None:
    """prometheus-client must know the directory before it is imported anywhere."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="moked-transcriber-")


class Pool:
    def __init__(self, workers: int) -> None:
        from moked.queue import redis_client
        from moked.settings import get_settings

        self.settings = get_settings()
        self.redis = redis_client(self.settings.redis_url)
        self.context = multiprocessing.get_context("spawn")
        self.children = [Child("worker", i) for i in range(max(1, workers))]
        self.children.append(Child("scheduler", 0))
        self.stopping = False

    # --- children -----------------------------------------------------------------------

    def _start(self, child: Child) -> None:
        from transcriber.worker import run_scheduler, run_worker, scheduler_name

        if child.role == "worker":
            child.name = (
                f"transcriber.{socket.gethostname()}.{os.getpid()}.{child.index}."
                + (uuid.uuid4().hex[:6])
            )
            process = self.context.Process(
                target=run_worker, args=(child.name,), name=f"worker-{child.index}"
            )
        else:
            process = self.context.Process(
                target=run_scheduler, args=(scheduler_name(os.getpid()),), name="scheduler"
            )
        process.start()
        child.process = process
        child.started_at = time.monotonic()
        log.info("started %s %d (pid %s)", child.role, child.index, process.pid)

    def _reap(self, child: Child) -> None:
        process = child.process
        if process is None or process.is_alive():
            return
        pid = process.pid or 0
        code = process.exitcode
        process.join(0)
        child.process = None
        from moked.metrics import mark_process_dead

        mark_process_dead(pid)
        if self.stopping:
            return
        log.warning("%s %d (pid %d) died with exit code %s", child.role, child.index, pid, code)
        if child.role == "worker":
            self._recover_job_of(child.name, pid)
        lived = time.monotonic() - child.started_at
        child.restarts = 0 if lived > 60 else child.restarts + 1
        delay = min(MAX_RESTART_DELAY_SECONDS, 0.5 * 2**child.restarts) if child.restarts else 0
        child.not_before = time.monotonic() + delay

    def _recover_job_of(self, worker_name: str, pid: int) -> None:
        """Re-queue the job the dead worker was running, and forget the worker in Redis."""
        from rq import Worker

        from moked.queue import requeue_abandoned
        from transcriber.lease import release_if_held_by

        try:
            worker = Worker.find_by_key(
                Worker.redis_worker_namespace_prefix + worker_name, connection=self.redis
            )
            if worker is None:
                return
            job_id = worker.get_current_job_id()
            if job_id:
                release_if_held_by(self.redis, job_id, pid)
                if requeue_abandoned(self.redis, job_id, worker_dead=True):
                    log.warning("re-queued %s, abandoned by the dead worker %d", job_id, pid)
            worker.register_death()  # type: ignore[no-untyped-call]
        except Exception as exc:  # never let recovery stop the pool; the reconciler retries
            log.warning(
                "could not recover the job of dead worker %d (reconciler will): %s", pid, exc
            )

    # --- metrics ------------------------------------------------------------------------

    def serve_metrics(self) -> None:
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        addr = self.settings.metrics_bind_host
        start_http_server(self.settings.transcriber_metrics_port, addr=addr, registry=registry)
        log.info("metrics on http://%s:%d/metrics", addr, self.settings.transcriber_metrics_port)

    # --- the loop -----------------------------------------------------------------------

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("stopping: workers finish their current job")
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.serve_metrics()
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                self._reap(child)
                if child.process is None and not self.stopping and now >= child.not_before:
                    self._start(child)
            time.sleep(0.5)
        return self.shutdown()

    def shutdown(self) -> int:
        alive = [c.process for c in self.children if c.process is not None and c.process.is_alive()]
        for process in alive:
            if process.pid:
                os.kill(process.pid, signal.SIGTERM)  # RQ: warm shutdown after the job
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive() and process.pid:
                log.warning("pid %d did not stop in time; killing it", process.pid)
                os.kill(process.pid, signal.SIGKILL)
                process.join(5)
        log.info("transcriber stopped")
        return 0


def main() -> int:
    _ensure_multiproc_dir()
    from moked.settings import ConfigurationError, get_settings
    from transcriber.worker import configure_logging

    configure_logging()
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        log.error("transcriber: %s", exc)
        return 2
    # Fail here, once, with one clear line, rather than in a restart loop of children.
    from transcriber.errors import ModelError
    from transcriber.model_store import route_dir, routes

    try:
        for route in routes(settings):
            if route.backend.value == "local":
                route_dir(route, settings.state_dir)
    except ModelError as exc:
        log.error("transcriber: %s", exc)
        return 2
    log.info(
        "transcriber: %d worker(s), backend %s",
        settings.transcriber_workers,
        settings.effective_backend.value,
    )
    return Pool(settings.transcriber_workers).run()
