"""A running job's proof of life: a Redis key renewed by a thread while the job runs.

A worker killed with SIGKILL (or the OOM killer, or a power cut) cannot mark its job as
abandoned; its lease simply expires, and the reconciler (or the pool, at once, when it
sees its child die) puts the job back on the queue. See `moked.queue.abandoned_job`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import RedisError

from moked.queue import LEASE_TTL_SECONDS, lease_key

log = logging.getLogger(__name__)


def holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def lease(redis: Redis, recording_sid: str, ttl: int = LEASE_TTL_SECONDS) -> Iterator[None]:
    key = lease_key(recording_sid)
    me = holder()
    stop = threading.Event()

    def renew() -> None:
        try:
            # SET, not EXPIRE: the key comes back even after Redis lost its data.
            redis.set(key, me, ex=ttl)
        except RedisError as exc:
            log.warning("could not renew the lease of %s: %s", recording_sid, exc)

    def beat() -> None:
        while not stop.wait(ttl / 3):
            renew()

    renew()
    thread = threading.Thread(target=beat, name=f"lease-{recording_sid}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)
        try:
            if redis.get(key) in (me, me.encode()):
                redis.delete(key)
        except RedisError as exc:
            log.warning("could not release the lease of %s: %s", recording_sid, exc)


def release_if_held_by(redis: Redis, recording_sid: str, pid: int) -> bool:
    """Drop a dead process's lease at once (the pool calls this when a child dies)."""
    key = lease_key(recording_sid)
    try:
        value = redis.get(key)
        text = value.decode() if isinstance(value, bytes) else str(value or "")
        if text.endswith(f":{pid}"):
            redis.delete(key)
            return True
    except RedisError as exc:
        log.warning("could not drop the lease of %s: %s", recording_sid, exc)
    return False
