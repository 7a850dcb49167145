"""Issue 13 item 5 as it was found: a signed recording callback through nginx whose
RecordingUrl urllib.parse reads as api.twilio.com while requests connects elsewhere.
The worker refuses it; the listener it points at never sees a request, let alone
Twilio's credentials."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from moked.db.models import Business
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, new_recording_sid
from tests.services.transcriber.conftest import recording
from tests.services.transcriber.doubles import Listener


@pytest.fixture
def listener() -> Iterator[Listener]:
    """On 127.0.0.2: a loopback address the test stack does not allow for media."""
    heard = Listener(address="127.0.0.2")
    server = heard.start()
    yield heard
    server.shutdown()
    server.server_close()


def test_a_recording_url_read_two_ways_never_gets_the_credentials(
    stack: StackUnderTest, make_business, listener: Listener
) -> None:
    business: Business = make_business()
    assert "127.0.0.2" not in stack.settings.media_hosts
    assert "api.twilio.com" in stack.settings.media_hosts
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    account = stack.settings.twilio_account_sid
    url = (
        f"http://127.0.0.2:{listener.port}\\@api.twilio.com"
        f"/2010-04-01/Accounts/{account}/Recordings/{recording_sid}"
    )
    to = business.numbers[0].e164
    assert stack.post("/webhook/incoming_call", call_params(call_sid, to)).status_code == 200
    completed = stack.post(
        "/webhook/recording_status",
        call_params(
            call_sid,
            to,
            CallStatus="completed",
            RecordingStatus="completed",
            RecordingSid=recording_sid,
            RecordingUrl=url,
            RecordingDuration="9",
            RecordingChannels="1",
            RecordingSource="RecordVerb",
        ),
    )
    assert completed.status_code == 200

    # Until the worker has decided, or the listener has heard from it (today's bug).
    deadline = time.monotonic() + 120
    while recording(recording_sid).processing_status.value != "failed" and not listener.heard:
        assert time.monotonic() < deadline, recording(recording_sid).processing_status
        time.sleep(0.2)

    assert listener.heard == [], "the worker fetched from the listener"
    row = recording(recording_sid)
    assert row.processing_status.value == "failed"
    assert row.attempts == 1, "refused for good, not retried"
