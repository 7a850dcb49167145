"""moked/queue.py: one job per recording (its id the RecordingSid), JSON never pickles,
and the nets for a job nothing will run: abandoned by a dead worker (no lease), or
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
from rq import Queue, Worker
from rq.job import JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import DefaultSerializer
from rq.utils import utcformat

from moked.queue import (
    LEASE_TTL_SECONDS,
    SCHEDULER_GRACE_SECONDS,
    SERIALIZER,
    TRANSCRIBE_JOB,
    abandoned_job,
    enqueue_transcription,
    fetch_job,
    lease_alive,
    lease_key,
    pending_job,
    requeue_abandoned,
    requeue_stranded,
    stranded_job,
    transcription_job_id,
    transcription_queue,
)
from tests.helpers import new_recording_sid


def test_a_recording_has_one_job_however_often_it_is_queued(private_redis: Redis) -> None:
    sid = new_recording_sid()
    assert transcription_job_id(sid) == sid

    assert enqueue_transcription(private_redis, sid)
    assert not enqueue_transcription(private_redis, sid)  # Twilio's duplicate callback

    queue = transcription_queue(private_redis)
    assert queue.job_ids == [sid]
    job = pending_job(private_redis, sid)
    assert job is not None and job.id == sid
    assert job.func_name == TRANSCRIBE_JOB and list(job.args) == [sid]
    assert pending_job(private_redis, new_recording_sid()) is None


def test_a_job_that_ended_is_not_pending_and_the_recording_can_be_queued_again(
    private_redis: Redis,
) -> None:
    sid = new_recording_sid()
    assert enqueue_transcription(private_redis, sid)
    queue = transcription_queue(private_redis)
    queue.remove(sid)
    fetch_job(private_redis, sid).set_status(JobStatus.FAILED)

    assert pending_job(private_redis, sid) is None
    assert enqueue_transcription(private_redis, sid)  # e.g. staff's "Transcribe again"
    assert queue.job_ids == [sid]


def test_a_lease_is_one_key_per_recording(private_redis: Redis) -> None:
    sid = new_recording_sid()
    assert lease_key(sid) == f"moked:transcription:lease:{sid}"
    assert lease_key(sid) != lease_key(new_recording_sid())
    assert not lease_alive(private_redis, sid)
    private_redis.set(lease_key(sid), "worker-1", ex=LEASE_TTL_SECONDS)
    assert lease_alive(private_redis, sid)


def _started(redis: Redis, sid: str, *, seconds_ago: float) -> None:
    """The job as a worker takes it (RQ's own bookkeeping), started `seconds_ago`; the
    worker then vanished without a lease."""
    assert enqueue_transcription(redis, sid)
    queue = transcription_queue(redis)
    queue.remove(sid)
    job = fetch_job(redis, sid)
    worker = Worker([queue], connection=redis, serializer=SERIALIZER, name=f"gone-{sid[-6:]}")
    worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)
    redis.hset(job.key, "started_at", utcformat(started.replace(tzinfo=None)))
    assert fetch_job(redis, sid).get_status() == JobStatus.STARTED


def test_a_started_job_without_a_lease_is_abandoned_and_queued_again(
    private_redis: Redis,
) -> None:
    sid = new_recording_sid()
    _started(private_redis, sid, seconds_ago=LEASE_TTL_SECONDS + 30)
    registry = StartedJobRegistry(queue=transcription_queue(private_redis))
    assert any(member.startswith(sid) for member in registry.get_job_ids())

    assert abandoned_job(private_redis, sid) is not None
    assert requeue_abandoned(private_redis, sid)

    job = pending_job(private_redis, sid)
    assert job is not None and job.get_status() == JobStatus.QUEUED
    assert transcription_queue(private_redis).job_ids == [sid]
    assert not any(member.startswith(sid) for member in registry.get_job_ids())
    assert abandoned_job(private_redis, sid) is None and not requeue_abandoned(private_redis, sid)


def test_a_job_whose_worker_holds_its_lease_is_left_alone(private_redis: Redis) -> None:
    sid = new_recording_sid()
    _started(private_redis, sid, seconds_ago=LEASE_TTL_SECONDS + 30)
    private_redis.set(lease_key(sid), "alive", ex=LEASE_TTL_SECONDS)

    assert abandoned_job(private_redis, sid) is None
    assert abandoned_job(private_redis, sid, worker_dead=True) is None
    assert not requeue_abandoned(private_redis, sid, worker_dead=True)
    assert fetch_job(private_redis, sid).get_status() == JobStatus.STARTED


def test_a_job_just_started_may_not_hold_its_lease_yet(private_redis: Redis) -> None:
    """Without a lease but younger than LEASE_TTL: the worker may be about to take it;
    unless the caller saw that worker die (the pool reaps its children)."""
    sid = new_recording_sid()
    _started(private_redis, sid, seconds_ago=1)

    assert abandoned_job(private_redis, sid) is None
    assert not requeue_abandoned(private_redis, sid)
    assert requeue_abandoned(private_redis, sid, worker_dead=True)
    job = pending_job(private_redis, sid)
    assert job is not None and job.get_status() == JobStatus.QUEUED


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
