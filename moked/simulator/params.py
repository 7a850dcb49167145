"""The parameter sets Twilio posts, name for name, for an inbound voice call.

Voice URL and Record action: the call's parameters (AccountSid, ApiVersion, CallSid,
CallStatus, Direction, From/To, Caller/Called with their geographic fields, CallerName
when caller-name lookup is on). Record action adds RecordingUrl, RecordingSid,
RecordingDuration and Digits. Status callbacks add CallbackSource, SequenceNumber,
Timestamp (RFC 2822) and, on `completed` only, CallDuration and Duration (minutes).
The recording status callback is a set of its own (no From/To).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import secrets
from dataclasses import dataclass

import phonenumbers

API_VERSION = "2010-04-01"
GEO_FIELDS = ("City", "State", "Zip", "Country")


def new_call_sid() -> str:
    return "CA" + secrets.token_hex(16)


def new_recording_sid() -> str:
    return "RE" + secrets.token_hex(16)


def rfc2822(when: dt.datetime) -> str:
    """Twilio's Timestamp format: `Sat, 28 Nov 2026 22:34:29 +0000`."""
    return email.utils.format_datetime(when.astimezone(dt.UTC)).replace("-0000", "+0000")


def country_of(number: str) -> str:
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return ""
    return region if region and region != "ZZ" else ""


@dataclass(frozen=True, slots=True)
class CallIdentity:
    """What stays the same in every request of one call."""

    call_sid: str
    account_sid: str
    from_number: str
    to_number: str
    caller_name: str | None = None
    direction: str = "inbound"

    def base(self, call_status: str) -> dict[str, str]:
        """The parameters of the voice URL request and of every TwiML request of the call."""
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.call_sid,
            "CallStatus": call_status,
            "Direction": self.direction,
            "From": self.from_number,
            "Caller": self.from_number,
            "To": self.to_number,
            "Called": self.to_number,
        }
        for prefix, number in (
            ("From", self.from_number),
            ("Caller", self.from_number),
            ("To", self.to_number),
            ("Called", self.to_number),
        ):
            for geo in GEO_FIELDS:
                # Twilio sends every geographic field; outside North America most are empty.
                params[prefix + geo] = country_of(number) if geo == "Country" else ""
        if self.caller_name is not None:
            params["CallerName"] = self.caller_name
        return params

    def status_callback(
        self,
        call_status: str,
        sequence: int,
        when: dt.datetime,
        call_duration: float | None = None,
    ) -> dict[str, str]:
        params = self.base(call_status)
        params.update(
            {
                "CallbackSource": "call-progress-events",
                "SequenceNumber": str(sequence),
                "Timestamp": rfc2822(when),
            }
        )
        if call_status == "completed" and call_duration is not None:
            seconds = math.ceil(call_duration)
            params["CallDuration"] = str(seconds)
            params["Duration"] = str(max(1, math.ceil(seconds / 60)))
        return params

    def record_action(
        self,
        call_status: str,
        recording_sid: str,
        recording_url: str,
        duration: float,
        digits: str | None,
    ) -> dict[str, str]:
        params = self.base(call_status)
        params.update(
            {
                "RecordingSid": recording_sid,
                "RecordingUrl": recording_url,
                "RecordingDuration": str(math.ceil(duration)),
            }
        )
        if digits is not None:
            params["Digits"] = digits
        return params

    def recording_status(
        self,
        status: str,
        recording_sid: str,
        recording_url: str | None,
        duration: float,
        started: dt.datetime,
        error_code: str | None = None,
    ) -> dict[str, str]:
        params = {
            "AccountSid": self.account_sid,
            "CallSid": self.call_sid,
            "RecordingSid": recording_sid,
            "RecordingStatus": status,
            "RecordingDuration": str(math.ceil(duration)),
            "RecordingChannels": "1",
            "RecordingSource": "RecordVerb",
            "RecordingStartTime": rfc2822(started),
            "RecordingTrack": "inbound",
        }
        if recording_url is not None:
            params["RecordingUrl"] = recording_url
        if error_code is not None:
            params["ErrorCode"] = error_code
        return params
