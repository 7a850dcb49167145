"""moked/twilio/debugger.py: Twilio Debugger events become bounded metric labels."""

from __future__ import annotations

import json

from moked import metrics
from moked.twilio import debugger


def event(**params: str) -> debugger.DebuggerEvent:
    return debugger.parse(params)


def test_the_code_and_level_come_from_payload_and_level():
    parsed = event(
        Sid="NO" + "a" * 32,
        Level="ERROR",
        Payload=json.dumps({"error_code": 11200, "resource_sid": "CA" + "b" * 32}),
    )
    assert (parsed.code, parsed.level) == ("11200", "error")
    assert parsed.resource_sid == "CA" + "b" * 32
    assert debugger.event_id(parsed) == "twilio-alert-NO" + "a" * 32


def test_label_values_stay_bounded_whatever_is_posted():
    assert event(Level="Warning", Payload='{"error_code": "12300"}').level == "warning"
    assert event(Level="PANIC", Payload="{}").level == "unknown"
    assert event(Payload="not json").code == "unknown"
    assert event(Payload="[1, 2]").code == "unknown"
    assert event(Payload='{"error_code": "1234567"}').code == "invalid"
    assert event(Payload='{"error_code": "11200; drop"}').code == "invalid"
    assert event(Payload='{"error_code": "١١٢٠٠"}').code == "invalid"  # non-ASCII digits
    assert event(Sid="NO<script>").sid is None
    assert debugger.event_id(event()) is None  # no Sid: a fresh id, counted every time


def test_watched_codes_exist_at_zero_before_any_error():
    debugger.initialise_metrics()
    for code in ("11200", "12300"):
        assert metrics.TWILIO_ERRORS.labels(code=code, level="error")._value.get() >= 0
