"""One description of a call (moked.calls): the CLI and the API print the same object, and
both match the documented JSON Schema (docs/schemas/call.json)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from moked import cli, recordings
from moked.accounts import Role, add_user, create_token
from moked.calls import SCHEMA_PATH
from moked.db.models import Business, Call, CallTag, Tag, User
from moked.db.session import session_scope
from moked.statuses import ProcessingStatus
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, recorded_call, settle

TRANSCRIPT = "שלום, זה דני, תחזרו אליי בבקשה"


def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


def _transcribed_call(
    twilio: TwilioClient, business: Business, stack: StackUnderTest
) -> tuple[str, str]:
    """A call through the webhooks, its recording taken to `ready` through the state
    machine (as the transcriber would), a tag and an assignee added as staff would."""
    to = business.numbers[0].e164
    call_sid, recording_sid = recorded_call(twilio, to, RecordingDuration="7")
    done = call_params(call_sid, to, CallStatus="completed", CallDuration="21", SequenceNumber="4")
    assert twilio.post("/webhook/call_status", done).data == b"OK"
    relative = f"{business.id}/{recording_sid}.mp3"
    with session_scope() as session:
        stored = recordings.StoredMedia(relative, "audio/mpeg", 1234, 7.0)
        settle(
            session,
            recording_sid,
            ProcessingStatus.READY,
            transcript=TRANSCRIPT,
            media=stored,
            model="test-model",
        )
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        tag = Tag(business_id=business.id, name="לחזור")
        session.add(tag)
        session.flush()
        session.add(CallTag(call_id=call.id, tag_id=tag.id))
        call.assignee_id = session.scalar(select(User.id).where(User.role == Role.ADMIN.value))
    return call_sid, relative


@pytest.fixture
def token(stack: StackUnderTest) -> str:
    email = f"api-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(session, email, role=Role.ADMIN, password=secrets.token_hex(8))
        return create_token(session, email)


def _cli_json(capsys: pytest.CaptureFixture[str], call_sid: str) -> dict[str, Any]:
    capsys.readouterr()
    assert cli.main(["call", "show", call_sid, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_cli_and_api_describe_a_call_identically(
    stack: StackUnderTest,
    twilio: TwilioClient,
    crm_client: FlaskClient,
    make_business: Callable[..., Business],
    token: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    business = make_business(name=f"עסק {secrets.token_hex(3)}")
    call_sid, relative = _transcribed_call(twilio, business, stack)

    from_cli = _cli_json(capsys, call_sid)
    answer = crm_client.get(
        f"/api/v1/calls/{call_sid}", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.data
    from_api = answer.get_json()
    listed = crm_client.get(
        f"/api/v1/calls?business={business.id}", headers={"Authorization": f"Bearer {token}"}
    ).get_json()["data"]

    audio_url = from_api.pop("audio_url")
    assert from_api == from_cli
    assert [item for item in listed if item["call_sid"] == call_sid] == [
        {**from_cli, "audio_url": audio_url}
    ]
    assert audio_url.endswith(f"/recordings/{from_cli['recording_sid']}/audio")

    # What the description says, checked against what happened.
    assert from_cli["business"] == {"id": business.id, "name": business.name}
    assert from_cli["business_id"] == business.id
    assert from_cli["status"] == "completed" and from_cli["duration_seconds"] == 21
    assert from_cli["processing_status"] == "ready" and from_cli["transcript"] == TRANSCRIPT
    assert from_cli["recording_path"] == str(stack.settings.recordings_dir / relative)
    assert from_cli["recording_duration_seconds"] == 7 and from_cli["recordings"] == 1
    assert from_cli["tags"] == ["לחזור"] and from_cli["handled"] is False
    assert from_cli["assignee"]

    validator = _validator()
    validator.validate(from_cli)
    validator.validate({**from_api, "audio_url": audio_url})


def test_a_call_without_recording_matches_the_schema(
    twilio: TwilioClient, capsys: pytest.CaptureFixture[str]
) -> None:
    call_sid = new_call_sid()
    # A number no business owns: the call is kept, unassigned.
    assert (
        twilio.post("/webhook/incoming_call", call_params(call_sid, "+97225550199")).status_code
        == 200
    )
    described = _cli_json(capsys, call_sid)
    _validator().validate(described)
    assert described["business"] is None and described["recording_sid"] is None
    assert described["processing_status"] is None and described["tags"] == []


def test_the_schema_refuses_a_description_with_an_unknown_key(
    twilio: TwilioClient, capsys: pytest.CaptureFixture[str]
) -> None:
    call_sid = new_call_sid()
    assert (
        twilio.post("/webhook/incoming_call", call_params(call_sid, "+97225550198")).status_code
        == 200
    )
    described = _cli_json(capsys, call_sid)
    with pytest.raises(jsonschema.ValidationError):
        _validator().validate({**described, "secret_field": 1})
    with pytest.raises(jsonschema.ValidationError):
        _validator().validate({**described, "processing_status": "halfway"})
