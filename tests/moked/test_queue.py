"""moked/queue.py: jobs are JSON, never pickles, and the net for a job nothing will run:
stranded (a retry its scheduler forgot, a queue Redis lost).

On a Redis database of their own (`private_redis`), so the stack's workers, scheduler and
reconciler leave these jobs alone.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib

import pytest
from redis import Redis
from rq import Queue
from rq.job import JobStatus
from rq.serializers import DefaultSerializer

from moked.queue import (
    SCHEDULER_GRACE_SECONDS,
    enqueue_transcription,
    pending_job,
    requeue_stranded,
    stranded_job,
    transcription_queue,
)
from tests.helpers import new_recording_sid


def _scheduled(redis: Redis, sid: str, due: dt.datetime) -> None:
    assert enqueue_transcription(redis, sid)
    queue = transcription_queue(redis)
    job = pending_job(redis, sid)
    assert job is not None
    queue.remove(job.id)
    queue.schedule_job(job, due)
    assert job.get_status() == JobStatus.SCHEDULED


def test_an_overdue_retry_is_put_back_on_the_queue(private_redis: Redis) -> None:
    sid = new_recording_sid()
    now = dt.datetime.now(dt.UTC)
    _scheduled(private_redis, sid, now - dt.timedelta(seconds=SCHEDULER_GRACE_SECONDS + 5))
    assert stranded_job(private_redis, sid) is not None
    assert requeue_stranded(private_redis, sid)
    job = pending_job(private_redis, sid)
    assert job is not None and job.get_status() == JobStatus.QUEUED
    assert transcription_queue(private_redis).get_job_position(job.id) == 0
    assert job.retries_left == 3, "the retry budget is kept"
    assert stranded_job(private_redis, sid) is None and not requeue_stranded(private_redis, sid)


@pytest.mark.parametrize("seconds", [-(SCHEDULER_GRACE_SECONDS - 10), 60])
def test_a_retry_its_scheduler_can_still_take_is_left_alone(
    private_redis: Redis, seconds: int
) -> None:
    sid = new_recording_sid()
    _scheduled(private_redis, sid, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds))
    assert stranded_job(private_redis, sid) is None
    assert not requeue_stranded(private_redis, sid)


def test_a_queued_job_missing_from_the_queue_is_put_back(private_redis: Redis) -> None:
    sid = new_recording_sid()
    assert enqueue_transcription(private_redis, sid)
    queue = transcription_queue(private_redis)
    assert stranded_job(private_redis, sid) is None
    queue.remove(sid)  # as after Redis came back from an older snapshot of the list
    assert stranded_job(private_redis, sid) is not None
    assert requeue_stranded(private_redis, sid)
    assert queue.get_job_position(sid) == 0


def test_jobs_are_json_in_redis_never_pickles(private_redis: Redis) -> None:
    sid = new_recording_sid()
    assert enqueue_transcription(private_redis, sid)
    raw = private_redis.hget(f"rq:job:{sid}", "data")
    assert raw is not None
    decoded = json.loads(zlib.decompress(raw) if raw[:1] == b"x" else raw)
    assert sid in json.dumps(decoded)
    assert not raw.startswith(b"\x80"), "a pickle"


def test_a_pickled_job_is_never_loaded_and_is_replaced(private_redis: Redis) -> None:
    sid = new_recording_sid()
    queue = Queue("transcription", connection=private_redis, serializer=DefaultSerializer)
    queue.enqueue("transcriber.jobs.transcribe_recording", sid, job_id=sid)
    assert pending_job(private_redis, sid) is None, "read as gone, not unpickled"
    assert enqueue_transcription(private_redis, sid)
    job = pending_job(private_redis, sid)
    assert job is not None and list(job.args) == [sid]
