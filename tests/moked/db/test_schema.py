"""The migrations match the models, upgrade and downgrade cleanly; indexes are used."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from moked.db.migrate import alembic_config
from moked.db.models import Base, Call, call_time
from moked.stack.native import superuser_connection
from tests.harness import StackUnderTest


@pytest.fixture
def scratch_url(stack: StackUnderTest) -> Iterator[str]:
    """A throwaway database owned by the application role."""
    name = f"scratch_{secrets.token_hex(4)}"
    owner = make_url(stack.settings.database_url).username
    admin = superuser_connection(stack.layout)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        yield (
            make_url(stack.settings.database_url)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        admin.close()


def test_models_and_migrations_agree(stack: StackUnderTest) -> None:
    engine = create_engine(stack.settings.database_url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    config = alembic_config(scratch_url)
    command.upgrade(config, "head")
    command.downgrade(config, "0001")
    command.upgrade(config, "head")
    engine = create_engine(scratch_url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        indexes = connection.execute(
            text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_recordings_transcript_trgm'"
            )
        ).scalar_one()
    engine.dispose()
    assert "gin_trgm_ops" in indexes


def test_hebrew_search_uses_the_trigram_index(stack: StackUnderTest) -> None:
    engine = create_engine(stack.settings.database_url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            connection.execute(
                text("EXPLAIN SELECT id FROM recordings WHERE transcript ILIKE :p"),
                {"p": "%אינסטלטור%"},
            ).scalars()
        )
        # Hebrew letters are word characters in the database's locale, so trigrams exist.
        trigrams = connection.execute(text("SELECT show_trgm('אינסטלטור')")).scalar_one()
    engine.dispose()
    assert "ix_recordings_transcript_trgm" in plan
    assert len(trigrams) > 3


@pytest.mark.parametrize(
    ("business_id", "index"),
    [(1, "ix_calls_business_inbox"), (None, "ix_calls_inbox")],
)
def test_the_inbox_page_reads_an_index_in_order(
    stack: StackUnderTest, business_id: int | None, index: str
) -> None:
    """Newest first without sorting every call of the business (staff) or of all (admins)."""
    query = select(Call.id).order_by(call_time().desc(), Call.id.desc()).limit(25)
    if business_id is not None:
        query = query.where(Call.business_id == business_id)
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    engine = create_engine(stack.settings.database_url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(connection.execute(text("EXPLAIN " + sql)).scalars())
    engine.dispose()
    assert index in plan, plan
    assert "Sort" not in plan, plan
