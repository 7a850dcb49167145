"""The call page's "Transcribe again" (crm_ui/calls.py), in-process on the test client: the
same rule as `moked recording retry` (moked.recordings.retry_and_queue)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from flask.testing import FlaskClient

from moked import recordings
from moked.db.models import Business
from moked.db.session import session_scope
from moked.statuses import ProcessingStatus
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import recorded_call, settle

PASSWORD = "correct-horse-battery"


def _call_with_recording(twilio: TwilioClient, business: Business, text: str) -> tuple[str, str]:
    """A call whose recording the state machine took to ready (text) or empty (blank)."""
    call_sid, recording_sid = recorded_call(twilio, business.numbers[0].e164)
    status = ProcessingStatus.READY if text.strip() else ProcessingStatus.EMPTY
    with session_scope() as session:
        settle(session, recording_sid, status, transcript=text, model="test")
    return call_sid, recording_sid


def _status(recording_sid: str) -> ProcessingStatus:
    with session_scope() as session:
        recording = recordings.lock(session, recording_sid)
        assert recording is not None
        return recording.processing_status


def _retranscribe(client: FlaskClient, call_sid: str, recording_sid: str) -> str:
    answer = client.post(
        f"/calls/{call_sid}/recordings/{recording_sid}/retranscribe", follow_redirects=True
    )
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def test_an_empty_transcript_can_be_transcribed_again(
    stack: StackUnderTest, twilio: TwilioClient, signed_in_staff: tuple[FlaskClient, Business]
) -> None:
    client, business = signed_in_staff
    call_sid, recording_sid = _call_with_recording(twilio, business, "")
    assert _status(recording_sid) is ProcessingStatus.EMPTY
    page = client.get(f"/calls/{call_sid}").get_data(as_text=True)
    assert 'id="retranscribe"' in page, "an empty transcript offers the retry"

    answer = _retranscribe(client, call_sid, recording_sid)
    assert "ההקלטה נשלחה לתמלול מחדש." in answer
    # It was queued for real: the stack's worker takes it and refuses the (non-Twilio) media.
    deadline = time.monotonic() + 60
    while _status(recording_sid) is not ProcessingStatus.FAILED:
        assert time.monotonic() < deadline, f"still {_status(recording_sid)}"
        time.sleep(0.2)
    with session_scope() as session:
        recording = recordings.lock(session, recording_sid)
        assert recording is not None and recording.attempts == 1
        assert "not in MEDIA_ALLOWED_HOSTS" in (recording.error or "")


def test_a_ready_transcript_is_not_sent_back(
    twilio: TwilioClient, signed_in_staff: tuple[FlaskClient, Business]
) -> None:
    client, business = signed_in_staff
    call_sid, recording_sid = _call_with_recording(twilio, business, "שלום, תחזרו אליי")
    page = client.get(f"/calls/{call_sid}").get_data(as_text=True)
    # Only in a language staff pick (issue 15): the picker offers no "detect it".
    assert 'id="retranscribe-language"' in page and "זיהוי אוטומטי" not in page
    answer = _retranscribe(client, call_sid, recording_sid)
    assert "רק הקלטה שהתמלול שלה נכשל או יצא ריק" in answer
    assert _status(recording_sid) is ProcessingStatus.READY


def test_another_business_recording_is_404(
    twilio: TwilioClient,
    signed_in_staff: tuple[FlaskClient, Business],
    make_business: Callable[..., Business],
) -> None:
    client, _mine = signed_in_staff
    theirs = make_business(name=f"Other {secrets.token_hex(3)}")
    call_sid, recording_sid = _call_with_recording(twilio, theirs, "")
    answer = client.post(f"/calls/{call_sid}/recordings/{recording_sid}/retranscribe")
    assert answer.status_code == 404
    assert _status(recording_sid) is ProcessingStatus.EMPTY
