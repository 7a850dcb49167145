"""The user's own checks, through nginx, against the real stack."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import requests
from sqlalchemy import func, select

from moked.db.models import Call, Recording, WebhookEvent
from moked.db.session import session_scope
from moked.greetings import synthesize_mp3
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, new_recording_sid


def parse_twiml(response: requests.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].split(";")[0] == "text/xml"
    assert not response.text.startswith((" ", "\n")), "leading whitespace breaks Twilio (12100)"
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    return root


def test_greeting_is_served_as_audio_mpeg_without_redirect(stack: StackUnderTest, make_business):
    business = make_business(greeting_mp3=synthesize_mp3("hello", "en"))
    url = f"{stack.base}/server/static/voice_responses/{business.greeting_file}"

    head = requests.head(url, timeout=5, allow_redirects=False)

    assert head.status_code == 200
    assert head.headers["Content-Type"] == "audio/mpeg"
    assert "max-age" in head.headers["Cache-Control"]
    get = requests.get(url, timeout=5, allow_redirects=False)
    assert get.content[:3] == b"ID3" or get.content[0] == 0xFF


def test_missing_greeting_is_404_not_a_redirect(stack: StackUnderTest):
    for path in (
        "/server/static/voice_responses/nope.mp3",
        "/server/static/voice_responses",
        "/server/static/voice_responses/",
        "/server/static/voice_responses/../../etc/passwd",
    ):
        response = requests.get(stack.base + path, timeout=5, allow_redirects=False)
        assert response.status_code in (400, 404), path


def test_incoming_call_plays_the_business_greeting_and_records(
    stack: StackUnderTest, make_business
):
    business = make_business(greeting_mp3=synthesize_mp3("shalom", "he"))
    call_sid = new_call_sid()

    response = stack.post("/webhook/incoming_call", call_params(call_sid, business.numbers[0].e164))

    root = parse_twiml(response)
    verbs = [child.tag for child in root]
    assert verbs == ["Play", "Pause", "Record", "Say", "Hangup"]
    play = root.find("Play")
    assert play is not None
    assert play.text == f"{stack.base}/server/static/voice_responses/{business.greeting_file}"
    record = root.find("Record")
    assert record is not None
    assert record.get("action") == "/webhook/handle_recording"
    assert record.get("recordingStatusCallback") == "/webhook/recording_status"
    assert record.get("maxLength") == "30"
    assert record.get("timeout") == "5"
    assert record.get("finishOnKey") == "*"
    assert record.get("transcribe") == "false"
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        assert call.business_id == business.id
        assert call.status.value == "ringing"


def test_handle_recording_thanks_in_hebrew_and_hangs_up(stack: StackUnderTest, make_business):
    business = make_business()
    call_sid = new_call_sid()
    params = call_params(
        call_sid,
        business.numbers[0].e164,
        CallStatus="in-progress",
        RecordingSid=new_recording_sid(),
        RecordingUrl="https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
        RecordingDuration="7",
        Digits="*",
    )

    root = parse_twiml(stack.post("/webhook/handle_recording", params))

    assert [child.tag for child in root] == ["Say", "Hangup"]
    say = root.find("Say")
    assert say is not None
    assert say.text == "תודה, קיבלנו את ההודעה."
    assert say.get("language") == "he-IL"


def test_call_status_is_200_text_plain(stack: StackUnderTest, make_business):
    business = make_business()
    call_sid = new_call_sid()
    params = call_params(
        call_sid,
        business.numbers[0].e164,
        CallStatus="completed",
        CallDuration="12",
        SequenceNumber="2",
        Timestamp="Sat, 28 Nov 2026 10:00:12 +0000",
    )

    response = stack.post("/webhook/call_status", params)

    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == "text/plain"
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        assert call.status.value == "completed"
        assert call.duration_seconds == 12
        assert call.ended_at is not None


def test_unknown_number_is_greeted_recorded_and_kept_unassigned(stack: StackUnderTest):
    call_sid = new_call_sid()

    root = parse_twiml(stack.post("/webhook/incoming_call", call_params(call_sid, "+97239999999")))

    assert [child.tag for child in root][:3] == ["Say", "Pause", "Record"]
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        assert call.business_id is None


def test_every_webhook_is_logged(stack: StackUnderTest, make_business):
    business = make_business()
    call_sid = new_call_sid()
    params = call_params(call_sid, business.numbers[0].e164)

    stack.post("/webhook/incoming_call", params)
    stack.post("/webhook/incoming_call", params)  # Twilio retried: the same request, one row
    stack.post("/webhook/call_status", {**params, "CallStatus": "in-progress"})

    with session_scope() as session:
        logged = session.scalar(
            select(func.count()).select_from(WebhookEvent).where(WebhookEvent.call_sid == call_sid)
        )
        calls = session.scalar(
            select(func.count()).select_from(Call).where(Call.call_sid == call_sid)
        )
        recordings = session.scalar(
            select(func.count()).select_from(Recording).join(Call).where(Call.call_sid == call_sid)
        )
    assert logged == 2
    assert calls == 1
    assert recordings == 0
