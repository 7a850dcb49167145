"""Test helpers: Twilio's identifiers and parameter sets."""

from __future__ import annotations

import itertools
import secrets

from moked.stack.testing import TEST_ACCOUNT_SID

_numbers = itertools.count(1000)


def new_call_sid() -> str:
    return "CA" + secrets.token_hex(16)


def new_recording_sid() -> str:
    return "RE" + secrets.token_hex(16)


def unique_number() -> str:
    """A valid Israeli number no other test uses (+972-3-555-xxxx)."""
    return f"+9723555{next(_numbers):04d}"


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
