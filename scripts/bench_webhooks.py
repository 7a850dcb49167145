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

from moked.stack.testing import TEST_ACCOUNT_SID, StackUnderTest
from moked.twilio.signature import sign

CONNECTIONS = 100
DURATION_SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
THREADS = 2
DISTINCT_REQUESTS = 30000

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


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


def parse_wrk(name: str, output: str) -> WrkResult:
    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", output, re.M))
    latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*?(\d+).*?(\d+).*?(\d+).*?(\d+)", output)
    if not (percentiles and latency and rps):
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
    )


def _lua_for(stack: StackUnderTest, to_number: str) -> str:
    url = stack.base + "/webhook/incoming_call"
    token = stack.settings.twilio_auth_token.get_secret_value()
    bodies, signatures = [], []
    for i in range(DISTINCT_REQUESTS):
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
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  local i = ((n + math.random(0, #bodies)) % #bodies) + 1\n"
        '  local headers = {["Content-Type"] = "application/x-www-form-urlencoded",\n'
        '                   ["X-Twilio-Signature"] = sigs[i]}\n'
        '  return wrk.format("POST", "/webhook/incoming_call", headers, bodies[i])\n'
        "end\n"
    )


def _wrk(url: str, script: Path | None) -> str:
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
    return subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=DURATION_SECONDS + 60
    ).stdout


def run_against(stack: StackUnderTest, to_number: str) -> list[WrkResult]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "incoming_call.lua"
        script.write_text(_lua_for(stack, to_number))
        ping = Path(tmp) / "ping.lua"
        ping.write_text('wrk.method = "POST"\n')
        _wrk(stack.base + "/webhook/ping", ping)  # warm-up: connections, workers, pools
        baseline = parse_wrk(
            "constant TwiML (/webhook/ping)", _wrk(stack.base + "/webhook/ping", ping)
        )
        incoming = parse_wrk("signed incoming_call + DB write", _wrk(stack.base + "/", script))
    return [baseline, incoming]


def table(results: list[WrkResult]) -> str:
    lines = [
        f"{CONNECTIONS} concurrent connections, {DURATION_SECONDS} s each, wrk through nginx "
        "to the webhooks gunicorn (same run).",
        "",
        "| endpoint | calls/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.requests_per_second:,.0f} | {r.p50_ms:.1f} | {r.p90_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.max_ms:.1f} | {r.non_2xx} | {r.errors} |"
        )
    return "\n".join(lines)


def run() -> str:
    from moked.businesses import BusinessSpec, upsert_business
    from moked.db.session import session_scope
    from moked.greetings import synthesize_mp3
    from moked.stack.testing import make_state_dir, start_test_stack, stop_test_stack

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
    finally:
        stop_test_stack(stack)
    return "## Webhooks (issue 2)\n\n" + table(results) + "\n"


if __name__ == "__main__":
    print(run())
