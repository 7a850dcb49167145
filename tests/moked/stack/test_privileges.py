"""Local privileges of the native stack (issue 13, item 8): another local user can reach
neither Postgres nor Redis, and the superuser needs its password even on the socket;
recordings and logs are readable by the stack's shared group (nginx's workers, the
notifier, the reconciler), not by other local users."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
import redis as redis_lib
import requests

from moked import cli, models
from moked.db.models import Business
from moked.db.session import session_scope
from moked.greetings import greeting_url, synthesize_mp3
from moked.intake import InboundEvent
from moked.spool import Spool
from moked.stack import config, monitoring, native
from moked.stack import layout as layout_module
from moked.stack.config import StackLayout
from moked.statuses import Endpoint
from tests.harness import StackUnderTest, make_state_dir, make_test_settings
from tests.helpers import new_call_sid, new_recording_sid
from tests.moked.hub import HubServer
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


# --- the Python services (issue 13, item 8's last part) ----------------------------------


def _python_programs(stack: StackUnderTest) -> list[str]:
    """Every program supervisord runs through scripts/run-service: Moked's own services."""
    conf = stack.layout.supervisord_conf.read_text(encoding="utf-8")
    names = []
    for block in conf.split("[program:")[1:]:
        name, _, body = block.partition("]")
        if f"command={config.SERVICE_LAUNCHER} " in body:
            names.append(name)
    return names


def _uids(pid: int) -> set[int]:
    """The real, effective, saved and filesystem uids of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return {int(uid) for uid in line.split()[1:]}
    raise AssertionError(f"no Uid line for {pid}")


def _process_tree(pid: int) -> list[int]:
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [pid, *(p for child in children for p in _process_tree(int(child)))]


def _services_can_run_as_moked() -> None:
    """A .venv on an interpreter under /root (pyenv's) cannot be the services' as `moked`:
    scripts/bootstrap recreates it on Debian's python3.11. Say so rather than a uid."""
    fallback = config.python_services_fallback()
    assert fallback is None, fallback


@as_root
def test_the_python_services_run_as_the_unprivileged_user(stack: StackUnderTest) -> None:
    _services_can_run_as_moked()
    programs = _python_programs(stack)
    assert {"webhooks", "crm-ui", "transcriber", "reconciler", "notifier"} <= set(programs)
    moked_uid = pwd.getpwnam(config.SERVICE_ACCOUNT).pw_uid
    for program in programs:
        pid = stack.supervisorctl("pid", program).strip()
        assert pid.isdigit() and pid != "0", f"{program}: {pid}"
        tree = _process_tree(int(pid))
        for process in tree:  # gunicorn's and the transcriber's workers too
            assert _uids(process) == {moked_uid}, (program, process)
    # What they write is theirs, private to them: the spool, the last answers, the mail,
    # their metrics and HOME; recordings and logs shared with nginx's group only.
    layout, settings = stack.layout, stack.settings
    for directory, mode in (
        (settings.spool_dir, 0o700),
        (settings.last_known_answers_dir, 0o700),
        (settings.mail_dir, 0o700),
        (layout.metrics_dir, 0o700),
        (layout.service_home, 0o700),
        (settings.recordings_dir, 0o2750),
        (layout.log_dir, 0o2750),
        (settings.greetings_dir, 0o755),
    ):
        assert directory.owner() == config.SERVICE_ACCOUNT, directory
        assert _mode(directory) == mode, directory
    assert layout.env_file.owner() == config.SERVICE_ACCOUNT and _mode(layout.env_file) == 0o600
    # The embedded model, assembled by the transcriber as that user, is its own.
    embedded = models.models_root(layout.state_dir) / models.EMBEDDED_MODEL_NAME
    if embedded.exists():
        assert embedded.owner() == config.SERVICE_ACCOUNT


@as_root
def test_another_local_user_reads_no_callers_data_and_no_secret(stack: StackUnderTest) -> None:
    event = InboundEvent(
        endpoint=Endpoint.INCOMING_CALL,
        params={"CallSid": new_call_sid(), "From": "+972501234567", "To": "+972035550123"},
        event_id=secrets.token_hex(8),
        received_at=dt.datetime.now(dt.UTC),
    )
    # A directory of the spool's own that the reconciler does not replay meanwhile.
    held = stack.settings.spool_dir / f"held-{secrets.token_hex(4)}"
    spooled = Spool(held).put(event)
    try:
        # Written by root (as the webhooks do in-process here): handed to the services.
        assert spooled.owner() == held.owner() == config.SERVICE_ACCOUNT
        assert _mode(spooled) == 0o600 and _mode(held) == 0o700
        as_service = subprocess.run(
            ["runuser", "-u", config.SERVICE_ACCOUNT, "--", "cat", str(spooled)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert as_service.returncode == 0 and "+972501234567" in as_service.stdout
        layout = stack.layout
        for private in (
            spooled,
            layout.env_file,  # every secret: the database's and Redis's passwords, …
            layout.pg_superuser_password_file,
            layout.log_dir / "reconciler.log",
            layout.log_dir / "supervisord.log",
        ):
            denied = _as_nobody("cat", str(private))
            assert denied.returncode != 0 and "Permission denied" in denied.stderr, private
        for directory in (stack.settings.spool_dir, stack.settings.last_known_answers_dir):
            listing = _as_nobody("ls", str(directory))
            assert listing.returncode != 0 and "Permission denied" in listing.stderr, directory
    finally:
        shutil.rmtree(held)


@as_root
def test_a_greeting_the_cli_adds_as_root_is_the_services_and_nginx_serves_it(
    stack: StackUnderTest, make_business: Callable[..., Business], tmp_path: Path
) -> None:
    business = make_business()
    path = tmp_path / "greeting.mp3"
    path.write_bytes(synthesize_mp3("shalom", "en"))
    assert cli.main(["business", "add", "--name", business.name, "--greeting", str(path)]) == 0
    with session_scope() as session:
        stored = session.get(Business, business.id)
        assert stored is not None and stored.greeting_file
        name = stored.greeting_file
    greeting = stack.settings.greetings_dir / name
    # The CRM (as `moked`) replaces and prunes it; nginx's workers (nobody) serve it.
    assert greeting.owner() == config.SERVICE_ACCOUNT and _mode(greeting) == 0o644
    served = requests.get(greeting_url(stack.layout.http_url, name), timeout=10)
    assert served.status_code == 200 and served.content == greeting.read_bytes()


@as_root
def test_a_model_pulled_as_root_is_readable_by_the_transcriber_user(
    stack: StackUnderTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _services_can_run_as_moked()
    base = models.embedded_model_dir(tmp_path / "embedded")
    server = HubServer()
    server.add("moked-test/privileges-ct2", base, ["he"])
    server.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        assert cli.main(["model", "pull", "moked-test/privileges-ct2"]) == 0
    finally:
        server.stop()
    state = stack.layout.state_dir
    (model,) = models.find(state, "moked-test/privileges-ct2")
    try:
        for path in (model.directory, *model.directory.iterdir()):
            assert path.owner() == config.SERVICE_ACCOUNT, path
        # What the transcriber does with it, as its user: resolve it and read its weights.
        probe = (
            "import sys; from pathlib import Path; from moked import models;"
            f"(m,) = models.find(Path({str(state)!r}), 'moked-test/privileges-ct2');"
            "print(models.verify(m) == [])"
        )
        read = subprocess.run(
            ["runuser", "-u", config.SERVICE_ACCOUNT, "--", sys.executable, "-c", probe],
            capture_output=True, text=True, check=False, cwd=config.REPO_ROOT, timeout=120,
        )  # fmt: skip
        assert read.returncode == 0 and read.stdout.strip() == "True", read.stderr
    finally:
        models.remove(state, "moked-test/privileges-ct2")


@as_root
def test_a_checkout_the_unprivileged_user_cannot_reach_falls_back_to_root(
    stack: StackUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyenv's interpreter under /root (0700), or a clone there: `moked` cannot exec it.
    hidden = tmp_path / "root-only"
    hidden.mkdir(mode=0o700)
    interpreter = hidden / "python"
    interpreter.symlink_to(sys.executable)
    why = layout_module.python_unreachable_because(interpreter)
    assert why is not None and str(interpreter) in why
    monkeypatch.setattr(layout_module.sys, "executable", str(interpreter))
    warning = config.python_services_fallback()
    assert warning is not None and "\n" not in warning and "run as root" in warning
    assert config.python_services_user() is None
    sections = "".join(config.program_sections(stack.layout))
    webhooks = sections.split("[program:webhooks]")[1].split("[program:")[0]
    assert "user=" not in webhooks  # the invoking user: it still starts
    assert "user=moked" in sections.split("[program:redis]")[1].split("[program:")[0]


@as_root
def test_stack_up_refuses_a_state_directory_the_database_user_cannot_enter() -> None:
    """A checkout under /root (0700): one line saying why and what to do, before Postgres
    fails to start with a message about something else."""
    top = make_state_dir("moked-unreachable-")  # 0755, as /root's parent is
    home = top / "root-like"
    home.mkdir(mode=0o700)
    settings = make_test_settings(home / "moked" / "var")
    layout = StackLayout(settings=settings, state_dir=home / "moked" / "var")

    with pytest.raises(native.StackError) as refused:
        native.start(layout)

    message = str(refused.value)
    assert "postgres" in message and "/opt/moked" in message
    assert str(layout.state_dir) in message and "\n" not in message
    assert not layout.state_dir.exists()  # refused before anything was made
    home.chmod(0o755)
    assert layout_module.state_unreachable_because(layout.state_dir, "postgres", "moked") is None
    shutil.rmtree(top)
