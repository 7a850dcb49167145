"""Engines and sessions. One engine per process, created lazily (after gunicorn forks)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from moked.settings import Settings, get_settings

log = logging.getLogger(__name__)


def make_engine(
    database_url: str, *, statement_timeout_ms: int = 5000, autocommit: bool = False
) -> Engine:
    """An engine that fails fast: a webhook must never wait on a dead database."""
    options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return create_engine(
        database_url,
        **options,
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


_engines: dict[tuple[str, bool], Engine] = {}


def engine_for(database_url: str, *, autocommit: bool = False) -> Engine:
    """The process's engine for a database (created on first use, after gunicorn forks).

    The apps ask for the engine of the settings they were created with, so a test can run
    an app in-process against any database; the autocommit engine is its own small pool:
    switching a pooled connection's isolation level costs a driver call on every checkout.
    """
    key = (database_url, autocommit)
    engine = _engines.get(key)
    if engine is None:
        engine = _engines.setdefault(key, make_engine(database_url, autocommit=autocommit))
    return engine


def get_engine() -> Engine:
    """The engine of the process's settings (workers, the CLI, the reconciler)."""
    return engine_for(get_settings().database_url)


@functools.cache
def _session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error."""
    session = _session_factory(engine or get_engine())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


_ON_COMMIT = "moked.on_commit"


def on_commit(session: Session, action: Callable[[], None]) -> None:
    """Run `action` once the session's transaction commits; forget it if it rolls back.

    For effects outside the database that must not count a change that never happened,
    e.g. a metric of a callback's outcome when the transaction is then rolled back.
    """
    session.info.setdefault(_ON_COMMIT, []).append(action)


@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
    for action in session.info.pop(_ON_COMMIT, []):
        try:
            action()
        except Exception:  # the commit happened: an effect's failure must not undo it
            log.exception("after-commit action failed")


@event.listens_for(Session, "after_rollback")
def _drop_on_rollback(session: Session) -> None:
    session.info.pop(_ON_COMMIT, None)


def settings_session(settings: Settings) -> AbstractContextManager[Session]:
    """`session_scope` on the database of these settings (not the process's): a function
    given settings must never write to another database than theirs."""
    return session_scope(engine_for(settings.database_url))


@contextmanager
def autocommit_connection(database_url: str | None = None) -> Iterator[Connection]:
    """A pooled connection where each statement commits on its own: one round trip for a
    single-statement write (no BEGIN, no COMMIT), for the webhooks' hot path."""
    engine = engine_for(database_url or get_settings().database_url, autocommit=True)
    with engine.connect() as connection:
        yield connection


def postgres_unavailable(exc: BaseException) -> bool:
    """Postgres away or overloaded (try again later), as opposed to a statement it refuses
    (a bug, or data it will refuse again): the two are logged and handled differently."""
    if isinstance(exc, PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    )


def postgres_refuses(exc: BaseException) -> bool:
    """Data Postgres will refuse however often it is sent (a value it cannot store, a broken
    constraint): an event like that is set aside, not retried for ever. Anything else (away,
    read-only during a failover, a schema not migrated yet) is worth another try."""
    return isinstance(exc, IntegrityError | DataError)


def reset_engine() -> None:
    """Forget every engine (after a fork: the parent's connections are left to the parent;
    or when settings change in tests)."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _session_factory.cache_clear()
