"""Nothing on one node (issue 16): what a webhooks process keeps on its own disk survives
the process, and a process on an empty disk does not need it.

The webhooks' upkeep process (services/webhooks/upkeep.py), one per gunicorn master,
replays its own spool and rebuilds the last-known answers on start; the reconciler is
stopped here so that nothing else can.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from moked.answers import LastKnownAnswers
from moked.db.models import WebhookEvent
from moked.db.session import reset_engine, session_scope
from moked.statuses import CallStatus, EventSource
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid
from tests.services.webhooks.test_resilience import call_row, eventually, twiml_verbs


@pytest.fixture
def reconciler_stopped(stack: StackUnderTest) -> Iterator[None]:
    stack.supervisorctl("stop", "reconciler")
    try:
        yield
    finally:
        stack.supervisorctl("start", "reconciler")


def _spooled_call_sids(stack: StackUnderTest) -> set[str]:
    sids = set()
    for path in stack.settings.spool_dir.glob("*.json"):
        try:
            params = json.loads(path.read_text(encoding="utf-8")).get("params", {})
        except FileNotFoundError:
            continue  # replayed meanwhile
        sids.add(str(params.get("CallSid", "")))
    return sids


def _kill_webhooks_group(stack: StackUnderTest) -> int:
    """SIGKILL the gunicorn master, its workers and its upkeep at once: a pod that died."""
    pid = int(stack.supervisorctl("pid", "webhooks").strip())
    os.killpg(pid, signal.SIGKILL)
    return pid


def _webhooks_pid(stack: StackUnderTest) -> int:
    try:
        return int(stack.supervisorctl("pid", "webhooks").strip())
    except ValueError:
        return 0


def test_a_killed_webhooks_process_loses_nothing_once_its_replacement_starts(
    stack: StackUnderTest, make_business, reconciler_stopped: None
) -> None:
    business = make_business()
    number = business.numbers[0].e164
    call_sids = [new_call_sid() for _ in range(4)]

    stack.supervisorctl("stop", "postgres")
    try:
        for call_sid in call_sids:
            response = stack.post("/webhook/incoming_call", call_params(call_sid, number))
            assert twiml_verbs(response)[2] == "Record", "the caller is still recorded"
        status = stack.post(
            "/webhook/call_status",
            call_params(
                call_sids[0], number, CallStatus="completed", CallDuration="7", SequenceNumber="2"
            ),
        )
        assert status.status_code == 200
        assert set(call_sids) <= _spooled_call_sids(stack), "the outage's events are spooled"

        killed = _kill_webhooks_group(stack)
        # supervisord starts the replacement (autorestart) while Postgres is still down:
        # its upkeep must keep trying, not give up on the first refusal.
        eventually(
            lambda: _webhooks_pid(stack) not in (0, killed),
            timeout=60,
            what="a new webhooks process",
        )
        assert set(call_sids) <= _spooled_call_sids(stack), "nothing replayed them yet"
    finally:
        stack.supervisorctl("start", "postgres")
        reset_engine()
    stack.supervisorctl("start", "webhooks")  # already running: waits until it serves

    def all_stored() -> bool:
        rows = [call_row(call_sid) for call_sid in call_sids]
        return all(row is not None for row in rows)

    try:
        eventually(all_stored, timeout=120, what="the spool replayed by the new process")
    except AssertionError as exc:
        log = (stack.layout.log_dir / "webhooks.log").read_text()[-3000:]
        raise AssertionError(f"{exc}\nwebhooks log:\n{log}") from None
    for call_sid in call_sids:
        row = call_row(call_sid)
        assert row is not None
        assert row.business_id == business.id
    first = call_row(call_sids[0])
    assert first is not None
    assert first.status is CallStatus.COMPLETED
    assert first.duration_seconds == 7
    with session_scope() as session:
        sources = session.scalars(
            select(WebhookEvent.source).where(WebhookEvent.call_sid.in_(call_sids))
        ).all()
    assert sorted(sources) == [EventSource.SPOOL] * (len(call_sids) + 1)
    assert not set(call_sids) & _spooled_call_sids(stack)


def test_a_process_on_a_fresh_state_directory_greets_with_the_business(
    stack: StackUnderTest, make_business
) -> None:
    greeting = f"Welcome to the fresh pod test {secrets.token_hex(4)}"
    business = make_business(greeting_text=greeting, language="en-US")
    number = business.numbers[0].e164
    answers_dir = stack.settings.last_known_answers_dir
    assert greeting != stack.settings.default_greeting_text

    stack.supervisorctl("stop", "webhooks")
    try:
        # Empty, like a pod's fresh emptyDir: the directory is the runner's to make (as
        # root natively, the state directory is root's; the webhooks run as `moked`).
        for entry in answers_dir.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    finally:
        stack.supervisorctl("start", "webhooks")
    # Nobody has called the number: only the new process's start-up can have written it.
    store = LastKnownAnswers(answers_dir)
    eventually(
        lambda: store.recall(number) is not None, timeout=60, what="the answers rebuilt on start"
    )

    stack.supervisorctl("stop", "postgres")
    try:
        started = time.monotonic()
        response = stack.post("/webhook/incoming_call", call_params(new_call_sid(), number))
        elapsed = time.monotonic() - started
    finally:
        stack.supervisorctl("start", "postgres")
        reset_engine()

    assert twiml_verbs(response)[:3] == ["Say", "Pause", "Record"]
    say = ET.fromstring(response.content).find("Say")
    assert say is not None
    assert say.text == greeting, "the business's greeting, not the default"
    assert say.get("language") == "en-US"
    assert elapsed < 10, "answered within Twilio's patience"


def _upkeeps_of(master_pid: int) -> list[int]:
    """Pids of upkeep processes started for this gunicorn master (their command line says)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"webhooks.upkeep" in argv and str(master_pid).encode() in argv:
            found.append(int(entry.name))
    return found


def test_an_upkeep_process_does_not_outlive_its_master(stack: StackUnderTest) -> None:
    master = _webhooks_pid(stack)
    eventually(lambda: bool(_upkeeps_of(master)), timeout=30, what="the master's upkeep")

    os.kill(master, signal.SIGKILL)  # the master alone: its upkeep is left to init
    try:
        eventually(lambda: not _upkeeps_of(master), timeout=30, what="the orphan upkeep gone")
    finally:
        eventually(lambda: _webhooks_pid(stack) not in (0, master), timeout=60, what="restart")
        stack.supervisorctl("start", "webhooks")  # already running: waits until it serves
    try:
        eventually(
            lambda: bool(_upkeeps_of(_webhooks_pid(stack))), timeout=60, what="the new upkeep"
        )
    except AssertionError as exc:
        log = (stack.layout.log_dir / "webhooks.log").read_text()[-4000:]
        status = stack.supervisorctl("status", "webhooks")
        raise AssertionError(f"{exc}\n{status}\nwebhooks log:\n{log}") from None
