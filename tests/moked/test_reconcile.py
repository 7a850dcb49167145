"""moked/reconcile.py, one step at a time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from moked import metrics, reconcile
from moked.intake import InboundEvent
from moked.statuses import Endpoint


def test_a_fallback_line_read_again_after_a_failed_replay_is_counted_once(tmp_path: Path):
    log = tmp_path / "twilio_fallback.log"
    alert = InboundEvent(
        endpoint=Endpoint.TWILIO_ALERTS,
        params={"Level": "ERROR", "Payload": '{"error_code": "12300"}'},
        received_at=dt.datetime.now(dt.UTC),
    )
    fallback = metrics.NGINX_FALLBACK_ANSWERS.labels("twilio_alerts")
    errors = metrics.TWILIO_ERRORS.labels(code="12300", level="error")
    answers_before, errors_before = fallback._value.get(), errors._value.get()

    reconcile._count_fallback_once(log, 0, alert)
    reconcile._count_fallback_once(log, 0, alert)  # the same line, read again next pass
    reconcile._count_fallback_once(log, 120, alert)  # the next line

    assert fallback._value.get() == answers_before + 2
    assert errors._value.get() == errors_before + 2  # Debugger events nginx answered count too
