"""Recovering jobs after a fault (issue 13, item 12): the scheduler comes back from a Redis
restart at once, and the reconciler's net catches a job nothing would run.

On a Redis database of their own, so the stack's workers and scheduler leave them alone.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue
from rq.job import JobStatus
from rq.scheduler import RQScheduler
from rq.serializers import DefaultSerializer

from moked.queue import (
    SCHEDULER_GRACE_SECONDS,
    enqueue_transcription,
    pending_job,
    redis_client,
    requeue_stranded,
    stranded_job,
    transcription_queue,
)
from tests.harness import StackUnderTest
from tests.helpers import new_recording_sid
from transcriber.worker import TranscriptionScheduler, scheduler_name

PRIVATE_DB = 7


@pytest.fixture
def redis(stack: StackUnderTest) -> Iterator[Redis]:
    client = redis_client(stack.settings.redis_url.rsplit("/", 1)[0] + f"/{PRIVATE_DB}")
    client.flushdb()
    yield client
    client.flushdb()


def test_a_restarted_scheduler_reclaims_its_lock_at_once(redis: Redis) -> None:
    queues = [transcription_queue(redis)]
    name = scheduler_name(4242)
    first = TranscriptionScheduler(queues, connection=redis, name=name)
    assert first.acquire_locks() == {"transcription"}  # type: ignore[no-untyped-call]
    # The process died; its lock lives on (Redis kept it). Its successor has its name.
    again = TranscriptionScheduler(queues, connection=redis, name=name)
    assert again.acquire_locks() == {"transcription"}  # type: ignore[no-untyped-call]


def test_a_scheduler_without_its_lock_keeps_asking(redis: Redis) -> None:
    queues = [transcription_queue(redis)]
    holder = TranscriptionScheduler(queues, connection=redis, name="someone-else")
    holder.acquire_locks()  # type: ignore[no-untyped-call]
    ours = TranscriptionScheduler(queues, connection=redis, name=scheduler_name(1))
    stock = RQScheduler(queues, connection=redis, name="stock")
    assert ours.acquire_locks() == set()  # type: ignore[no-untyped-call]
    assert stock.acquire_locks() == set()  # type: ignore[no-untyped-call]
    # RQ's own waits DEFAULT_SCHEDULER_FALLBACK_PERIOD before asking again; ours asks now.
    assert stock.should_reacquire_locks is False
    assert ours.should_reacquire_locks is True
    redis.delete(holder.get_locking_key("transcription"))  # the holder's lock expired
    assert ours.acquire_locks() == {"transcription"}  # type: ignore[no-untyped-call]
    assert ours.should_reacquire_locks is False


def _scheduled(redis: Redis, sid: str, due: dt.datetime) -> None:
    assert enqueue_transcription(redis, sid)
    queue = transcription_queue(redis)
    job = pending_job(redis, sid)
    assert job is not None
    queue.remove(job.id)
    queue.schedule_job(job, due)
    assert job.get_status() == JobStatus.SCHEDULED


def test_an_overdue_retry_is_put_back_on_the_queue(redis: Redis) -> None:
    sid = new_recording_sid()
    now = dt.datetime.now(dt.UTC)
    _scheduled(redis, sid, now - dt.timedelta(seconds=SCHEDULER_GRACE_SECONDS + 5))
    assert stranded_job(redis, sid) is not None
    assert requeue_stranded(redis, sid)
    job = pending_job(redis, sid)
    assert job is not None and job.get_status() == JobStatus.QUEUED
    assert transcription_queue(redis).get_job_position(job.id) == 0
    assert job.retries_left == 3, "the retry budget is kept"
    assert stranded_job(redis, sid) is None and not requeue_stranded(redis, sid)


@pytest.mark.parametrize("seconds", [-(SCHEDULER_GRACE_SECONDS - 10), 60])
def test_a_retry_its_scheduler_can_still_take_is_left_alone(redis: Redis, seconds: int) -> None:
    sid = new_recording_sid()
    _scheduled(redis, sid, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds))
    assert stranded_job(redis, sid) is None
    assert not requeue_stranded(redis, sid)


def test_a_queued_job_missing_from_the_queue_is_put_back(redis: Redis) -> None:
    sid = new_recording_sid()
    assert enqueue_transcription(redis, sid)
    queue = transcription_queue(redis)
    assert stranded_job(redis, sid) is None
    queue.remove(sid)  # as after Redis came back from an older snapshot of the list
    assert stranded_job(redis, sid) is not None
    assert requeue_stranded(redis, sid)
    assert queue.get_job_position(sid) == 0


def test_jobs_are_json_in_redis_never_pickles(redis: Redis) -> None:
    sid = new_recording_sid()
    assert enqueue_transcription(redis, sid)
    raw = redis.hget(f"rq:job:{sid}", "data")
    assert raw is not None
    decoded = json.loads(zlib.decompress(raw) if raw[:1] == b"x" else raw)
    assert sid in json.dumps(decoded)
    assert not raw.startswith(b"\x80"), "a pickle"


def test_a_pickled_job_is_never_loaded_and_is_replaced(redis: Redis) -> None:
    sid = new_recording_sid()
    queue = Queue("transcription", connection=redis, serializer=DefaultSerializer)
    queue.enqueue("transcriber.jobs.transcribe_recording", sid, job_id=sid)
    assert pending_job(redis, sid) is None, "read as gone, not unpickled"
    assert enqueue_transcription(redis, sid)
    job = pending_job(redis, sid)
    assert job is not None and list(job.args) == [sid]
