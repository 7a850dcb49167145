"""The native runner: the whole stack under supervisord, for development and tests.

`moked stack up` is idempotent: it renders the configuration, initialises Postgres once,
starts (or updates) supervisord, migrates, seeds the demo business and waits until every
service answers. `moked stack down` stops all of it.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg2
from psycopg2 import sql

from moked.settings import Settings, to_env, write_env_file
from moked.stack import monitoring
from moked.stack.config import (
    NGINX_TEMPLATE,
    REPO_ROOT,
    StackLayout,
    nginx_variables,
    own_state,
    postgres_bin,
    prepare_dirs,
    program_sections,
    python_services_fallback,
    python_services_user,
    redis_config,
    render_nginx,
    running_as_root,
    supervisord_config,
)
from moked.stack.layout import SERVICE_ACCOUNT, state_unreachable_because

log = logging.getLogger(__name__)

VENV_BIN = Path(sys.executable).parent
GENERATED_MARKER = "change-me"


class StackError(RuntimeError):
    """The stack could not be brought up; the message says which part and why."""


def create_env_file(example: Path, target: Path) -> bool:
    """First run: copy .env.example with every `change-me` replaced by a fresh secret."""
    if target.exists():
        return False
    lines = []
    for line in example.read_text(encoding="utf-8").splitlines():
        while GENERATED_MARKER in line:
            line = line.replace(GENERATED_MARKER, secrets.token_hex(16), 1)
        lines.append(line)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target.chmod(0o600)
    return True


def resolve_paths(settings: Settings, base: Path) -> Settings:
    """Make every directory setting absolute, so each service sees the same paths."""
    updates = {}
    for name in (
        "state_dir",
        "greetings_dir",
        "recordings_dir",
        "spool_dir",
        "nginx_fallback_log",
        "mail_dir",
    ):
        value: Path = getattr(settings, name)
        updates[name] = value if value.is_absolute() else (base / value).resolve()
    return settings.model_copy(update=updates)


def _run(command: list[str], **kwargs: object) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise StackError(f"{' '.join(command[:3])} failed: {result.stderr.strip()[-800:]}")


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if running_as_root() else command


def init_postgres(layout: StackLayout) -> None:
    """Create the cluster once: scram-sha-256 for every connection, socket or TCP, with a
    generated superuser password kept in `pg_superuser_password_file`."""
    if (layout.pgdata / "PG_VERSION").exists():
        return
    layout.pgdata.mkdir(parents=True, exist_ok=True)
    layout.pgdata.chmod(0o700)
    password = secrets.token_urlsafe(24)
    secret = layout.pg_superuser_password_file
    secret.touch(mode=0o600)
    secret.chmod(0o600)
    secret.write_text(password + "\n", encoding="utf-8")
    # initdb (as postgres) reads the password from a file of its own, removed at once.
    pwfile = layout.pgdata.parent / f".initdb-{secrets.token_hex(4)}"
    pwfile.touch(mode=0o600)
    pwfile.write_text(password + "\n", encoding="utf-8")
    if running_as_root():
        shutil.chown(layout.pgdata, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    try:
        _run(
            _as_postgres(
                [
                    str(postgres_bin() / "initdb"),
                    "-D",
                    str(layout.pgdata),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ]
            )
        )
    finally:
        pwfile.unlink(missing_ok=True)


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except Exception as exc:  # any failure means "not yet"
            log.debug("%s not ready: %s", what, exc)
        time.sleep(0.2)
    raise StackError(f"{what} did not become ready within {timeout:.0f} s")


def superuser_connection(layout: StackLayout) -> psycopg2.extensions.connection:
    """The cluster's superuser, on the private socket, with its password (a cluster made
    before passwords were, with trust for local connections, still opens without one)."""
    _, port, _, _, _ = layout.database
    secret = layout.pg_superuser_password_file
    password = secret.read_text(encoding="utf-8").strip() if secret.exists() else None
    connection = psycopg2.connect(
        host=str(layout.pg_socket_dir),
        port=port,
        user="postgres",
        password=password,
        dbname="postgres",
        connect_timeout=2,
    )
    connection.autocommit = True
    return connection


def ensure_database(layout: StackLayout) -> None:
    """Create the application role and database once; set the password every time."""
    wait_for("postgres", lambda: bool(superuser_connection(layout).close() or True))
    _, _, user, password, name = layout.database
    connection = superuser_connection(layout)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
            verb = "ALTER" if cursor.fetchone() else "CREATE"
            cursor.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(user)),
                (password,),
            )
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if not cursor.fetchone():
                cursor.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(user)
                    )
                )
    finally:
        connection.close()


def supervisorctl(layout: StackLayout, *args: str, check: bool = True) -> str:
    result = subprocess.run(
        [str(VENV_BIN / "supervisorctl"), "-c", str(layout.supervisord_conf), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode not in (0, 3):  # 3: some program is not RUNNING
        raise StackError(f"supervisorctl {' '.join(args)}: {result.stdout}{result.stderr}")
    return result.stdout


def supervisor_running(layout: StackLayout) -> bool:
    if not layout.supervisor_socket.exists():
        return False
    result = subprocess.run(
        [str(VENV_BIN / "supervisorctl"), "-c", str(layout.supervisord_conf), "pid"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip().isdigit()


def _write_if_changed(path: Path, content: str, mode: int = 0o644) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == content:
        path.chmod(mode)
        return False
    path.touch(mode=mode)
    path.chmod(mode)
    path.write_text(content, encoding="utf-8")
    return True


def render(layout: StackLayout) -> dict[str, bool]:
    """Write every configuration file; report which ones changed."""
    prepare_dirs(layout)
    previous = layout.env_file.read_text(encoding="utf-8") if layout.env_file.exists() else ""
    write_env_file(layout.env_file, to_env(layout.settings))
    if python_services_user() is not None:
        own_state(layout.env_file)  # 0600: the services' (as `moked`) and root's alone
    changed = {"env": previous != layout.env_file.read_text(encoding="utf-8")}
    changed["nginx"] = _write_if_changed(
        layout.nginx_conf,
        render_nginx(NGINX_TEMPLATE.read_text(encoding="utf-8"), nginx_variables(layout)),
    )
    # It holds Redis's password.
    changed["redis"] = _write_if_changed(layout.redis_conf, redis_config(layout), mode=0o600)
    own_state(layout.redis_conf)  # Redis's own user reads it
    sections = program_sections(layout)
    changed["supervisord"] = _write_if_changed(
        layout.supervisord_conf, supervisord_config(layout, sections)
    )
    monitoring.write_exporter_secrets(layout)
    monitoring.prepare_data_dirs(layout)
    changed["prometheus"] = monitoring.render_prometheus(layout, sections)
    changed["alertmanager"] = monitoring.render_alertmanager(layout)
    return changed


def _child_env() -> dict[str, str]:
    """A clean environment: the services read their settings from the stack's env file."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env.setdefault("LANG", "C.UTF-8")
    return env


def start(layout: StackLayout) -> None:
    unreachable = state_unreachable_because(layout.state_dir, "postgres", SERVICE_ACCOUNT)
    if unreachable:
        raise StackError(unreachable)
    changed = render(layout)
    fallback = python_services_fallback()  # after render: it makes the `moked` account
    if fallback:
        print(f"warning: {fallback}", file=sys.stderr)
    if layout.manages_postgres:
        init_postgres(layout)
    if not supervisor_running(layout):
        subprocess.run(
            [str(VENV_BIN / "supervisord"), "-c", str(layout.supervisord_conf)],
            check=True,
            env=_child_env(),
            cwd=REPO_ROOT,
            umask=0o027,  # its own log is opened before its config's umask applies
        )
        wait_for("supervisord", lambda: supervisor_running(layout), timeout=20)
    else:
        if changed["supervisord"]:
            supervisorctl(layout, "reread")
            supervisorctl(layout, "update")
        if changed["env"]:
            supervisorctl(
                layout, "restart", "webhooks", "crm-ui", "transcriber", "reconciler", check=False
            )
        if changed["nginx"]:
            supervisorctl(layout, "signal", "HUP", "nginx", check=False)
        for program in ("prometheus", "alertmanager"):  # both reload their config on HUP
            if changed[program]:
                supervisorctl(layout, "signal", "HUP", program, check=False)
    supervisorctl(layout, "start", "all", check=False)
    if layout.manages_postgres:
        ensure_database(layout)
    from moked.db.migrate import upgrade

    wait_for("postgres (application role)", lambda: _can_connect(layout.settings.database_url))
    upgrade(layout.settings.database_url)


def _can_connect(url: str) -> bool:
    from sqlalchemy import create_engine, pool

    engine = create_engine(url, poolclass=pool.NullPool, connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            return True
    finally:
        engine.dispose()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(layout: StackLayout, timeout: float = 60.0) -> None:
    settings = layout.settings
    wait_for(
        "webhooks (/readyz)",
        lambda: http_ok(f"http://127.0.0.1:{settings.webhooks_port}/readyz"),
        timeout,
    )
    wait_for("nginx (/healthz)", lambda: http_ok(layout.http_url + "/healthz"), timeout)
    wait_for(
        "crm-ui (/healthz)",
        lambda: http_ok(f"http://127.0.0.1:{settings.crm_port}/healthz"),
        timeout,
    )


def stop(layout: StackLayout) -> None:
    if supervisor_running(layout):
        supervisorctl(layout, "shutdown", check=False)
        pid_file = layout.run_dir / "supervisord.pid"
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
