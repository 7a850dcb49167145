"""Chaos: faults injected into a running stack while simulated calls come in.

Faults: SIGKILL a transcription worker in the middle of a job, restart Redis, restart
Postgres, restart the webhooks' gunicorn (all through the stack's supervisord). Every
service a fault stops is running again before the run ends. Afterwards every simulated
call is looked up in Postgres: a call lost is one that is missing, whose recording is
missing, or whose transcript never became ready; a duplicate is a second row for one
Twilio SID. A transcript still queued when the drain times out is counted apart (late,
not lost): on a small machine the transcriber's throughput, not a fault, sets the drain.
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError
from rq.registry import StartedJobRegistry

from moked.queue import pending_job, redis_client, transcription_queue
from moked.settings import Settings
from moked.simulator import audio
from moked.simulator.call import Caller, CallResult, Simulator, SimulatorConfig
from moked.simulator.load import CallPlan, LoadReport, run_calls
from moked.simulator.media_server import MediaServer
from moked.simulator.store import StoredCall, stored_calls, wait_until_final
from moked.stack import native
from moked.stack.config import StackLayout, fallback_twiml

log = logging.getLogger(__name__)

RUNNING_TIMEOUT_SECONDS = 60.0
JOB_WAIT_SECONDS = 45.0


class Fault(enum.StrEnum):
    KILL_WORKER = "kill-worker"
    RESTART_REDIS = "restart-redis"
    RESTART_POSTGRES = "restart-postgres"
    RESTART_WEBHOOKS = "restart-webhooks"


ALL_FAULTS = (
    Fault.KILL_WORKER,
    Fault.RESTART_REDIS,
    Fault.RESTART_POSTGRES,
    Fault.RESTART_WEBHOOKS,
)
_PROGRAM = {
    Fault.RESTART_REDIS: "redis",
    Fault.RESTART_POSTGRES: "postgres",
    Fault.RESTART_WEBHOOKS: "webhooks",
}


@dataclass(slots=True)
class FaultLog:
    fault: Fault
    at_call: int
    seconds: float = 0.0
    detail: str = ""
    done: bool = False


@dataclass
class ChaosReport:
    placed: int = 0
    full_twiml: int = 0
    fallback_twiml: int = 0
    default_twiml: int = 0
    """The app answered, but with the default greeting (it could not read the business)."""
    unanswered: int = 0
    recordings_expected: int = 0
    recordings_stored: int = 0
    transcripts_ready: int = 0
    transcripts_pending: int = 0
    """Not ready when the drain timed out, but still queued or running: late, not lost."""
    duplicate_rows: int = 0
    lost: int = 0
    twilio_errors: int = 0
    seconds: float = 0.0
    drain_seconds: float = 0.0
    faults: list[FaultLog] = field(default_factory=list)
    lost_details: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            ("calls placed", self.placed),
            ("answered with full TwiML", self.full_twiml),
            ("answered by nginx's fallback TwiML", self.fallback_twiml),
            ("answered with the app's default TwiML", self.default_twiml),
            ("not answered (Twilio application error)", self.unanswered),
            ("recordings made (Twilio side)", self.recordings_expected),
            ("recordings stored", self.recordings_stored),
            ("transcripts ready", self.transcripts_ready),
            ("transcripts still queued when the drain timed out", self.transcripts_pending),
            ("duplicate rows", self.duplicate_rows),
            ("Twilio-side errors", self.twilio_errors),
            ("lost", self.lost),
        ]
        lines = ["| | |", "|---|---:|", *(f"| {name} | {value} |" for name, value in rows)]
        lines.append("")
        lines.append(f"load {self.seconds:.1f} s, then {self.drain_seconds:.1f} s to drain")
        for entry in self.faults:
            state = "done" if entry.done else "NOT DONE"
            lines.append(
                f"- {entry.fault.value} at call {entry.at_call}: {state} in "
                f"{entry.seconds:.1f} s {entry.detail}".rstrip()
            )
        lines += [f"- lost: {detail}" for detail in self.lost_details[:20]]
        lines += [f"- simulator crash: {detail}" for detail in self.crashed[:20]]
        return "\n".join(lines)


def program_names(layout: StackLayout) -> dict[str, str]:
    """supervisord program name → state (`transcriber:transcriber_00` for a group member)."""
    names: dict[str, str] = {}
    for line in native.supervisorctl(layout, "status", check=False).splitlines():
        parts = line.split()
        if len(parts) >= 2:
            names[parts[0]] = parts[1]
    return names


def wait_running(layout: StackLayout, name: str, timeout: float = RUNNING_TIMEOUT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if program_names(layout).get(name) == "RUNNING":
            return True
        time.sleep(0.2)
    return False


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (an RQ worker's work horse), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces, so split after the last ")".
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def _started_jobs(layout: StackLayout) -> int:
    try:
        redis = redis_client(layout.settings.redis_url)
        return int(StartedJobRegistry(queue=transcription_queue(redis)).count)
    except RedisError:
        return 0


def kill_worker_mid_job(layout: StackLayout) -> str:
    """SIGKILL a transcriber worker (and its work horse) while it holds a job."""
    workers = [n for n in program_names(layout) if n.split(":")[0] == "transcriber"]
    if not workers:
        return "skipped: this stack runs no transcriber program"
    deadline = time.monotonic() + JOB_WAIT_SECONDS
    while _started_jobs(layout) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    mid_job = _started_jobs(layout) > 0
    killed = []
    for name in workers:
        pid_text = native.supervisorctl(layout, "pid", name, check=False).strip()
        if not pid_text.isdigit() or int(pid_text) == 0:
            continue
        pid = int(pid_text)
        horses = _children(pid)
        if mid_job and not horses and len(workers) > 1:
            continue  # this one is idle; kill the one holding the job
        for victim in [*horses, pid]:
            try:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
            except ProcessLookupError:
                pass
        if not wait_running(layout, name):
            native.supervisorctl(layout, "start", name, check=False)
        break
    where = "mid-job" if mid_job else "idle (no job started within the wait)"
    return f"SIGKILLed pids {killed} ({where})"


def restart_program(layout: StackLayout, name: str) -> str:
    native.supervisorctl(layout, "restart", name, check=False)
    if not wait_running(layout, name):
        native.supervisorctl(layout, "start", name, check=False)
        if not wait_running(layout, name):
            return f"{name} did not come back"
    return f"{name} restarted"


def inject(layout: StackLayout, fault: Fault) -> str:
    if fault is Fault.KILL_WORKER:
        return kill_worker_mid_job(layout)
    return restart_program(layout, _PROGRAM[fault])


def classify_answer(result: CallResult, nginx_fallback_body: str) -> str:
    """full | fallback | default | none, from the first TwiML the voice URL gave."""
    document = result.first_document
    if document is None or document.root is None:
        return "none"
    content_type = (document.content_type or "").lower()
    body = document.body.decode("utf-8", "replace")
    if body == nginx_fallback_body and "charset" not in content_type:
        return "fallback"  # nginx's `return 200` carries no charset; the app's answer does
    if document.root.find("Play") is not None:
        return "full"
    return "default"


def run_chaos(
    layout: StackLayout,
    simulator: Simulator,
    plans: Sequence[CallPlan],
    faults: Sequence[Fault] = ALL_FAULTS,
    *,
    concurrency: int = 8,
    rate: float | None = 5.0,
    drain_timeout: float = 600.0,
    require_transcripts: bool = True,
    echo: Callable[[str], None] = print,
) -> ChaosReport:
    """Place the calls while the faults happen, spread over the run; then count."""
    report = ChaosReport(placed=len(plans))
    total = len(plans)
    schedule = [
        FaultLog(fault, at_call=max(1, int(total * (i + 1) / (len(faults) + 1))))
        for i, fault in enumerate(faults)
    ]
    report.faults = schedule
    progress = threading.Condition()
    finished = [0]

    def on_result(index: int, result: CallResult) -> None:
        with progress:
            finished[0] += 1
            progress.notify_all()

    def chaos_thread() -> None:
        for entry in schedule:
            target = entry.at_call

            def reached(target: int = target) -> bool:
                return finished[0] >= target

            with progress:
                progress.wait_for(reached, timeout=900)
            echo(f"chaos: {entry.fault.value} (after {finished[0]} calls)")
            started = time.monotonic()
            try:
                entry.detail = inject(layout, entry.fault)
                entry.done = "did not" not in entry.detail and "skipped" not in entry.detail
            except Exception as exc:
                log.exception("fault %s failed", entry.fault)
                entry.detail = f"failed: {exc}"
            entry.seconds = time.monotonic() - started
            echo(f"chaos: {entry.fault.value}: {entry.detail}")

    touched = {_PROGRAM[f] for f in faults if f in _PROGRAM}
    injector = threading.Thread(target=chaos_thread, name="moked-chaos", daemon=True)
    started = time.monotonic()
    injector.start()
    try:
        load: LoadReport = run_calls(
            simulator, plans, concurrency=concurrency, rate=rate, on_result=on_result
        )
        injector.join(timeout=300)
    finally:
        for name in touched:  # whatever happened, leave every service running
            if program_names(layout).get(name) != "RUNNING":
                native.supervisorctl(layout, "start", name, check=False)
                wait_running(layout, name)
    report.seconds = time.monotonic() - started
    report.crashed = load.crashed
    echo(f"chaos: {len(load.results)} calls placed in {report.seconds:.1f} s; draining")

    drain_started = time.monotonic()
    recorded = [r.call_sid for r in load.results if r.recording_status == "completed"]
    if require_transcripts:
        wait_until_final(recorded, drain_timeout, ready_only=True)
    _settle_calls(load.results, timeout=min(drain_timeout, 60))
    report.drain_seconds = time.monotonic() - drain_started
    count(report, load.results, layout, require_transcripts=require_transcripts)
    return report


def _settle_calls(results: Sequence[CallResult], timeout: float) -> None:
    """Give the reconciler time to replay callbacks nginx answered while the app was down."""
    deadline = time.monotonic() + timeout
    sids = [r.call_sid for r in results]
    while time.monotonic() < deadline:
        stored = stored_calls(sids)
        if all(sid in stored and stored[sid].status == "completed" for sid in sids):
            return
        time.sleep(1.0)


def _has_pending_job(redis: Redis, recording_sid: str | None) -> bool:
    try:
        return recording_sid is not None and pending_job(redis, recording_sid) is not None
    except RedisError:
        return False


def count(
    report: ChaosReport,
    results: Sequence[CallResult],
    layout: StackLayout,
    *,
    require_transcripts: bool = True,
) -> None:
    """Fill the report from the results and Postgres. Without a transcriber in the stack
    (`require_transcripts=False`) a transcript not ready is not counted as lost."""
    fallback_body = fallback_twiml(layout.settings)["FALLBACK_INCOMING_CALL_TWIML"]
    stored = stored_calls(r.call_sid for r in results)
    redis = redis_client(layout.settings.redis_url)
    for result in results:
        kind = classify_answer(result, fallback_body)
        if kind == "full":
            report.full_twiml += 1
        elif kind == "fallback":
            report.fallback_twiml += 1
        elif kind == "default":
            report.default_twiml += 1
        else:
            report.unanswered += 1
        report.twilio_errors += len(result.failures)
        row: StoredCall | None = stored.get(result.call_sid)
        if row is None:
            report.lost += 1
            report.lost_details.append(f"{result.call_sid}: no call row")
            continue
        report.duplicate_rows += max(0, row.call_rows - 1)
        if result.recording_status != "completed":
            allowed = 0 if result.recording_sid is None else 1
            report.duplicate_rows += max(0, row.recording_rows - allowed)
            continue
        report.recordings_expected += 1
        report.duplicate_rows += max(0, row.recording_rows - 1)
        if row.recording_rows == 0 or row.recording_sid != result.recording_sid:
            report.lost += 1
            report.lost_details.append(f"{result.call_sid}: recording not stored")
            continue
        report.recordings_stored += 1
        if row.is_ready:
            report.transcripts_ready += 1
        elif not require_transcripts:
            continue
        elif not row.is_final and _has_pending_job(redis, row.recording_sid):
            report.transcripts_pending += 1  # late, not lost: its job waits in the queue
        else:
            report.lost += 1
            report.lost_details.append(
                f"{result.call_sid}: transcript {row.processing_status}, no job pending"
            )


CHAOS_VOICEMAILS = (
    ("he", "שלום, אני מתקשרת לגבי ההזמנה שלי. אנא חזרו אליי. תודה."),
    ("en", "Hello, I am calling about my order. Please call me back. Thank you."),
)


def prepare(
    settings: Settings,
    calls: int,
    business_name: str = "Chaos",
    voicemails: Sequence[tuple[str, str]] = CHAOS_VOICEMAILS,
) -> list[CallPlan]:
    """A business with an MP3 greeting (so full TwiML is told from a fallback) and the calls,
    leaving `voicemails` ((language, text), in turn)."""
    from moked.businesses import BusinessSpec, business_named, upsert_business
    from moked.db.session import session_scope
    from moked.greetings import is_playable, synthesize_mp3

    with session_scope() as session:
        existing = business_named(session, business_name)
        number = existing.numbers[0].e164 if existing and existing.numbers else None
        playable = existing is not None and is_playable(
            settings.greetings_dir, existing.greeting_file
        )
    if number is None:
        number = f"+9723555{9000 + secrets.randbelow(1000):04d}"
    spec = BusinessSpec(
        name=business_name,
        numbers=(number,),
        greeting_mp3=None if playable else synthesize_mp3("Chaos business, leave a message.", "en"),
    )
    with session_scope() as session:
        upsert_business(session, spec, settings.greetings_dir)
    voices = [audio.speak(text, language) for language, text in voicemails]
    return [
        CallPlan(
            to=number, from_=f"+97254555{i % 10000:04d}", caller=Caller(voices[i % len(voices)])
        )
        for i in range(calls)
    ]


def simulator_for(settings: Settings, media: MediaServer) -> Simulator:
    return Simulator(
        SimulatorConfig(
            public_base=settings.public_base,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.require_auth_token(),
        ),
        media,
    )
