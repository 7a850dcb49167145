"""locust users that are Twilio: each places simulated calls against PUBLIC_HOST.

Run by scripts/bench_e2e.py (never imported elsewhere: importing locust patches the
process for gevent). Configuration comes as JSON in the file named by MOKED_LOAD_CONFIG:
  mode            "calls" (simulated calls) or "ping" (the constant-TwiML baseline)
  public_base, account_sid, auth_token, to   the number called and the account
  media_dir, media_base_url                  where recordings are published / served
  voicemail_wav, voicemail_mp3, voicemail_seconds   what every caller says
  total           calls (or pings) to make in all, then locust quits
  time_scale      how much of each call's own time to wait (0 = none)
  outcomes        a JSON-lines file: one line per call (CallSid, errors, hang-up time)
  stats_out       a JSON file the per-endpoint statistics are written to when locust quits
Every webhook, callback and `<Play>` fetch is reported to locust under its endpoint name;
a Twilio-side error (11200, 12300, 13420, 12100…) is reported as a failure.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import gevent
import requests
from locust import User, constant, events, task
from locust.exception import StopUser

from moked.simulator.audio import Voicemail
from moked.simulator.call import Caller, Simulator, SimulatorConfig
from moked.simulator.inspector import Exchange, Inspector
from moked.simulator.media_server import SharedDirectoryMedia
from moked.twilio.signature import SIGNATURE_HEADER, sign

CONFIG: dict[str, Any] = json.loads(Path(os.environ["MOKED_LOAD_CONFIG"]).read_text())
_tickets = iter(range(int(CONFIG["total"])))
_completed = [0]


def _report(exchange: Exchange) -> None:
    name = "Play (greeting)" if exchange.kind == "media" else exchange.name
    events.request.fire(
        request_type=exchange.method,
        name=name,
        response_time=exchange.elapsed * 1000.0,
        response_length=exchange.body_bytes,
        exception=RuntimeError(str(exchange.error)) if exchange.error else None,
        context={},
    )


def _simulator() -> Simulator:
    inspector = Inspector()
    inspector.subscribe(_report)
    media = SharedDirectoryMedia(
        Path(CONFIG["media_dir"]), CONFIG["media_base_url"], CONFIG["account_sid"]
    )
    config = SimulatorConfig(
        public_base=CONFIG["public_base"],
        account_sid=CONFIG["account_sid"],
        auth_token=CONFIG["auth_token"],
        time_scale=float(CONFIG.get("time_scale", 0.0)),
    )
    return Simulator(config, media, inspector)


SIMULATOR = _simulator() if CONFIG["mode"] == "calls" else None
VOICEMAIL = (
    Voicemail(
        wav=Path(CONFIG["voicemail_wav"]).read_bytes(),
        mp3=Path(CONFIG["voicemail_mp3"]).read_bytes(),
        seconds=float(CONFIG["voicemail_seconds"]),
        label="bench voicemail",
    )
    if CONFIG["mode"] == "calls"
    else None
)


@events.quitting.add_listener
def _write_stats(environment: Any, **_: Any) -> None:
    """Per-endpoint statistics as JSON (exact maxima; locust's own percentiles)."""
    rows = []
    for entry in environment.stats.entries.values():
        rows.append(
            {
                "name": entry.name,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "p50": entry.get_response_time_percentile(0.50),
                "p95": entry.get_response_time_percentile(0.95),
                "p99": entry.get_response_time_percentile(0.99),
                "max": entry.max_response_time,
                "rps": entry.total_rps,
            }
        )
    Path(CONFIG["stats_out"]).write_text(json.dumps(rows))


class TwilioCaller(User):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.session = requests.Session()  # keep-alive, as the simulator's sessions

    def _ticket(self) -> int:
        ticket = next(_tickets, None)
        if ticket is None:
            raise StopUser()
        return ticket

    def _done(self) -> None:
        _completed[0] += 1
        if _completed[0] >= int(CONFIG["total"]) and self.environment.runner is not None:
            # Quit from a greenlet of its own: quitting stops every user, this one included.
            gevent.spawn(self.environment.runner.quit)

    @task
    def call(self) -> None:
        ticket = self._ticket()
        if CONFIG["mode"] == "ping":
            self._ping()
        else:
            self._call(ticket)
        self._done()

    def _call(self, ticket: int) -> None:
        assert SIMULATOR is not None and VOICEMAIL is not None
        result = SIMULATOR.place_call(
            CONFIG["to"], f"+97254555{ticket % 10000:04d}", Caller(voicemail=VOICEMAIL)
        )
        line = {
            "call_sid": result.call_sid,
            "ok": result.ok,
            "errors": [str(e) for e in result.failures],
            "recording_status": result.recording_status,
            "hung_up_at": result.hung_up_at.isoformat() if result.hung_up_at else None,
        }
        with open(CONFIG["outcomes"], "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")

    def _ping(self) -> None:
        """The baseline: constant TwiML, no database, through the same nginx and gunicorn."""
        url = CONFIG["public_base"] + "/webhook/ping"
        params = {"CallSid": "CA" + "0" * 32}
        headers = {SIGNATURE_HEADER: sign(CONFIG["auth_token"], url, params)}
        started = time.perf_counter()
        error: Exception | None = None
        length = 0
        try:
            response = self.session.post(url, data=params, headers=headers, timeout=15)
            length = len(response.content)
            if response.status_code != 200:
                error = RuntimeError(f"HTTP {response.status_code}")
        except requests.RequestException as exc:
            error = exc
        events.request.fire(
            request_type="POST",
            name="ping (baseline)",
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            exception=error,
            context={},
        )
