"""Session fixtures: one real native stack (Postgres, Redis, nginx, gunicorn, workers)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from moked.businesses import BusinessSpec, upsert_business
from moked.db.models import Business
from moked.db.session import session_scope
from tests.apps import TwilioClient
from tests.harness import (
    StackUnderTest,
    make_state_dir,
    start_test_stack,
    stop_test_stack,
)
from tests.helpers import unique_number
from tests.services.transcriber.doubles import TwilioDouble


@pytest.fixture(scope="session")
def stack() -> Iterator[StackUnderTest]:
    state_dir = make_state_dir()
    running = start_test_stack(state_dir)
    try:
        yield running
    finally:
        # MOKED_KEEP_TEST_STACK=1 keeps the state directory (logs, data) for a post-mortem.
        stop_test_stack(running, remove=not os.environ.get("MOKED_KEEP_TEST_STACK"))


@pytest.fixture
def db(stack: StackUnderTest) -> Iterator[Session]:
    with session_scope() as session:
        yield session


@pytest.fixture
def make_business(stack: StackUnderTest):  # type: ignore[no-untyped-def]
    def factory(**kwargs: object) -> Business:
        spec = BusinessSpec(
            name=str(kwargs.pop("name", f"Business {secrets.token_hex(4)}")),
            numbers=tuple(kwargs.pop("numbers", (unique_number(),))),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )
        with session_scope() as session:
            business = upsert_business(session, spec, stack.settings.greetings_dir)
            session.refresh(business)
            _ = business.numbers
            session.expunge(business)
        return business

    return factory


@pytest.fixture
def english_business(make_business) -> Business:  # type: ignore[no-untyped-def]
    """Tests of real transcripts speak English (the embedded base model is good at it): the
    business's language is what the worker asks Whisper for."""
    business: Business = make_business(language="en-US")
    return business


@pytest.fixture(scope="session")
def twilio_api(stack: StackUnderTest) -> Iterator[TwilioDouble]:
    """Twilio's REST API and media host on loopback (tests/services/transcriber/doubles.py);
    `twilio` is Twilio's side of the webhooks, in-process."""
    double = TwilioDouble(
        account_sid=stack.settings.twilio_account_sid,
        auth_token=stack.settings.twilio_auth_token.get_secret_value(),
    ).start()
    yield double
    double.stop()


# --- the apps in-process (tests/apps.py): fast tests on the test client -------------------


@pytest.fixture(scope="session")
def webhooks_app(stack: StackUnderTest) -> Flask:
    from webhooks.app import create_app

    app = create_app(stack.settings)
    app.testing = True
    return app


@pytest.fixture
def twilio(webhooks_app: Flask, stack: StackUnderTest) -> TwilioClient:
    """Twilio, posting signed webhooks to the in-process webhooks app."""
    return TwilioClient(webhooks_app, stack.settings)


@pytest.fixture(scope="session")
def crm_app(stack: StackUnderTest) -> Flask:
    from crm_ui.app import create_app

    app = create_app(stack.settings, WTF_CSRF_ENABLED=False)
    app.testing = True
    return app


@pytest.fixture
def crm_client(crm_app: Flask) -> FlaskClient:
    return crm_app.test_client()
