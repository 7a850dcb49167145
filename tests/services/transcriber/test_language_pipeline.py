"""Detected language, segments and confidence through the real stack (issue 15): Twilio's
webhooks, the stack's transcriber worker, Postgres, `describe_call` against its schema, and
staff redoing a transcript in another language from the call page."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

import jsonschema
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from moked import transcripts
from moked.accounts import Role, add_user
from moked.calls import SCHEMA_PATH, call_loading, describe_call
from moked.db.models import Business, Call
from moked.db.session import session_scope
from tests.harness import StackUnderTest
from tests.services.transcriber.audio import (
    VOICEMAIL_TEXT,
    VOICEMAIL_WORDS,
    noisy_mp3,
    telephone_mp3,
)
from tests.services.transcriber.conftest import leave_voicemail, wait_for, words_in
from tests.services.transcriber.doubles import TwilioDouble

PASSWORD = "correct-horse-battery"


def described(stack: StackUnderTest, call_sid: str) -> dict[str, object]:
    """`moked call show --json`'s object, checked against docs/schemas/call.json."""
    with session_scope() as session:
        call = session.scalar(
            select(Call).options(*call_loading()).where(Call.call_sid == call_sid)
        )
        assert call is not None
        shown = describe_call(call, stack.settings.recordings_dir)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validators.validator_for(schema)(schema).validate(shown)
    return shown


@pytest.fixture
def hebrew_business(make_business: Callable[..., Business]) -> Business:
    business: Business = make_business(language="he-IL", name=f"מאפיית דנה {secrets.token_hex(3)}")
    return business


@pytest.fixture
def staff_of(crm_client: FlaskClient) -> Callable[[Business], FlaskClient]:
    def sign_in(business: Business) -> FlaskClient:
        email = f"staff-{secrets.token_hex(4)}@moked.test"
        with session_scope() as session:
            add_user(session, email, role=Role.STAFF, business=business.name, password=PASSWORD)
        answer = crm_client.post("/login", data={"email": email, "password": PASSWORD})
        assert answer.status_code == 302, answer.data
        return crm_client

    return sign_in


def test_english_to_a_hebrew_business_then_redone_in_another_language(
    stack: StackUnderTest,
    twilio_api: TwilioDouble,
    hebrew_business: Business,
    staff_of: Callable[[Business], FlaskClient],
) -> None:
    voicemail = leave_voicemail(stack, twilio_api, hebrew_business, telephone_mp3(VOICEMAIL_TEXT))
    row = wait_for(voicemail.recording_sid)

    assert row.processing_status.value == "ready", row.error
    assert (row.transcript_language, row.detected_language) == ("en", "en")
    assert row.language_probability is not None and row.language_probability > 0.5
    assert not words_in(row.transcript, VOICEMAIL_WORDS), row.transcript
    assert not row.low_confidence, row.low_confidence_reason
    shown = described(stack, voicemail.call_sid)
    assert shown["transcript_language"] == "en"
    assert shown["transcript_detected_language"] == "en"
    assert shown["transcript_forced_language"] is None
    segments = shown["transcript_segments"]
    assert isinstance(segments, list) and len(segments) >= 2
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    assert " ".join(s["text"] for s in segments) == shown["transcript"]

    # Staff open the call page: sentences to click, the language, and the picker.
    client = staff_of(hebrew_business)
    page = client.get(f"/calls/{voicemail.call_sid}?q=cake").get_data(as_text=True)
    assert page.count('class="segment"') == len(segments)
    assert "<mark>cake</mark>" in page, "the searched word is highlighted in the transcript"
    assert 'data-language="en"' in page and "אנגלית" in page  # Language: English
    assert 'id="retranscribe-language"' in page, "a ready transcript offers the picker"

    # …and ask for it again in Arabic: the worker transcribes it in Arabic, as asked.
    answer = client.post(
        f"/calls/{voicemail.call_sid}/recordings/{voicemail.recording_sid}/retranscribe",
        data={"language": "ar"},
        follow_redirects=True,
    )
    assert answer.status_code == 200 and "ההקלטה נשלחה לתמלול מחדש." in answer.get_data(True)
    # The retry was committed before the answer: the row waits until the worker finishes.
    redone = wait_for(voicemail.recording_sid)
    assert redone.processing_status.value in ("ready", "empty"), redone.error
    assert (redone.transcript_language, redone.forced_language) == ("ar", "ar")
    assert described(stack, voicemail.call_sid)["transcript_forced_language"] == "ar"
    page = client.get(f"/calls/{voicemail.call_sid}").get_data(as_text=True)
    assert "נבחרה בידי הצוות" in page  # chosen by staff


def test_a_voicemail_drowned_in_noise_is_marked_for_staff(
    stack: StackUnderTest,
    twilio_api: TwilioDouble,
    english_business: Business,
    staff_of: Callable[[Business], FlaskClient],
) -> None:
    voicemail = leave_voicemail(stack, twilio_api, english_business, noisy_mp3(VOICEMAIL_TEXT))
    row = wait_for(voicemail.recording_sid)

    assert row.processing_status.value == "ready", (row.processing_status, row.error)
    assert row.low_confidence and row.low_confidence_reason
    assert row.transcript_segments and all(
        s["avg_logprob"] is not None and s["no_speech_prob"] is not None
        for s in row.transcript_segments
    )
    shown = described(stack, voicemail.call_sid)
    assert shown["transcript_low_confidence"] == row.low_confidence_reason

    client = staff_of(english_business)
    page = client.get(f"/calls/{voicemail.call_sid}").get_data(as_text=True)
    assert 'id="low-confidence"' in page
    assert "תמלול לא ודאי: כדאי להאזין להקלטה." in page
    kinds = transcripts.reason_kinds(row.low_confidence_reason)
    if transcripts.REASON_NO_SPEECH in kinds:
        assert "רוב ההקלטה נשמע כמו רעש ולא כמו דיבור." in page
    inbox = client.get("/").get_data(as_text=True)
    row_html = inbox[inbox.index(voicemail.call_sid) :]
    row_html = row_html[: row_html.index("</tr>")]
    assert "low-confidence-chip" in row_html and "לא ודאי: להאזין" in row_html
