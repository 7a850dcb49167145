"""Engines and sessions. One engine per process, created lazily (after gunicorn forks)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from moked.settings import get_settings


def make_engine(database_url: str, *, statement_timeout_ms: int = 5000) -> Engine:
    """An engine that fails fast: a webhook must never wait on a dead database."""
    return create_engine(
        database_url,
        pool_size=5,
        max_overflow=5,
        pool_timeout=2,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": 2,
            "options": f"-c statement_timeout={statement_timeout_ms}",
            "application_name": "moked",
        },
    )


@functools.cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


@functools.cache
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error."""
    session = _session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_engine() -> None:
    """Forget the engine (after a fork, or when settings change in tests)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
    get_engine.cache_clear()
    _session_factory.cache_clear()
