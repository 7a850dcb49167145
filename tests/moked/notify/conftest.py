"""A database of their own for the notification tests.

The test stack's reconciler sweeps every second and its notifier sends whatever is due,
so a test that plays the clock (quiet hours, the wait for a transcript, backoffs) would
race them on the stack's database. These tests get a database and a Redis index that no
stack process reads: the real Postgres and Redis, migrated to head, driven in-process.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from moked.businesses import BusinessSpec, upsert_business
from moked.db.migrate import upgrade
from moked.db.models import Business
from moked.db.session import settings_session
from moked.queue import redis_client
from moked.settings import Settings
from moked.stack.native import superuser_connection
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import unique_number

ISOLATED_REDIS_DB = 7
"""The stack's workers and reconciler use index 0; nothing consumes this one."""


@dataclass
class Isolated:
    settings: Settings
    twilio: TwilioClient

    def session(self) -> AbstractContextManager[Session]:
        return settings_session(self.settings)


@pytest.fixture(scope="module")
def isolated_settings(stack: StackUnderTest) -> Iterator[Settings]:
    name = f"notify_{secrets.token_hex(4)}"
    url = make_url(stack.settings.database_url)
    admin = superuser_connection(stack.layout)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}" OWNER "{url.username}"')
        database_url = url.set(database=name).render_as_string(hide_password=False)
        upgrade(database_url)
        redis_url = stack.settings.redis_url.rsplit("/", 1)[0] + f"/{ISOLATED_REDIS_DB}"
        redis_client(redis_url).flushdb()
        yield stack.settings.model_copy(
            update={"database_url": database_url, "redis_url": redis_url}
        )
        redis_client(redis_url).flushdb()
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture(scope="module")
def isolated_webhooks(isolated_settings: Settings):  # type: ignore[no-untyped-def]
    from webhooks.app import create_app

    app = create_app(isolated_settings)
    app.testing = True
    return app


@pytest.fixture
def isolated(isolated_settings: Settings, isolated_webhooks) -> Isolated:  # type: ignore[no-untyped-def]
    return Isolated(isolated_settings, TwilioClient(isolated_webhooks, isolated_settings))


@pytest.fixture
def isolated_business(isolated: Isolated) -> Callable[..., Business]:
    def factory(**kwargs: object) -> Business:
        spec = BusinessSpec(
            name=str(kwargs.pop("name", f"עסק {secrets.token_hex(4)}")),
            numbers=tuple(kwargs.pop("numbers", (unique_number(),))),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )
        with isolated.session() as session:
            business = upsert_business(session, spec, isolated.settings.greetings_dir)
            session.flush()
            session.refresh(business)
            _ = business.numbers
            session.expunge(business)
        return business

    return factory
