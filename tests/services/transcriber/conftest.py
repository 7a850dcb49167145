"""Fixtures of the transcriber tests: Twilio's media host on loopback, and calls through
the real webhooks (nginx → gunicorn → Postgres → Redis → transcriber workers)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from moked.db.models import Business, Recording
from moked.db.session import session_scope
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, new_recording_sid
from tests.services.transcriber.doubles import TwilioDouble

FINAL = ("ready", "empty", "failed", "absent")


@dataclass(frozen=True)
class Voicemail:
    call_sid: str
    recording_sid: str


def leave_voicemail(
    stack: StackUnderTest,
    twilio_api: TwilioDouble,
    business: Business,
    audio: bytes,
    *,
    not_ready: int = 0,
    content_type: str = "audio/mpeg",
    callback: bool = True,
) -> Voicemail:
    """A caller leaves a message: Twilio's three webhooks, signed, through nginx."""
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    url = twilio_api.publish(recording_sid, audio, not_ready=not_ready, content_type=content_type)
    to = business.numbers[0].e164
    answered = stack.post("/webhook/incoming_call", call_params(call_sid, to))
    assert answered.status_code == 200, answered.text
    recording = {"RecordingSid": recording_sid, "RecordingUrl": url, "RecordingDuration": "9"}
    action = stack.post(
        "/webhook/handle_recording",
        call_params(call_sid, to, CallStatus="in-progress", Digits="hangup", **recording),
    )
    assert action.status_code == 200, action.text
    if callback:
        completed = stack.post(
            "/webhook/recording_status",
            call_params(
                call_sid,
                to,
                CallStatus="completed",
                RecordingStatus="completed",
                RecordingChannels="1",
                RecordingSource="RecordVerb",
                **recording,
            ),
        )
        assert completed.status_code < 300, completed.text
    return Voicemail(call_sid, recording_sid)


def recording(recording_sid: str) -> Recording:
    with session_scope() as session:
        row = session.scalar(select(Recording).where(Recording.recording_sid == recording_sid))
        assert row is not None, recording_sid
        session.expunge(row)
        return row


def wait_for(
    recording_sid: str, statuses: tuple[str, ...] = FINAL, timeout: float = 240
) -> Recording:
    """Poll until the recording reaches one of the statuses (the deadline only stops a hung
    test; the assertions are on what was stored, never on how fast)."""
    deadline = time.monotonic() + timeout
    while True:
        row = recording(recording_sid)
        if row.processing_status.value in statuses:
            return row
        if time.monotonic() > deadline:
            pytest.fail(
                f"{recording_sid} still {row.processing_status.value}"
                f" (attempts {row.attempts}, error {row.error!r})"
            )
        time.sleep(0.1)


def words_in(text: str | None, words: tuple[str, ...]) -> list[str]:
    lowered = (text or "").lower()
    return [word for word in words if word not in lowered]
