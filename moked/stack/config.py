"""The native stack's programs and their rendered configuration files.

`make up` and the test session both use this: the same templates and commands, with a
different state directory and ports. Docker renders the same nginx template. Where the
stack lives is `moked.stack.layout` (re-exported here: StackLayout, REPO_ROOT); the
monitoring programs come from `moked.stack.monitoring`, which builds on the layout only.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import stat
import string
import subprocess
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from moked.mail_sink import sink_address
from moked.models import models_root
from moked.settings import Settings
from moked.stack.layout import REPO_ROOT as REPO_ROOT
from moked.stack.layout import SERVICE_ACCOUNT as SERVICE_ACCOUNT
from moked.stack.layout import SERVICE_LAUNCHER as SERVICE_LAUNCHER
from moked.stack.layout import StackLayout as StackLayout
from moked.stack.layout import own_state as own_state
from moked.stack.layout import program_section, unprivileged
from moked.stack.layout import python_services_fallback as python_services_fallback
from moked.stack.layout import python_services_user as python_services_user
from moked.stack.layout import running_as_root as running_as_root
from moked.stack.monitoring import monitoring_programs
from moked.twilio import rest, twiml

NGINX_TEMPLATE = REPO_ROOT / "nginx" / "nginx.conf.template"
POSTGRES_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
# Callers' voices and the logs: the owner writes, the shared group reads, others nothing;
# set-gid directories so every new file and directory gets the group.
PRIVATE_DIR_MODE = 0o2750
PRIVATE_FILE_MODE = 0o640

log = logging.getLogger(__name__)


def postgres_bin() -> Path:
    for candidate in POSTGRES_BIN_CANDIDATES:
        if (candidate / "postgres").exists():
            return candidate
    raise FileNotFoundError("PostgreSQL server binaries not found under /usr/lib/postgresql")


def ensure_service_account() -> None:
    """As root: the `moked` system group and user, made once (like scripts/bootstrap)."""
    if not running_as_root():
        return
    try:
        grp.getgrnam(SERVICE_ACCOUNT)
    except KeyError:
        subprocess.run(["groupadd", "--system", SERVICE_ACCOUNT], check=True)
    try:
        pwd.getpwnam(SERVICE_ACCOUNT)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--gid", SERVICE_ACCOUNT, "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SERVICE_ACCOUNT],
            check=True,
        )  # fmt: skip


def shared_group() -> int:
    """The gid that may read recordings and logs: `moked` as root (nginx's workers run as
    nobody in it), else the invoking user's own primary group (everything runs as them)."""
    if running_as_root():
        return grp.getgrnam(SERVICE_ACCOUNT).gr_gid
    return os.getgid()


def share_privately(directory: Path, gid: int) -> None:
    """Give `directory`, and all it holds, PRIVATE_DIR_MODE / PRIVATE_FILE_MODE and the
    group `gid`: idempotent, so what an earlier version left world-readable is fixed."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in [directory, *directory.rglob("*")]:
        try:
            status = path.lstat()
            if stat.S_ISLNK(status.st_mode):
                continue
            wanted = PRIVATE_DIR_MODE if stat.S_ISDIR(status.st_mode) else PRIVATE_FILE_MODE
            if status.st_gid != gid:
                os.chown(path, -1, gid)
            if stat.S_IMODE(status.st_mode) != wanted:
                path.chmod(wanted)
        except FileNotFoundError:
            continue  # a partial download renamed or removed meanwhile
        except PermissionError as exc:
            log.warning("cannot make %s private: %s", path, exc)


def fallback_twiml(settings: Settings) -> dict[str, str]:
    """The static TwiML nginx answers with when the app is down, built by our builders."""
    default = twiml.Greeting(audio_url=None, text=settings.default_greeting_text)
    answers = {
        "FALLBACK_INCOMING_CALL_TWIML": twiml.incoming_call(
            default, twiml.RecordOptions(), settings.no_message_text
        ),
        "FALLBACK_HANDLE_RECORDING_TWIML": twiml.thanks_and_hangup(settings.thanks_text),
        # A callback's legs (moked.callbacks): hang up cleanly; the reconciler fails the
        # attempt Twilio then never finishes.
        "FALLBACK_HANGUP_TWIML": twiml.hangup(),
    }
    for name, body in answers.items():
        if "$" in body or "'" in body:
            raise ValueError(f"{name} cannot be embedded in nginx.conf: it holds $ or '")
    return answers


def render_nginx(template: str, variables: dict[str, str]) -> str:
    """Fill ${NAME} placeholders; nginx's own $variables are left alone."""
    rendered = string.Template(template).safe_substitute(variables)
    missing = [name for name in variables if "${" + name + "}" in rendered]
    if missing:
        raise ValueError(f"unrendered nginx variables: {missing}")
    return rendered


def nginx_variables(layout: StackLayout) -> dict[str, str]:
    settings = layout.settings
    # As root, the workers drop to nobody in the shared group: they read recordings (0640)
    # but nothing else of Moked's.
    user = f"user nobody {SERVICE_ACCOUNT};" if running_as_root() else ""
    return {
        "NGINX_USER_DIRECTIVE": user,
        "NGINX_RUN_DIR": str(layout.nginx_run_dir),
        "NGINX_LOG_DIR": str(layout.log_dir),
        "NGINX_FALLBACK_LOG": str(settings.nginx_fallback_log),
        "NGINX_LISTEN": f"127.0.0.1:{settings.http_port}",
        "WEBHOOKS_UPSTREAM": f"127.0.0.1:{settings.webhooks_port}",
        "CRM_UPSTREAM": f"127.0.0.1:{settings.crm_port}",
        "GREETINGS_DIR": str(settings.greetings_dir.resolve()),
        "RECORDINGS_DIR": str(settings.recordings_dir.resolve()),
        # Docker adds TLS and its extra servers here (moked.stack.docker); none natively.
        "NGINX_HTTP_INCLUDES": "",
        "NGINX_SERVER_INCLUDES": "",
        **fallback_twiml(settings),
    }


def _redis_quoted(value: str) -> str:
    """A value as redis.conf reads a double-quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def redis_config(layout: StackLayout) -> str:
    # The password in REDIS_URL, if any, is the one Redis asks for: another local user
    # must not read or write the queue.
    password = urlsplit(layout.settings.redis_url).password
    auth = [f"requirepass {_redis_quoted(unquote(password))}"] if password else []
    return "\n".join(
        [
            *auth,
            "bind 127.0.0.1",
            f"port {layout.redis_port}",
            f"dir {layout.redis_dir}",
            "daemonize no",
            # The queue must survive a restart: AOF every second plus snapshots.
            "appendonly yes",
            "appendfsync everysec",
            "save 60 1",
            "protected-mode yes",
            "loglevel notice",
            "",
        ]
    )


def supervisord_config(layout: StackLayout, programs: list[str]) -> str:
    """supervisord restarts what crashes; each program is a service of the design."""
    return "\n".join(
        [
            "[unix_http_server]",
            f"file={layout.supervisor_socket}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={layout.log_dir / 'supervisord.log'}",
            f"pidfile={layout.run_dir / 'supervisord.pid'}",
            f"directory={REPO_ROOT}",
            "nodaemon=false",
            "minfds=4096",
            # Its own and its programs' logs, and what the programs write unless they say
            # otherwise (greetings: 0644 by name), are not for other local users.
            "umask=027",
            f'environment=MOKED_ENV_FILE="{layout.env_file}",MOKED_STATE_DIR="{layout.state_dir}"',
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{layout.supervisor_socket}",
            "",
            *programs,
        ]
    )


class _PythonProgram(Protocol):
    def __call__(
        self,
        name: str,
        *,
        priority: int,
        environment: dict[str, str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> str: ...


def _python_program(layout: StackLayout) -> _PythonProgram:
    """How Moked's own services (scripts/run-service) are run: as `moked` when the stack runs
    as root and that user can run this checkout (`python_services_user`), with its own HOME;
    else as the invoking user."""
    user = python_services_user()
    launcher = str(SERVICE_LAUNCHER)

    def section(
        name: str,
        *,
        priority: int,
        environment: dict[str, str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> str:
        env = dict(environment or {})
        keys = dict(extra or {})
        if user is not None:
            env.update(HOME=str(layout.service_home), USER=user, LOGNAME=user)
            keys["user"] = user
        if env:
            keys["environment"] = ",".join(f'{key}="{value}"' for key, value in env.items())
        return program_section(name, f"{launcher} {name}", priority=priority, extra=keys)

    return section


def program_sections(layout: StackLayout) -> list[str]:
    """Every native service, in start order."""
    sections: list[str] = []
    if layout.manages_postgres:
        host, port, _, _, _ = layout.database
        pg = postgres_bin() / "postgres"
        extra = {"user": "postgres"} if running_as_root() else {}
        sections.append(
            program_section(
                "postgres",
                f"{pg} -D {layout.pgdata} -p {port} -k {layout.pg_socket_dir}"
                f" -c listen_addresses={host} -c max_connections=200"
                " -c fsync=on -c shared_buffers=128MB",
                priority=10,
                extra={**extra, "stopsignal": "INT"},
            )
        )
    if layout.manages_redis:
        sections.append(
            program_section(
                "redis", f"redis-server {layout.redis_conf}", priority=10, extra=unprivileged()
            )
        )
    python = _python_program(layout)
    sections.append(
        python(
            "webhooks",
            priority=20,
            # Loopback only, whatever .env says: nginx is the apps' one way in.
            environment={
                "WEBHOOKS_BIND_HOST": "127.0.0.1",
                "PROMETHEUS_MULTIPROC_DIR": str(layout.metrics_dir / "webhooks"),
            },
        )
    )
    sections.append(
        python(
            "crm-ui",
            priority=20,
            environment={
                "CRM_BIND_HOST": "127.0.0.1",
                "PROMETHEUS_MULTIPROC_DIR": str(layout.metrics_dir / "crm-ui"),
            },
        )
    )
    if sink_address(layout.settings) is not None:
        # Development: email goes to .eml files under MAIL_DIR, never to a real mailbox.
        sections.append(python("mail-sink", priority=20))
    if rest.uses_simulator(layout.settings):
        # No real Twilio credentials in development: SMS/WhatsApp alerts go here instead.
        sections.append(python("twilio-sim", priority=20))
    sections.append(
        python(
            "transcriber",
            priority=30,
            environment={"PROMETHEUS_MULTIPROC_DIR": str(layout.metrics_dir / "transcriber")},
            extra={
                # Only the pool gets SIGTERM: it lets each worker finish its job, then exits.
                "stopasgroup": "false",
                "stopwaitsecs": "60",
                "startsecs": "5",
            },
        )
    )
    sections.append(python("reconciler", priority=30))
    sections.append(python("notifier", priority=30))
    sections.append(
        program_section(
            "nginx",
            f"nginx -c {layout.nginx_conf} -g 'daemon off;'",
            priority=40,
        )
    )
    sections += monitoring_programs(layout)
    return sections


def prepare_dirs(layout: StackLayout) -> None:
    settings = layout.settings
    ensure_service_account()
    for directory in (
        layout.run_dir,
        layout.log_dir,
        layout.redis_dir,
        layout.nginx_run_dir,
        layout.metrics_dir,
        layout.service_home,
        settings.spool_dir,
        settings.last_known_answers_dir,
        models_root(layout.state_dir),
    ):
        directory.mkdir(parents=True, exist_ok=True)
    # Only Moked reads these: the spool and the last answers (callers' numbers and words),
    # the development sink's mail, the services' metrics and HOME.
    for private in (
        settings.spool_dir,
        settings.last_known_answers_dir,
        settings.mail_dir,
        layout.metrics_dir,
        layout.service_home,
    ):
        private.mkdir(parents=True, exist_ok=True)
        private.chmod(0o700)
    # Greetings are public (Twilio fetches them through nginx, whose workers are nobody).
    settings.greetings_dir.mkdir(parents=True, exist_ok=True)
    settings.greetings_dir.chmod(0o755)
    layout.state_dir.chmod(0o755)
    layout.run_dir.chmod(0o755)
    # Recordings and logs: the shared group reads (nginx's workers serve recordings through
    # the CRM's X-Accel-Redirect; the notifier attaches them; the reconciler replays
    # nginx's fallback log); no other local user does.
    group = shared_group()
    share_privately(settings.recordings_dir, group)
    share_privately(layout.log_dir, group)
    fallback = settings.nginx_fallback_log
    if fallback.parent != layout.log_dir and fallback.exists():
        os.chown(fallback, -1, group)
        fallback.chmod(PRIVATE_FILE_MODE)
    # Redis runs as the unprivileged user when the stack runs as root (its config: render).
    own_state(layout.redis_dir)
    if python_services_user() is not None:
        # So do the Python services: what they write is theirs, whatever root (an earlier
        # version, the operator's commands) left there. supervisord and nginx's master
        # (root) still open the logs; the reconciler keeps its offset beside them.
        own_state(
            settings.spool_dir,
            settings.last_known_answers_dir,
            settings.mail_dir,
            settings.greetings_dir,
            settings.recordings_dir,
            layout.log_dir,
            layout.metrics_dir,
            layout.service_home,
            models_root(layout.state_dir),
        )
    if running_as_root():
        shutil.chown(layout.nginx_run_dir, "nobody")
        if layout.manages_postgres:
            layout.pg_socket_dir.mkdir(exist_ok=True)
            shutil.chown(layout.pg_socket_dir, "postgres")
    else:
        layout.pg_socket_dir.mkdir(exist_ok=True)
    if layout.pg_socket_dir.exists():
        layout.pg_socket_dir.chmod(0o700)
