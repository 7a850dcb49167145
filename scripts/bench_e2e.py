"""`make bench`, end-to-end: concurrent simulated Twilio calls driven by locust.

`run()` returns markdown: the machine, per-endpoint webhook latency as Twilio sees it
(through nginx; p50/p95/p99/max), calls per second, Twilio-side errors (must be 0), the
lag from hang-up to a ready transcript, and a baseline measured in the same run (the
constant-TwiML /webhook/ping, no signature or database, same load tool and concurrency).

It starts a stack of its own on free ports (as the tests do) unless given one.
Sizes: MOKED_BENCH_CALLS (default 200), MOKED_BENCH_USERS (concurrent callers, 20),
MOKED_BENCH_TRANSCRIPT_TIMEOUT (seconds to wait for transcripts, 600).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from moked.businesses import BusinessSpec, upsert_business
from moked.db.session import session_scope
from moked.greetings import synthesize_mp3
from moked.simulator import audio
from moked.simulator.chaos import program_names
from moked.simulator.load import percentile
from moked.simulator.media_server import MediaServer
from moked.simulator.store import wait_until_final
from tests.harness import StackUnderTest, make_state_dir, start_test_stack, stop_test_stack

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile_calls.py"
VOICEMAIL_TEXT = "Hello, this is a benchmark call. Please call me back about my order. Thank you."
ENDPOINT_ORDER = (
    "incoming_call",
    "Play (greeting)",
    "handle_recording",
    "recording_status",
    "call_status",
)


@dataclass(frozen=True, slots=True)
class EndpointStats:
    name: str
    requests: int
    failures: int
    p50: float
    p95: float
    p99: float
    max: float
    rps: float

    def row(self) -> str:
        return (
            f"| {self.name} | {self.requests} | {self.failures} | {self.p50:.0f} | "
            f"{self.p95:.0f} | {self.p99:.0f} | {self.max:.0f} | {self.rps:.1f} |"
        )


def _int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{mem_kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        memory = "unknown RAM"
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory}; Linux {platform.release()}; "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} at start"
    )


def _locust(config: dict[str, object], workdir: Path, users: int, tag: str) -> list[EndpointStats]:
    config_path = workdir / f"{tag}.json"
    stats_path = workdir / f"{tag}-stats.json"
    config_path.write_text(json.dumps({**config, "stats_out": str(stats_path)}))
    env = {**os.environ, "MOKED_LOAD_CONFIG": str(config_path)}
    command = [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        "20m",
        "--stop-timeout",
        "30",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--host",
        str(config["public_base"]),
    ]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, cwd=HERE.parent
    )
    if not stats_path.exists():
        raise RuntimeError(f"locust failed ({result.returncode}): {result.stderr[-2000:]}")
    stats = [
        EndpointStats(
            name=row["name"],
            requests=int(row["requests"]),
            failures=int(row["failures"]),
            p50=float(row["p50"]),
            p95=float(row["p95"]),
            p99=float(row["p99"]),
            max=float(row["max"]),
            rps=float(row["rps"]),
        )
        for row in json.loads(stats_path.read_text())
    ]
    order = {name: i for i, name in enumerate(ENDPOINT_ORDER)}
    return sorted(stats, key=lambda s: order.get(s.name, len(order)))


def _business(stack: StackUnderTest) -> str:
    number = f"+9723555{secrets.randbelow(10000):04d}"
    spec = BusinessSpec(
        name=f"Bench {secrets.token_hex(3)}",
        numbers=(number,),
        greeting_mp3=synthesize_mp3("Hello, you reached the benchmark business.", "en-us"),
    )
    with session_scope() as session:
        upsert_business(session, spec, stack.settings.greetings_dir)
    return number


def run(stack: StackUnderTest | None = None) -> str:
    calls = _int_env("MOKED_BENCH_CALLS", 200)
    users = _int_env("MOKED_BENCH_USERS", 20)
    transcript_timeout = _int_env("MOKED_BENCH_TRANSCRIPT_TIMEOUT", 600)
    own = stack is None
    machine_line = machine()
    if stack is None:
        stack = start_test_stack(make_state_dir("moked-bench-e2e-"))
    try:
        return _run(stack, calls, users, transcript_timeout, machine_line)
    finally:
        if own:
            stop_test_stack(stack)


def _run(
    stack: StackUnderTest, calls: int, users: int, transcript_timeout: int, machine_line: str
) -> str:
    settings = stack.settings
    token = settings.twilio_auth_token.get_secret_value()
    to = _business(stack)
    voicemail = audio.speak(VOICEMAIL_TEXT, "en")
    has_transcriber = any(n.split(":")[0] == "transcriber" for n in program_names(stack.layout))
    with tempfile.TemporaryDirectory(prefix="moked-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        media_dir = workdir / "media"
        media_dir.mkdir()
        (workdir / "voicemail.wav").write_bytes(voicemail.wav)
        (workdir / "voicemail.mp3").write_bytes(voicemail.mp3)
        outcomes = workdir / "outcomes.jsonl"
        with MediaServer(settings.twilio_account_sid, token, directory=media_dir) as media:
            common = {
                "public_base": settings.public_base,
                "account_sid": settings.twilio_account_sid,
                "auth_token": token,
                "to": to,
                "media_dir": str(media_dir),
                "media_base_url": media.base_url,
                "voicemail_wav": str(workdir / "voicemail.wav"),
                "voicemail_mp3": str(workdir / "voicemail.mp3"),
                "voicemail_seconds": voicemail.seconds,
                "time_scale": 0.0,
                "outcomes": str(outcomes),
            }
            baseline = _locust(
                {**common, "mode": "ping", "total": calls * 5}, workdir, users, "baseline"
            )
            started = time.monotonic()
            endpoints = _locust({**common, "mode": "calls", "total": calls}, workdir, users, "e2e")
            load_seconds = time.monotonic() - started
            lines = [json.loads(x) for x in outcomes.read_text().splitlines() if x.strip()]
            recorded = [x for x in lines if x["recording_status"] == "completed"]
            stored = (
                wait_until_final([x["call_sid"] for x in recorded], transcript_timeout)
                if has_transcriber
                else {}
            )
    errors = [e for x in lines for e in x["errors"]]
    lags = []
    for line in recorded:
        row = stored.get(line["call_sid"])
        if row is not None and row.is_ready and row.finished_at and line["hung_up_at"]:
            hung_up = dt.datetime.fromisoformat(line["hung_up_at"])
            lags.append((row.finished_at - hung_up).total_seconds())
    ready = len(lags)

    out = [
        "### End to end: simulated Twilio calls (locust)",
        "",
        f"Machine: {machine_line}.",
        f"Load: {calls} calls by {users} concurrent simulated callers (locust users), "
        "each call: voice URL → `<Play>` greeting fetched → Record action → recording "
        "status callback → call status callbacks (ringing, in-progress, completed); "
        f"the call's own time not waited (time scale 0); voicemail {voicemail.seconds:.1f} s "
        "of espeak-ng English at 8 kHz.",
        "",
        "| endpoint (through nginx) | requests | failures | p50 ms | p95 ms | p99 ms "
        "| max ms | req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *(s.row() for s in endpoints),
        *(s.row() for s in baseline),
        "",
        f"- calls placed: {len(lines)} in {load_seconds:.1f} s → "
        f"**{len(lines) / load_seconds:.1f} calls/s** (locust start-up included)",
        f"- Twilio-side errors (11200/11205/12100/12300/13420): **{len(errors)}**",
    ]
    if errors:
        out += [f"  - {e}" for e in errors[:10]]
    if not has_transcriber:
        out.append("- hang-up → transcript ready: not measured (this stack runs no transcriber)")
    elif lags:
        out.append(
            f"- hang-up → transcript ready ({ready}/{len(recorded)} ready): "
            f"p50 {percentile(lags, 50):.1f} s, p95 {percentile(lags, 95):.1f} s, "
            f"max {max(lags):.1f} s"
        )
    else:
        out.append(f"- hang-up → transcript ready: none of {len(recorded)} became ready")
    out.append(
        "- baseline: `ping (baseline)` is /webhook/ping (constant TwiML, no signature check, "
        "no database) under the same locust users, measured just before the calls."
    )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(run())
