"""Test helpers: Twilio's identifiers and parameter sets."""

from __future__ import annotations

import itertools
import secrets

from sqlalchemy.orm import Session

from moked import recordings
from moked.recordings import StoredMedia
from moked.simulator.twilio_api import DEFAULT_BUSY, DEFAULT_NO_ANSWER
from moked.statuses import ProcessingStatus, RecordingStatus
from tests.apps import TwilioClient
from tests.harness import TEST_ACCOUNT_SID

# Numbers the tests create: consecutive from a random start, so none repeats within a
# session, and outside +972-3-555-xxxx, where the fixed and random numbers of the demo,
# the benchmarks and the chaos run live (a clash is a BusinessError in an unrelated test).
_numbers = itertools.count(secrets.randbelow(3_000_000) + 6_000_000)
# Callers' mobiles, the same way (+972-52-6xx-xxxx … 9xx-xxxx): random ones could repeat and
# merge two tests' callers (counts, names, a block) in a shared business.
_callers = itertools.count(secrets.randbelow(3_000_000) + 6_000_000)


def new_call_sid() -> str:
    return "CA" + secrets.token_hex(16)


def new_recording_sid() -> str:
    return "RE" + secrets.token_hex(16)


def unique_number() -> str:
    """A valid Israeli number (+972-3-6xx-xxxx … 8xx-xxxx) no other test uses."""
    return f"+9723{next(_numbers):07d}"


def unique_caller() -> str:
    """A valid Israeli mobile number no other test calls from; never one the Twilio
    simulator would not answer or find busy."""
    while True:
        number = f"+97252{next(_callers):07d}"
        if not number.endswith((*DEFAULT_NO_ANSWER, *DEFAULT_BUSY)):
            return number


def call_params(call_sid: str, to: str, **extra: str) -> dict[str, str]:
    """The parameters Twilio sends on an inbound voice webhook."""
    params = {
        "CallSid": call_sid,
        "AccountSid": TEST_ACCOUNT_SID,
        "From": "+972501111111",
        "To": to,
        "Caller": "+972501111111",
        "Called": to,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        "CallerCountry": "IL",
        "CalledCountry": "IL",
    }
    params.update(extra)
    return params


def settle(
    session: Session,
    recording_sid: str,
    status: ProcessingStatus,
    *,
    transcript: str = "",
    media: StoredMedia | None = None,
    model: str = "test-fixture",
    error: str = "simulated failure",
) -> None:
    """Take a recording to `status` the way Twilio and a worker would, through the state
    machine (moked.recordings), in the caller's transaction."""
    recording = recordings.lock(session, recording_sid)
    assert recording is not None, f"no recording {recording_sid}"
    when = recordings.utcnow()
    if status is ProcessingStatus.ABSENT:
        recordings.media_reported(recording, RecordingStatus.ABSENT, when, "16102")
        return
    if status is ProcessingStatus.AWAITING_MEDIA:
        return
    recordings.media_reported(recording, RecordingStatus.COMPLETED, when)
    if status is ProcessingStatus.AWAITING_TRANSCRIPTION:
        return
    recordings.claim(session, recording_sid)
    if media is not None:
        recordings.media_stored(session, recording_sid, media)
    if status is ProcessingStatus.DOWNLOADING:
        return
    if status is ProcessingStatus.FAILED:
        recordings.fail(session, recording_sid, error, final=True)
        return
    recordings.start_transcribing(session, recording_sid)
    if status is ProcessingStatus.TRANSCRIBING:
        return
    text = transcript if status is ProcessingStatus.READY else ""
    assert status is recordings.finish(
        session, recording_sid, recordings.Transcript(text, "he", "local", model)
    ), f"{recording_sid} did not become {status}"


def recorded_call(
    twilio: TwilioClient, to: str, media_url: str | None = None, **recorded: str
) -> tuple[str, str]:
    """A caller left a message: `incoming_call` and the `<Record>` action, signed, to the
    in-process webhooks; the recording waits for Twilio's status callback (take it on with
    `settle`). Returns (CallSid, RecordingSid). `media_url` may name `{recording_sid}`; it
    defaults to a host that is not Twilio's, so a worker that takes the recording refuses it
    at once, offline."""
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    params = call_params(call_sid, to)
    assert twilio.post("/webhook/incoming_call", params).status_code == 200
    url = (media_url or "https://media.example.invalid/Recordings/{recording_sid}").format(
        recording_sid=recording_sid
    )
    action = {**params, "RecordingSid": recording_sid, "RecordingUrl": url, **recorded}
    assert twilio.post("/webhook/handle_recording", action).status_code == 200
    return call_sid, recording_sid
