"""Twilio's parameter sets, name for name."""

from __future__ import annotations

import datetime as dt
import email.utils

from moked.simulator.params import CallIdentity, new_call_sid, new_recording_sid, rfc2822

IDENTITY = CallIdentity(
    call_sid=new_call_sid(),
    account_sid="AC" + "0" * 32,
    from_number="+972545550100",
    to_number="+97235550100",
    caller_name="DANA COHEN",
)
WHEN = dt.datetime(2026, 11, 28, 22, 34, 29, tzinfo=dt.UTC)


def test_sids_have_twilios_shape():
    assert len(new_call_sid()) == 34 and new_call_sid().startswith("CA")
    assert len(new_recording_sid()) == 34 and new_recording_sid().startswith("RE")


def test_timestamp_is_rfc_2822_as_twilio_sends_it():
    assert rfc2822(WHEN) == "Sat, 28 Nov 2026 22:34:29 +0000"
    assert email.utils.parsedate_to_datetime(rfc2822(WHEN)) == WHEN


def test_voice_request_parameters():
    params = IDENTITY.base("ringing")

    assert {
        "AccountSid",
        "ApiVersion",
        "CallSid",
        "CallStatus",
        "Direction",
        "From",
        "To",
        "Caller",
        "Called",
        "CallerName",
        "FromCountry",
        "ToCountry",
        "CallerCountry",
        "CalledCountry",
        "FromCity",
        "CalledZip",
    } <= params.keys()
    assert params["ApiVersion"] == "2010-04-01"
    assert params["FromCountry"] == params["CalledCountry"] == "IL"
    assert params["Direction"] == "inbound"


def test_call_duration_only_on_completed():
    ringing = IDENTITY.status_callback("ringing", 0, WHEN, call_duration=3.2)
    completed = IDENTITY.status_callback("completed", 2, WHEN, call_duration=3.2)

    assert "CallDuration" not in ringing
    assert (completed["CallDuration"], completed["Duration"]) == ("4", "1")
    assert completed["SequenceNumber"] == "2"
    assert completed["CallbackSource"] == "call-progress-events"


def test_recording_status_parameters():
    absent = IDENTITY.recording_status("absent", "RE" + "1" * 32, None, 0, WHEN, error_code="16102")
    completed = IDENTITY.recording_status("completed", "RE" + "1" * 32, "http://x/RE", 7.2, WHEN)

    assert absent["ErrorCode"] == "16102" and "RecordingUrl" not in absent
    assert completed["RecordingDuration"] == "8"
    assert completed["RecordingSource"] == "RecordVerb"
    assert completed["RecordingChannels"] == "1"
    assert "From" not in completed  # its own parameter set
