"""The transcriber's RQ scheduler (transcriber/worker.py) after a fault (issue 13, item 12):
it comes back from a Redis restart at once, and keeps asking for a lock it lost.

On a Redis database of their own, so the stack's workers and scheduler leave them alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis
from rq.scheduler import RQScheduler

from moked.queue import redis_client, transcription_queue
from tests.harness import StackUnderTest
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
