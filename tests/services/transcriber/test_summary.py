"""Summary and intent (issue 15, item 6): SUMMARY_BACKEND=openai asks the loopback
OpenAI-compatible server's chat completions for structured output once the transcript is
stored; stored through moked.recordings, shown in describe_call, the inbox and the alerts.
Off, or without a key: no request, no summary, no error. In-process jobs (tests/services/
transcriber/test_jobs.py's pattern: recordings never queued, so no worker races them)."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from moked.calls import SCHEMA_PATH, call_loading, describe_call
from moked.db.models import Business, Call, Recording
from moked.db.session import session_scope
from moked.notify import alerts
from moked.settings import Settings
from moked.statuses import AlertKind, Intent, JobOutcome, ProcessingStatus, SummaryBackend
from tests.harness import StackUnderTest
from tests.helpers import new_recording_sid
from tests.services.transcriber.audio import telephone_mp3
from tests.services.transcriber.conftest import recording
from tests.services.transcriber.doubles import OpenAICompatibleServer, TwilioDouble
from tests.services.transcriber.test_jobs import backend, make_recording  # noqa: F401
from transcriber import jobs

API_KEY = "sk-test-" + secrets.token_hex(8)
HEARD = "Hi, this is Dana. I want to order a birthday cake for Friday, please call me back."
WEBHOOK_SCHEMA = SCHEMA_PATH.parent / "notification-webhook.json"


def _answer(body: dict[str, Any]) -> str:
    """What a model would answer: the schema's two fields, from the transcript it was sent."""
    said = body["messages"][-1]["content"]
    return json.dumps(
        {"summary": f"Dana wants to order a cake ({len(said)} chars).", "intent": "order"}
    )


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAICompatibleServer]:
    double = OpenAICompatibleServer(API_KEY, lambda path, language: "", chat=_answer).start()
    yield double
    double.stop()


def _settings(stack: StackUnderTest, server: OpenAICompatibleServer, **changes: Any) -> Settings:
    update: dict[str, Any] = {
        "summary_backend": SummaryBackend.OPENAI,
        "openai_api_key": SecretStr(API_KEY),
        "openai_base_url": server.base_url,
        "summary_model": "gpt-4o-mini",
        **changes,
    }
    return stack.settings.model_copy(update=update)


def _transcribe(
    settings: Settings, twilio_api: TwilioDouble, make: Callable[..., str]
) -> tuple[str, Recording]:
    sid = new_recording_sid()
    make(twilio_api.publish(sid, telephone_mp3("Call me back.")), recording_sid=sid)
    result = jobs.process(settings, sid)
    assert result["outcome"] == JobOutcome.READY, result
    return sid, recording(sid)


def _described(recording_sid: str) -> dict[str, Any]:
    with session_scope() as session:
        call = session.scalar(
            select(Call)
            .options(*call_loading())
            .join(Recording, Recording.call_id == Call.id)
            .where(Recording.recording_sid == recording_sid)
        )
        assert call is not None
        shown = describe_call(call, Path("/nonexistent"))
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validators.validator_for(schema)(schema).validate(shown)
    return shown


def test_the_summary_and_intent_are_stored_and_reach_the_alert(
    stack: StackUnderTest,
    twilio_api: TwilioDouble,
    server: OpenAICompatibleServer,
    backend,  # noqa: F811
    make_recording: Callable[..., str],  # noqa: F811
) -> None:
    backend(HEARD)
    before = len(server.chats)
    sid, row = _transcribe(_settings(stack, server), twilio_api, make_recording)

    assert row.summary == f"Dana wants to order a cake ({len(HEARD)} chars)."
    assert (row.intent, row.summary_model) == (Intent.ORDER.value, "gpt-4o-mini")
    request = server.chats[before]
    assert request["model"] == "gpt-4o-mini" and request["messages"][-1]["content"] == HEARD
    assert "English" in request["messages"][0]["content"], "in the business's language"
    structured = request["response_format"]
    assert structured["type"] == "json_schema" and structured["json_schema"]["strict"] is True
    intents = structured["json_schema"]["schema"]["properties"]["intent"]["enum"]
    assert intents == [intent.value for intent in Intent]

    shown = _described(sid)
    assert (shown["summary"], shown["intent"]) == (row.summary, "order")

    with session_scope() as session:
        call = session.scalar(select(Call).options(*call_loading()).where(Call.id == row.call_id))
        assert call is not None
        alert = alerts.build(session, stack.settings, call, AlertKind.MESSAGE_READY)
    assert alert.summary == row.summary and alert.intent == "order"
    assert f"Summary: {row.summary}" in alerts.details(alert)
    payload = alerts.payload(alert, dt.datetime.now(dt.UTC))
    webhook_schema = json.loads(WEBHOOK_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.validators.validator_for(webhook_schema)(webhook_schema).validate(payload)
    assert payload["data"]["summary"] == row.summary and payload["data"]["intent"] == "order"


@pytest.mark.parametrize("off", ["no key", "backend off"])
def test_no_summary_and_no_error_without_a_key(
    stack: StackUnderTest,
    twilio_api: TwilioDouble,
    server: OpenAICompatibleServer,
    backend,  # noqa: F811
    make_recording: Callable[..., str],  # noqa: F811
    off: str,
) -> None:
    backend(HEARD)
    before = len(server.chats)
    changes: dict[str, Any] = (
        {"openai_api_key": SecretStr("")}
        if off == "no key"
        else {"summary_backend": SummaryBackend.OFF}
    )
    sid, row = _transcribe(_settings(stack, server, **changes), twilio_api, make_recording)

    assert row.processing_status is ProcessingStatus.READY and row.transcript == HEARD
    assert (row.summary, row.intent) == (None, None)
    assert len(server.chats) == before, "nothing was asked"
    assert _described(sid)["summary"] is None


def test_a_reply_outside_the_schema_leaves_the_transcript_alone(
    stack: StackUnderTest,
    twilio_api: TwilioDouble,
    server: OpenAICompatibleServer,
    backend,  # noqa: F811
    make_recording: Callable[..., str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend(HEARD)
    monkeypatch.setattr(server, "chat", lambda body: '{"summary": "x", "intent": "gossip"}')
    _, row = _transcribe(_settings(stack, server), twilio_api, make_recording)

    assert row.processing_status is ProcessingStatus.READY and row.transcript == HEARD
    assert row.summary is None and row.intent is None


def test_the_inbox_row_shows_the_summary_and_intent(
    stack: StackUnderTest,
    twilio_api: TwilioDouble,
    server: OpenAICompatibleServer,
    backend,  # noqa: F811
    make_recording: Callable[..., str],  # noqa: F811
    english_business: Business,
    crm_client: Any,
) -> None:
    from moked.accounts import Role, add_user

    backend(HEARD)
    _, row = _transcribe(_settings(stack, server), twilio_api, make_recording)
    email = f"staff-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(
            session,
            email,
            role=Role.STAFF,
            business=english_business.name,
            password="pw-" + API_KEY,
        )
    assert (
        crm_client.post("/login", data={"email": email, "password": "pw-" + API_KEY}).status_code
        == 302
    )
    inbox = crm_client.get("/").get_data(as_text=True)
    assert row.summary is not None and row.summary in inbox
    assert 'data-intent="order"' in inbox and "הזמנה" in inbox  # Order, Hebrew first
