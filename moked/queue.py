"""The transcription queue: its name, job ids and the one way to enqueue.

The job function is named by its import path so the core never imports a service.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

TRANSCRIPTION_QUEUE = "transcription"
"""The queue /webhook/recording_status feeds and transcriber workers consume."""
TRANSCRIBE_JOB = "transcriber.jobs.transcribe_recording"
"""Import path of the job function, which takes a RecordingSid."""
TRANSCRIBE_TIMEOUT_SECONDS = 15 * 60
"""A 30 s voicemail takes seconds; a long one on a slow CPU may take minutes."""
RESULT_TTL_SECONDS = 24 * 3600
FAILURE_TTL_SECONDS = 7 * 24 * 3600

_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}

log = logging.getLogger(__name__)


def transcription_job_id(recording_sid: str) -> str:
    """One job per recording: Twilio's duplicate callbacks collapse onto it."""
    return recording_sid


def redis_client(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, health_check_interval=30)


def transcription_queue(redis: Redis) -> Queue:
    return Queue(TRANSCRIPTION_QUEUE, connection=redis, default_timeout=TRANSCRIBE_TIMEOUT_SECONDS)


def pending_job(redis: Redis, recording_sid: str) -> Job | None:
    """The recording's job when it is still waiting or running, else None."""
    try:
        job = Job.fetch(transcription_job_id(recording_sid), connection=redis)
    except NoSuchJobError:
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
        description=f"transcribe {recording_sid}",
    )
    log.info("queued transcription of %s", recording_sid)
    return True
