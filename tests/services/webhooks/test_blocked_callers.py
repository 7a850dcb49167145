"""A blocked caller is not greeted while Postgres is down either: the webhooks keep each
business number's blocked callers beside the last-known answers (moked.answers)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from flask import Flask

from moked import callers
from moked.answers import LastKnownAnswers, current_blocked
from moked.db.models import Business
from moked.db.session import session_scope
from moked.settings import Settings
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, unique_caller


def a_caller() -> str:
    return unique_caller()


def webhooks(settings: Settings) -> TwilioClient:
    from webhooks.app import create_app

    app: Flask = create_app(settings)
    app.testing = True
    return TwilioClient(app, settings)


def verbs(client: TwilioClient, business: Business, caller: str) -> list[str]:
    params = call_params(new_call_sid(), business.numbers[0].e164, From=caller, Caller=caller)
    answer = client.post("/webhook/incoming_call", params)
    assert answer.status_code == 200 and answer.mimetype == "text/xml"
    return [verb.tag for verb in ET.fromstring(answer.data)]


def test_a_blocked_caller_is_rejected_while_postgres_is_down(
    stack: StackUnderTest, make_business, tmp_path: Path
) -> None:
    business = make_business()
    blocked, allowed = a_caller(), a_caller()
    state = {"state_dir": tmp_path / "state", "spool_dir": tmp_path / "spool"}
    up = webhooks(stack.settings.model_copy(update=state))
    # The same state directory, and a database that refuses every connection.
    down = webhooks(
        stack.settings.model_copy(
            update={**state, "database_url": "postgresql+psycopg://moked:x@127.0.0.1:1/moked"}
        )
    )
    with session_scope() as session:
        callers.block(session, business.id, blocked)

    assert verbs(up, business, blocked) == ["Reject"]
    assert "Record" in verbs(up, business, allowed)  # the greeting is remembered
    assert verbs(down, business, blocked) == ["Reject"]
    assert "Record" in verbs(down, business, allowed)
    assert list((tmp_path / "spool").iterdir()), "the outage's calls were spooled"

    with session_scope() as session:
        callers.unblock(session, business.id, blocked)
    assert "Record" in verbs(up, business, blocked)  # the database says so: the copy follows
    assert "Record" in verbs(down, business, blocked)


def test_the_blocked_callers_are_rebuilt_from_the_database(
    stack: StackUnderTest, make_business, tmp_path: Path
) -> None:
    business = make_business()
    number = business.numbers[0].e164
    first, second = a_caller(), a_caller()
    store = LastKnownAnswers(tmp_path)
    store.remember_blocked(number, first)
    store.remember_blocked("+97239999999", first)  # a number no business blocks anything at
    with session_scope() as session:
        callers.block(session, business.id, second)
        blocked = current_blocked(session)
    assert blocked[number] == frozenset({second})

    store.rebuild_blocked(blocked)
    fresh = LastKnownAnswers(tmp_path)
    assert fresh.is_blocked(number, second) and not fresh.is_blocked(number, first)
    assert not fresh.is_blocked("+97239999999", first)
    assert not fresh.is_blocked(number, None)
