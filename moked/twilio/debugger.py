"""Twilio's Debugger webhook: the errors Twilio saw on its side, as metrics.

The console's Debugger webhook POSTs `Sid, AccountSid, ParentAccountSid, Timestamp, Level,
PayloadType, Payload` for every error and warning; `Payload` is JSON with `error_code`,
`resource_sid`, `more_info` and `webhook`. Counting them in `moked_twilio_errors_total`
pages an operator on 11200 or 12300 within minutes (monitoring/prometheus/rules).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from moked import metrics

LEVELS = ("error", "warning", "notice", "debug")
"""Twilio's Level values, lower-cased; anything else is counted as `unknown`."""

WATCHED_CODES = ("11200", "11205", "11217", "12100", "12300", "13420")
"""The codes docs/runbook.md explains. Their series exist from start (at 0) so that the
first occurrence is an increase Prometheus can see: `increase()` cannot see a counter
that is born at 1."""

MAX_CODE_DIGITS = 6
ALERT_EVENT_PREFIX = "twilio-alert-"


@dataclass(frozen=True, slots=True)
class DebuggerEvent:
    sid: str | None
    code: str
    level: str
    resource_sid: str | None


def _sid(value: object) -> str | None:
    text = str(value or "").strip()
    if 2 < len(text) <= 64 and text.isascii() and text.isalnum():
        return text
    return None


def parse(params: Mapping[str, str]) -> DebuggerEvent:
    """The code and level of one Debugger event; never raises, bounded label values."""
    try:
        payload = json.loads(params.get("Payload") or "{}")
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    raw_code = str(payload.get("error_code") or "").strip()
    if not raw_code:
        code = "unknown"
    elif raw_code.isascii() and raw_code.isdigit() and len(raw_code) <= MAX_CODE_DIGITS:
        code = raw_code
    else:
        code = "invalid"
    level = (params.get("Level") or "").strip().lower()
    return DebuggerEvent(
        sid=_sid(params.get("Sid")),
        code=code,
        level=level if level in LEVELS else "unknown",
        resource_sid=_sid(payload.get("resource_sid")),
    )


def event_id(event: DebuggerEvent) -> str | None:
    """A stable id for the webhook log, so Twilio's retries of one event count once."""
    return f"{ALERT_EVENT_PREFIX}{event.sid}" if event.sid else None


def count(event: DebuggerEvent) -> None:
    metrics.TWILIO_ERRORS.labels(code=event.code, level=event.level).inc()


def initialise_metrics() -> None:
    """Create the watched codes' series at 0 (errors and warnings)."""
    for code in WATCHED_CODES:
        for level in ("error", "warning"):
            metrics.TWILIO_ERRORS.labels(code=code, level=level)
