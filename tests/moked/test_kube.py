"""moked.kube, the helpers the Kubernetes manifests run, against the native stack's servers.

- `wait-for-schema` (every app pod's init container) lets a pod start only once the
  database is at this code's head revision: not before the migrate Job ran, not when
  Postgres is unreachable.
- `replay-fallback` (the sidecar of every nginx pod) replays the pod's own fallback log
  into Postgres, once per line, and counts it on its /metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
from sqlalchemy import select

from moked import kube
from moked.db.migrate import upgrade
from moked.db.models import Call
from moked.db.session import session_scope
from moked.settings import Settings, to_env
from moked.stack import native
from moked.twilio.signature import FormParams, sign
from tests.harness import StackUnderTest, free_port
from tests.helpers import call_params, new_call_sid


def _with_database(settings: Settings, name: str) -> Settings:
    parts = urlsplit(settings.database_url)
    return settings.model_copy(update={"database_url": urlunsplit(parts._replace(path="/" + name))})


@pytest.fixture
def empty_database(stack: StackUnderTest) -> Iterator[Settings]:
    """A database of its own on the stack's Postgres, with no schema at all."""
    name = f"moked_kube_{os.getpid()}"
    owner = urlsplit(stack.settings.database_url).username
    admin = native.superuser_connection(stack.layout)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    try:
        yield _with_database(stack.settings, name)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_the_schema_is_ready_only_once_migrated(empty_database: Settings) -> None:
    assert not kube.schema_ready(empty_database)
    assert not kube.wait_for_schema(empty_database, interval=0.1, timeout=0.3)
    upgrade(empty_database.database_url)
    assert kube.schema_ready(empty_database)
    assert kube.wait_for_schema(empty_database, interval=0.1, timeout=0.3)


def test_an_unreachable_postgres_is_not_ready(stack: StackUnderTest) -> None:
    parts = urlsplit(stack.settings.database_url)
    closed = parts._replace(netloc=f"{parts.username}@127.0.0.1:{free_port()}")
    settings = stack.settings.model_copy(update={"database_url": urlunsplit(closed)})
    started = time.monotonic()
    assert not kube.wait_for_schema(settings, interval=0.1, timeout=0.5)
    assert time.monotonic() - started < 10


def _fallback_line(settings: Settings, uri: str, params: dict[str, str]) -> str:
    """A line of nginx's fallback log (nginx.conf.template's twilio_fallback log_format)."""
    token = settings.twilio_auth_token.get_secret_value()
    form = FormParams({k: [v] for k, v in params.items()})
    entry = {
        "id": "fedcba9876543210fedcba9876543210",
        "time": "2026-12-01T10:00:05+00:00",
        "uri": uri,
        "signature": sign(token, settings.public_base + uri, form),
        "status": "502",
        "body": urlencode(params),
    }
    return json.dumps(entry)


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
        return str(answer.read().decode())


def test_the_sidecar_replays_its_pods_fallback_log(  # type: ignore[no-untyped-def]
    stack: StackUnderTest, make_business, tmp_path: Path
) -> None:
    number = make_business().numbers[0].e164
    call_sid = new_call_sid()
    log = tmp_path / "log" / "twilio_fallback.log"
    log.parent.mkdir()
    line = _fallback_line(stack.settings, "/webhook/incoming_call", call_params(call_sid, number))
    log.write_text(line + "\n")
    port = free_port()
    env = os.environ | to_env(stack.settings)
    env |= {
        "NGINX_FALLBACK_LOG": str(log),
        "RECONCILER_METRICS_PORT": str(port),
        "METRICS_BIND_HOST": "127.0.0.1",
        "RECONCILE_INTERVAL_SECONDS": "0.2",
        "MOKED_ENV_FILE": str(tmp_path / "no.env"),
    }
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "moked.kube", "replay-fallback"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        stored = None
        while time.monotonic() < deadline and stored is None:
            assert sidecar.poll() is None, sidecar.stderr.read() if sidecar.stderr else ""
            with session_scope() as session:
                stored = session.scalar(select(Call.call_sid).where(Call.call_sid == call_sid))
            time.sleep(0.2)
        assert stored == call_sid, "the sidecar did not apply the fallback line"
        # The offset is kept beside the log (the pod's volume): a restart reads on from it.
        offset = log.with_name(log.name + ".offset")
        assert offset.read_text() == str(len(line) + 1)
        exposition = _metrics(port)
        assert 'moked_webhook_events_replayed_total{source="nginx_fallback"} 1.0' in exposition
    finally:
        sidecar.terminate()
        sidecar.wait(timeout=10)
