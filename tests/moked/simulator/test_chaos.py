"""A short chaos run on the session stack: calls keep coming while a transcription worker
is SIGKILLed mid-job and Redis restarts; nothing may be lost or stored twice."""

from __future__ import annotations

import pytest

from moked.queue import RETRY_INTERVALS_SECONDS
from moked.reconcile import recovery_bound_seconds
from moked.simulator.chaos import Fault, prepare, program_names, run_chaos, simulator_for
from moked.simulator.media_server import MediaServer
from tests.harness import StackUnderTest

pytestmark = pytest.mark.slow

SHORT_VOICEMAILS = (("he", "שלום, חזרו אליי."), ("en", "Please call me back."))


def test_short_chaos_run_loses_nothing(stack: StackUnderTest):
    settings = stack.settings
    has_transcriber = any(n.split(":")[0] == "transcriber" for n in program_names(stack.layout))
    # Short voicemails: what is tested is that faults lose nothing, not transcription speed
    # (`make chaos` runs 500 calls with the full-length messages).
    plans = prepare(settings, 20, business_name="Chaos (test)", voicemails=SHORT_VOICEMAILS)

    with MediaServer(
        settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value()
    ) as media:
        report = run_chaos(
            stack.layout,
            simulator_for(settings, media),
            plans,
            [Fault.KILL_WORKER, Fault.RESTART_REDIS],
            concurrency=4,
            rate=2.0,
            # Every retry's backoff, plus the bound on recovering a job a fault stranded,
            # plus the work itself: waiting on the documented bound, not on luck.
            drain_timeout=sum(RETRY_INTERVALS_SECONDS) + recovery_bound_seconds(settings) + 60,
            require_transcripts=has_transcriber,
        )

    print(report.table())
    assert report.placed == 20
    assert report.lost == 0, report.table()
    assert report.duplicate_rows == 0, report.table()
    assert report.twilio_errors == 0, report.table()
    assert report.recordings_stored == report.recordings_expected == 20
    if has_transcriber:
        assert report.transcripts_ready == 20
    assert all(entry.done or "skipped" in entry.detail for entry in report.faults), report.table()
    # Every service the run stopped is running again for the tests after this one.
    states = program_names(stack.layout)
    touched = [n for n in states if n.split(":")[0] in ("redis", "transcriber")]
    assert touched and all(states[n] == "RUNNING" for n in touched), states
