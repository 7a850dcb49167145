"""The transcription queue: its name, job ids and the one way to enqueue.

The job function is named by its import path so the core never imports a service.
"""

from __future__ import annotations

import datetime as dt
import logging

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

TRANSCRIPTION_QUEUE = "transcription"
"""The queue /webhook/recording_status feeds and transcriber workers consume."""
TRANSCRIBE_JOB = "transcriber.jobs.transcribe_recording"
"""Import path of the job function, which takes a RecordingSid."""
TRANSCRIBE_TIMEOUT_SECONDS = 15 * 60
"""A 30 s voicemail takes seconds; a long one on a slow CPU may take minutes."""
RESULT_TTL_SECONDS = 24 * 3600
FAILURE_TTL_SECONDS = 7 * 24 * 3600
RETRY_INTERVALS_SECONDS = (15, 60, 240)
"""Backoff between attempts of one job (run by the RQ scheduler): ~5 minutes in all."""
MAX_ATTEMPTS = len(RETRY_INTERVALS_SECONDS) + 1
"""Attempts (counted on the recording, across jobs) before a recording is marked failed."""
LEASE_TTL_SECONDS = 15
"""A running job renews its lease every LEASE_TTL/3 s; a lease that expired means the
worker died (SIGKILL, OOM, power) and the job is abandoned."""

SCHEDULER_GRACE_SECONDS = 30
"""How late past its due time a retry may still be in the scheduled registry before the
reconciler moves it to the queue itself (the scheduler moves it within a second normally)."""
SERIALIZER = JSONSerializer
"""Jobs are JSON in Redis, never pickles: a process that reads the queue (the workers, the
reconciler) must not run code someone with access to Redis put there. A job's only
argument is a RecordingSid and its result a small dict, so JSON carries both."""

NOTIFICATIONS_QUEUE = "notifications"
"""Alerts (moked.notify.dispatch); its own worker, so a long transcription never delays one."""
NOTIFY_JOB_TIMEOUT_SECONDS = 120
"""A send is bounded by its provider timeout (SMTP 15 s, webhooks 10 s, Twilio 10 s)."""
NOTIFY_RESULT_TTL_SECONDS = 3600

_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}

log = logging.getLogger(__name__)


def transcription_job_id(recording_sid: str) -> str:
    """One job per recording: Twilio's duplicate callbacks collapse onto it."""
    return recording_sid


def lease_key(recording_sid: str) -> str:
    """Redis key a worker holds while it processes the recording."""
    return f"moked:transcription:lease:{recording_sid}"


def lease_alive(redis: Redis, recording_sid: str) -> bool:
    return bool(redis.exists(lease_key(recording_sid)))


def redis_client(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, health_check_interval=30)


def transcription_queue(redis: Redis) -> Queue:
    return Queue(
        TRANSCRIPTION_QUEUE,
        connection=redis,
        default_timeout=TRANSCRIBE_TIMEOUT_SECONDS,
        serializer=SERIALIZER,
    )


def fetch_job(redis: Redis, job_id: str) -> Job:
    """A job as the workers wrote it (JSON); raises NoSuchJobError."""
    return Job.fetch(job_id, connection=redis, serializer=SERIALIZER)


def pending_job(redis: Redis, recording_sid: str) -> Job | None:
    """The recording's job when it is still waiting or running, else None.

    A job Moked cannot read (written with another serializer, e.g. a pickle from before
    the switch to JSON) counts as gone: queueing again replaces it under the same id.
    """
    try:
        job = fetch_job(redis, transcription_job_id(recording_sid))
        _ = job.args  # RQ reads the payload lazily; JSON refuses a pickle here, unrun
    except (NoSuchJobError, DeserializationError):
        return None
    return job if job.get_status(refresh=False) in _PENDING else None


def enqueue_transcription(redis: Redis, recording_sid: str) -> bool:
    """Queue the recording's transcription unless a job for it is already pending.

    Returns True when a new job was queued.
    """
    if pending_job(redis, recording_sid) is not None:
        return False
    transcription_queue(redis).enqueue(
        TRANSCRIBE_JOB,
        recording_sid,
        job_id=transcription_job_id(recording_sid),
        job_timeout=TRANSCRIBE_TIMEOUT_SECONDS,
        result_ttl=RESULT_TTL_SECONDS,
        failure_ttl=FAILURE_TTL_SECONDS,
        retry=Retry(max=len(RETRY_INTERVALS_SECONDS), interval=list(RETRY_INTERVALS_SECONDS)),
        description=f"transcribe {recording_sid}",
    )
    log.info("queued transcription of %s", recording_sid)
    return True


def abandoned_job(redis: Redis, recording_sid: str, *, worker_dead: bool = False) -> Job | None:
    """The recording's job when RQ thinks it runs but no live worker holds its lease.

    `worker_dead`: the caller saw the worker process die, so a fresh job counts too.
    """
    job = pending_job(redis, recording_sid)
    if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
        return None
    if lease_alive(redis, recording_sid):
        return None
    started = None if worker_dead else job.started_at
    if started is not None:
        if started.tzinfo is None:
            started = started.replace(tzinfo=dt.UTC)
        age = (dt.datetime.now(dt.UTC) - started).total_seconds()
        if age < LEASE_TTL_SECONDS:
            return None  # the worker may not have taken its lease yet
    return job


def requeue_abandoned(redis: Redis, recording_sid: str, *, worker_dead: bool = False) -> bool:
    """Put an abandoned job back on the queue at once (instead of RQ's ~job-timeout sweep).

    Returns True when the job was abandoned and has been queued again. The dead job's
    traces are removed with plain Redis commands: RQ's own `job.delete()` fetches every
    execution and raises when one expired, which would wedge the recovery on that job.
    """
    job = abandoned_job(redis, recording_sid, worker_dead=worker_dead)
    if job is None:
        return False
    started = StartedJobRegistry(queue=transcription_queue(redis))
    prefix = f"{job.id}:".encode()
    members: list[bytes | str] = list(redis.zrange(started.key, 0, -1))  # type: ignore[arg-type]
    stale = [m for m in members if _as_bytes(m).startswith(prefix)]
    executions = f"rq:executions:{job.id}"
    with redis.pipeline() as pipe:
        if stale:
            pipe.zrem(started.key, *stale)
        for key in redis.scan_iter(match=f"rq:execution:{job.id}:*", count=100):
            pipe.delete(key)
        pipe.delete(executions, job.key)
        pipe.execute()
    log.warning("job of %s was abandoned by a dead worker; queued again", recording_sid)
    return enqueue_transcription(redis, recording_sid)


def _scheduled(queue: Queue) -> ScheduledJobRegistry:
    return ScheduledJobRegistry(queue=queue)  # type: ignore[no-untyped-call]


def stranded_job(redis: Redis, recording_sid: str, *, now: float | None = None) -> Job | None:
    """The recording's job when RQ calls it pending but nothing will run it: queued but
    not on the queue, deferred (Moked's jobs have no dependencies), or a retry overdue by
    more than SCHEDULER_GRACE_SECONDS in the scheduled registry (its scheduler lost the
    lock, e.g. across a Redis restart). A started job is `abandoned_job`'s business."""
    job = pending_job(redis, recording_sid)
    if job is None:
        return None
    status = job.get_status(refresh=False)
    queue = transcription_queue(redis)
    if status == JobStatus.QUEUED:
        return None if queue.get_job_position(job.id) is not None else job
    if status == JobStatus.DEFERRED:
        return job
    if status == JobStatus.SCHEDULED:
        due = redis.zscore(_scheduled(queue).key, job.id)
        current = dt.datetime.now(dt.UTC).timestamp() if now is None else now
        if due is None or float(due) + SCHEDULER_GRACE_SECONDS < current:  # type: ignore[arg-type,unused-ignore]
            return job
    return None


def requeue_stranded(redis: Redis, recording_sid: str) -> bool:
    """Put a stranded job (see `stranded_job`) on the queue, keeping its retry budget."""
    job = stranded_job(redis, recording_sid)
    if job is None:
        return False
    queue = transcription_queue(redis)
    _scheduled(queue).remove(job)
    queue.enqueue_job(job)
    log.warning("job of %s was stranded (%s); queued again", recording_sid, job.get_status())
    return True


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def notifications_queue(redis: Redis) -> Queue:
    return Queue(
        NOTIFICATIONS_QUEUE,
        connection=redis,
        default_timeout=NOTIFY_JOB_TIMEOUT_SECONDS,
        serializer=SERIALIZER,
    )


def enqueue_notification_job(redis: Redis, function: str, argument: str | int, job_id: str) -> bool:
    """Queue one notifications job unless the same one (same id) is already waiting or
    running. Retries are not RQ's: the delivery row holds the attempts and the backoff, and
    the reconciler queues what is due. Returns True when a job was queued."""
    try:
        job = fetch_job(redis, job_id)
        _ = job.args
        if job.get_status(refresh=False) in _PENDING:
            return False
    except (NoSuchJobError, DeserializationError):
        pass
    notifications_queue(redis).enqueue(
        function,
        argument,
        job_id=job_id,
        job_timeout=NOTIFY_JOB_TIMEOUT_SECONDS,
        result_ttl=NOTIFY_RESULT_TTL_SECONDS,
        failure_ttl=FAILURE_TTL_SECONDS,
        description=f"{function.rsplit('.', 1)[-1]} {argument}",
    )
    return True
