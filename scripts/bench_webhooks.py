"""Webhook latency through nginx: signed incoming_call with its database write, next to a
bare endpoint returning constant TwiML on the same gunicorn, in the same run, with wrk.

Every incoming_call request is a distinct, correctly signed Twilio request (its own
CallSid), pre-computed into a Lua table that wrk cycles through.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from moked.twilio.signature import sign
from tests.harness import TEST_ACCOUNT_SID, StackUnderTest

CONNECTIONS = 100
DURATION_SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
THREADS = 2
DISTINCT_REQUESTS = 60000
PACED_RATES = (100, 300)
"""Offered rates for the paced runs: calls/s spread over the same connections."""

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class WrkResult:
    name: str
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    errors: int
    requests: int
    cpu_ms_per_call: float
    """Busy CPU of the whole machine per answered request (wrk and nginx included)."""


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


def parse_wrk(name: str, run: tuple[str, float]) -> WrkResult:
    output, busy_cpu_seconds = run
    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", output, re.M))
    latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    completed = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*?(\d+).*?(\d+).*?(\d+).*?(\d+)", output)
    if not (percentiles and latency and rps and completed):
        raise ValueError(f"could not parse wrk output:\n{output}")
    return WrkResult(
        name=name,
        requests_per_second=float(rps.group(1)),
        p50_ms=_ms(percentiles["50"]),
        p90_ms=_ms(percentiles["90"]),
        p99_ms=_ms(percentiles["99"]),
        max_ms=_ms(latency.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
        requests=int(completed.group(1)),
        cpu_ms_per_call=busy_cpu_seconds * 1000 / max(1, int(completed.group(1))),
    )


# Exponential gaps (Poisson arrivals), each thread seeded apart: a fixed delay would make
# every connection fire at the same instant, a burst of 100 calls once per period.
_PACING = """
init = function(args)
  math.randomseed(os.time() + offset * 7919)
end
delay = function()
  return math.min(10 * PACE_MS, math.floor(-PACE_MS * math.log(1 - math.random())))
end
"""


def _lua_for(
    stack: StackUnderTest, to_number: str, count: int = DISTINCT_REQUESTS, pace_ms: int = 0
) -> str:
    """A wrk script sending `count` distinct signed calls; with `pace_ms`, each connection
    waits that long between its calls (wrk's `delay`), so the offered rate is fixed."""
    url = stack.base + "/webhook/incoming_call"
    token = stack.settings.twilio_auth_token.get_secret_value()
    bodies, signatures = [], []
    for i in range(count):
        params = {
            "CallSid": "CA" + secrets.token_hex(16),
            "AccountSid": TEST_ACCOUNT_SID,
            "From": f"+97250{i % 10_000_000:07d}",
            "To": to_number,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        bodies.append(urlencode(params))
        signatures.append(sign(token, url, params))
    return (
        "local bodies = " + json.dumps(bodies).replace("[", "{").replace("]", "}") + "\n"
        "local sigs = " + json.dumps(signatures).replace("[", "{").replace("]", "}") + "\n"
        # Each wrk thread walks its own stride of the table, so no request is sent twice
        # (an unseeded math.random gives every thread the same sequence).
        "local threads = 0\n"
        "setup = function(thread)\n"
        "  thread:set('offset', threads)\n"
        "  threads = threads + 1\n"
        "end\n"
        "local n = 0\n"
        "request = function()\n"
        f"  local i = ((offset + n * {THREADS}) % #bodies) + 1\n"
        "  n = n + 1\n"
        '  local headers = {["Content-Type"] = "application/x-www-form-urlencoded",\n'
        '                   ["X-Twilio-Signature"] = sigs[i]}\n'
        '  return wrk.format("POST", "/webhook/incoming_call", headers, bodies[i])\n'
        "end\n" + (_PACING.replace("PACE_MS", str(pace_ms)) if pace_ms else "")
    )


def _busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy (every process: wrk, nginx, gunicorn, Postgres)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _wrk(url: str, script: Path | None) -> tuple[str, float]:
    """wrk's report, and the machine's busy CPU seconds during the run."""
    command = [
        "wrk",
        "-t",
        str(THREADS),
        "-c",
        str(CONNECTIONS),
        "-d",
        f"{DURATION_SECONDS}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if script is not None:
        command += ["-s", str(script)]
    before = _busy_cpu_seconds()
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=DURATION_SECONDS + 60
    ).stdout
    return output, _busy_cpu_seconds() - before


def run_against(stack: StackUnderTest, to_number: str) -> list[WrkResult]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "incoming_call.lua"
        script.write_text(_lua_for(stack, to_number))
        ping = Path(tmp) / "ping.lua"
        ping.write_text('wrk.method = "POST"\n')
        _wrk(stack.base + "/webhook/ping", ping)  # warm-up: connections, workers, pools
        results = [
            parse_wrk("constant TwiML (/webhook/ping)", _wrk(stack.base + "/webhook/ping", ping)),
            parse_wrk("signed incoming_call + DB write", _wrk(stack.base + "/", script)),
        ]
        for rate in PACED_RATES:
            paced = Path(tmp) / f"paced_{rate}.lua"
            pace_ms = CONNECTIONS * 1000 // rate
            count = rate * DURATION_SECONDS * 2
            paced.write_text(_lua_for(stack, to_number, count=count, pace_ms=pace_ms))
            results.append(
                parse_wrk(
                    f"signed incoming_call + DB write, paced at {rate} calls/s",
                    _wrk(stack.base + "/", paced),
                )
            )
    return results


def stored_calls() -> int:
    """Calls in Postgres after the runs: every distinct request must have become one row."""
    from sqlalchemy import func, select

    from moked.db.models import Call
    from moked.db.session import session_scope

    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Call)) or 0)


def table(results: list[WrkResult]) -> str:
    lines = [
        f"{CONNECTIONS} concurrent connections, {DURATION_SECONDS} s each, wrk through nginx "
        "to the webhooks gunicorn (same run).",
        "",
        "| endpoint | calls/s | p50 ms | p90 ms | p99 ms | max ms | CPU ms/call | non-2xx "
        "| socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.requests_per_second:,.0f} | {r.p50_ms:.1f} | {r.p90_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.max_ms:.1f} | {r.cpu_ms_per_call:.2f} | {r.non_2xx} | "
            f"{r.errors} |"
        )
    return "\n".join(lines)


def ceiling(results: list[WrkResult]) -> str:
    """What the CPU cost per call allows on this machine (Little's law, closed loop)."""
    cores = os.cpu_count() or 1
    needed = CONNECTIONS / 0.050  # calls/s for a 50 ms mean with CONNECTIONS in flight
    lines = [
        f"With {CONNECTIONS} requests always in flight, the mean latency is {CONNECTIONS} / "
        f"(calls/s), so p99 < 50 ms needs well over {needed:,.0f} calls/s: at most "
        f"{cores * 1000 / needed:.2f} ms of CPU per call on these {cores} cores. "
        "Measured ceilings (cores × 1000 / CPU ms per call):",
        "",
    ]
    for r in results[:2]:
        lines.append(f"- {r.name}: {cores * 1000 / r.cpu_ms_per_call:,.0f} calls/s")
    return "\n".join(lines)


def run() -> str:
    from moked.businesses import BusinessSpec, upsert_business
    from moked.db.session import session_scope
    from moked.greetings import synthesize_mp3
    from tests.harness import make_state_dir, start_test_stack, stop_test_stack

    stack = start_test_stack(make_state_dir("moked-bench-"))
    try:
        with session_scope() as session:
            upsert_business(
                session,
                BusinessSpec(
                    name="Bench",
                    numbers=("+97235550177",),
                    greeting_mp3=synthesize_mp3("bench", "en"),
                ),
                stack.settings.greetings_dir,
            )
        results = run_against(stack, "+97235550177")
        calls = stored_calls()
    finally:
        stop_test_stack(stack)
    sent = sum(r.requests for r in results[1:])
    return (
        "## Webhooks (issue 2)\n\n"
        + table(results)
        + "\n\n"
        + ceiling(results)
        + f"\n\nCalls in Postgres afterwards: {calls:,}, for {sent:,} distinct incoming_call "
        "requests wrk saw answered (requests still in flight when wrk stopped are stored "
        "too, so at most one more per connection and run).\n"
    )


if __name__ == "__main__":
    print(run())
