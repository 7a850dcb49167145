"""Test helpers: Twilio's identifiers and parameter sets."""

from __future__ import annotations

import itertools
import secrets

from tests.harness import TEST_ACCOUNT_SID

# Numbers the tests create: consecutive from a random start, so none repeats within a
# session, and outside +972-3-555-xxxx, where the fixed and random numbers of the demo,
# the benchmarks and the chaos run live (a clash is a BusinessError in an unrelated test).
_numbers = itertools.count(secrets.randbelow(3_000_000) + 6_000_000)


def new_call_sid() -> str:
    return "CA" + secrets.token_hex(16)


def new_recording_sid() -> str:
    return "RE" + secrets.token_hex(16)


def unique_number() -> str:
    """A valid Israeli number (+972-3-6xx-xxxx … 8xx-xxxx) no other test uses."""
    return f"+9723{next(_numbers):07d}"


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
