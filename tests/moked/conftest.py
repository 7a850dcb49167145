"""Fixtures of the core's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

from moked.queue import redis_client
from tests.harness import StackUnderTest

PRIVATE_REDIS_DB = 7
"""A Redis database no process of the stack reads: the transcription queue there is the
test's alone (the stack's workers, scheduler and reconciler use database 0)."""


@pytest.fixture
def private_redis(stack: StackUnderTest) -> Iterator[Redis]:
    url = stack.settings.redis_url.rsplit("/", 1)[0] + f"/{PRIVATE_REDIS_DB}"
    client = redis_client(url)
    client.flushdb()
    yield client
    client.flushdb()
