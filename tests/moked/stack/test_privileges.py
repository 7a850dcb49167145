"""Local privileges of the native stack (issue 13, item 8): another local user can reach
neither Postgres nor Redis, and the superuser needs its password even on the socket;
recordings and logs are readable by the stack's shared group (nginx's workers, the
notifier, the reconciler), not by other local users."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
import redis as redis_lib
import requests

from moked.stack import config, monitoring, native
from tests.harness import StackUnderTest
from tests.helpers import new_recording_sid
from tests.services.transcriber.audio import VOICEMAIL_TEXT, telephone_mp3
from tests.services.transcriber.doubles import TwilioDouble
from transcriber import media

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


def _as_nobody(*command: str, group: str | None = None) -> subprocess.CompletedProcess[str]:
    in_group = ["-g", group] if group else []
    return subprocess.run(
        ["runuser", "-u", "nobody", *in_group, "--", *command],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_the_postgres_socket_is_private_and_asks_for_a_password(stack: StackUnderTest) -> None:
    layout = stack.layout
    assert stat.S_IMODE(layout.pg_socket_dir.stat().st_mode) == 0o700
    secret = layout.pg_superuser_password_file
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    _, port, _, _, _ = layout.database
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(
            host=str(layout.pg_socket_dir), port=port, user="postgres", dbname="postgres"
        )
    native.superuser_connection(layout).close()  # with the password it opens


@as_root
def test_another_local_user_reaches_neither_postgres_nor_redis(stack: StackUnderTest) -> None:
    layout = stack.layout
    _, port, _, _, _ = layout.database
    psql = shutil.which("psql")
    assert psql is not None
    denied = _as_nobody(
        psql, "-h", str(layout.pg_socket_dir), "-p", str(port), "-U", "postgres", "-w",
        "-c", "SELECT 1",
    )  # fmt: skip
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr or "password" in denied.stderr
    # Over TCP, as the superuser, without its password.
    tcp = _as_nobody(
        psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-w", "-c", "SELECT 1"
    )
    assert tcp.returncode != 0 and "password" in tcp.stderr

    redis_cli = shutil.which("redis-cli")
    assert redis_cli is not None
    answer = _as_nobody(redis_cli, "-p", str(layout.redis_port), "LLEN", "rq:queue:transcription")
    assert "NOAUTH" in answer.stdout + answer.stderr


def test_redis_asks_for_the_password_in_redis_url(stack: StackUnderTest) -> None:
    url = urlsplit(stack.settings.redis_url)
    assert url.password, "the test stack, like `make up`, gives Redis a password"
    anonymous = redis_lib.Redis(host="127.0.0.1", port=stack.layout.redis_port)
    with pytest.raises(redis_lib.AuthenticationError):
        anonymous.ping()
    assert stat.S_IMODE(stack.layout.redis_conf.stat().st_mode) == 0o600


def _store_a_recording(stack: StackUnderTest) -> Path:
    """What the transcriber does with a caller's voice: media.store into RECORDINGS_DIR."""
    account, token = "AC" + "cd" * 16, "token"
    host = TwilioDouble(account_sid=account, auth_token=token).start()
    try:
        sid = new_recording_sid()
        url = host.publish(sid, telephone_mp3(VOICEMAIL_TEXT))
        policy = media.FetchPolicy(
            allowed_hosts=frozenset({"127.0.0.1"}),
            auth=(account, token),
            max_bytes=1024 * 1024,
            timeout_seconds=5.0,
            require_https=False,
            retry_delays=(0.01,),
        )
        stored = media.store(url, sid, stack.settings.recordings_dir, policy)
    finally:
        host.stop()
    return stack.settings.recordings_dir / stored.local_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_recordings_and_logs_belong_to_the_shared_group_only(stack: StackUnderTest) -> None:
    group = config.shared_group()
    recording = _store_a_recording(stack)
    assert _mode(recording) == 0o640
    for directory in (recording.parent, recording.parent.parent, stack.settings.recordings_dir):
        assert _mode(directory) == 0o2750, directory
    # Set-gid directories hand the group down, whatever the writer's own group.
    assert recording.stat().st_gid == group
    logs = stack.layout.log_dir
    assert _mode(logs) == 0o2750
    # supervisord's and its programs' logs, and nginx's, made under umask 027.
    for name in ("supervisord.log", "webhooks.log", "transcriber.log", "access.log"):
        log_file = logs / name
        assert _mode(log_file) == 0o640, log_file
        assert log_file.stat().st_gid == group, log_file
    # Greetings stay public: Twilio fetches them through nginx.
    assert _mode(stack.settings.greetings_dir) == 0o755


@as_root
def test_another_local_user_reads_neither_recordings_nor_logs(stack: StackUnderTest) -> None:
    recording = _store_a_recording(stack)
    for private in (
        recording,
        stack.layout.log_dir / "webhooks.log",
        stack.layout.log_dir / "access.log",
    ):
        denied = _as_nobody("cat", str(private))
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, private
    # nginx's workers are nobody in the shared group: they read the recording (the CRM's
    # X-Accel-Redirect), as nginx.conf says.
    assert f"user nobody {config.SERVICE_ACCOUNT};" in stack.layout.nginx_conf.read_text()
    allowed = _as_nobody("head", "-c", "3", str(recording), group=config.SERVICE_ACCOUNT)
    assert allowed.returncode == 0 and allowed.stdout == "ID3", allowed.stderr


def test_stack_up_makes_what_an_earlier_version_left_world_readable_private(
    stack: StackUnderTest,
) -> None:
    old_dir = stack.settings.recordings_dir / "2020" / "01"
    old_dir.mkdir(parents=True, exist_ok=True)
    old = old_dir / f"{new_recording_sid()}.mp3"
    old.write_bytes(b"old")
    old_log = stack.layout.log_dir / "old-service.log"
    old_log.write_text("old\n")
    for path, mode in ((old_dir.parent, 0o755), (old_dir, 0o755), (old, 0o644), (old_log, 0o644)):
        os.chown(path, -1, os.getgid())
        path.chmod(mode)
    try:
        for _ in range(2):  # idempotent
            config.prepare_dirs(stack.layout)
            assert _mode(old_dir.parent) == _mode(old_dir) == 0o2750
            assert _mode(old) == _mode(old_log) == 0o640
            assert old.stat().st_gid == old_log.stat().st_gid == config.shared_group()
    finally:
        old_log.unlink()


def _user_of(stack: StackUnderTest, program: str) -> str:
    pid = stack.supervisorctl("pid", program).strip()
    assert pid.isdigit() and pid != "0", f"{program}: {pid}"
    ps = subprocess.run(
        ["ps", "-o", "user=", "-p", pid], capture_output=True, text=True, check=True
    )
    return ps.stdout.strip()


UNPRIVILEGED = (
    "redis",
    "prometheus",
    "alertmanager",
    "nginx-exporter",
    "postgres-exporter",
    "redis-exporter",
)


@as_root
def test_redis_and_monitoring_run_as_the_unprivileged_user(stack: StackUnderTest) -> None:
    for program in UNPRIVILEGED:
        assert _user_of(stack, program) == config.SERVICE_ACCOUNT, program
    assert _user_of(stack, "postgres") == "postgres"
    # What they write or read is their own: Redis's files and its config (its password),
    # the time series, the exporters' passwords (0600).
    layout = stack.layout
    for path in (
        layout.redis_dir,
        layout.redis_conf,
        monitoring.prometheus_data(layout),
        monitoring.alertmanager_data(layout),
        monitoring.postgres_password_file(layout),
        monitoring.redis_password_file(layout),
        monitoring.alertmanager_dir(layout) / "alertmanager.yml",
    ):
        assert path.owner() == config.SERVICE_ACCOUNT, path
    # Each of them works as that user: Prometheus scrapes the exporters, which answer.
    for port in (
        stack.settings.postgres_exporter_port,
        stack.settings.redis_exporter_port,
        stack.settings.nginx_exporter_port,
    ):
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "_up 1" in metrics, port
