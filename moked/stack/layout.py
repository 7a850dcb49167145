"""Where one native stack lives, and how supervisord is told to run one of its programs.

The lowest module of `moked.stack`: `config` (the services and their files) and
`monitoring` (Prometheus, Alertmanager, the exporters) both build on it, and it imports
neither of them.
"""

from __future__ import annotations

import functools
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from moked.ownership import SERVICE_ACCOUNT as SERVICE_ACCOUNT
from moked.ownership import hand_over_tree, service_ids
from moked.ownership import running_as_root as running_as_root
from moked.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE_LAUNCHER = REPO_ROOT / "scripts" / "run-service"


def unprivileged() -> dict[str, str]:
    """supervisord keys that run a program as the `moked` user when the stack runs as root;
    nothing otherwise (it runs as the invoking user). Its files: `own_state`."""
    return {"user": SERVICE_ACCOUNT} if running_as_root() else {}


def own_state(*paths: Path) -> None:
    """As root: hand these files and directories (recursively) to the `moked` user, whose
    programs write them; idempotent, so state made by root in earlier versions is fixed."""
    hand_over_tree(*paths)


def _as_service_account(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", SERVICE_ACCOUNT, "--", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO_ROOT,
    )


@functools.cache
def python_unreachable_because(interpreter: Path) -> str | None:
    """Why `moked` cannot run this checkout's Python services with `interpreter`, and what
    to do; None when it can. It must read the repository (not a clone under /root) and
    exec the interpreter (not one under /root, like pyenv's)."""
    try:
        if _as_service_account("test", "-x", str(SERVICE_LAUNCHER)).returncode != 0:
            return (
                f"it cannot read {REPO_ROOT} (under /root?):"
                " clone Moked elsewhere and run scripts/bootstrap there"
            )
        result = _as_service_account(str(interpreter), "-c", "import moked.settings")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {interpreter} as {SERVICE_ACCOUNT}: {exc}"
    if result.returncode == 0:
        return None
    why = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    return (
        f"it cannot run {interpreter} ({why}): run scripts/bootstrap, which makes .venv"
        " on Debian's python3.11"
    )


def state_unreachable_because(state_dir: Path, *users: str) -> str | None:
    """As root: why the unprivileged users the stack runs its servers as (postgres, moked)
    cannot work in `state_dir`, with the fix; None when they can, or not root. A checkout
    under /root (0700) is the usual cause: Postgres would fail to start, saying less."""
    if not running_as_root():
        return None
    existing = state_dir  # made by the stack if missing: then its parent must be entered
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    blocked = []
    for user in users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        entered = subprocess.run(
            ["runuser", "-u", user, "--", "test", "-x", str(existing)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if entered.returncode != 0:
            blocked.append(user)
    if not blocked:
        return None
    return (
        f"{state_dir} is out of reach of {' and '.join(blocked)}, who run the database and"
        " Redis (a checkout under /root?): clone Moked where they can enter, e.g. /opt/moked,"
        " or set STATE_DIR to such a directory"
    )


def python_services_fallback() -> str | None:
    """As root, when the Python services cannot run as `moked`: a one-line warning saying
    why (they run as root then); None when they run as `moked`, or the runner is not root."""
    if service_ids() is None:
        return None
    why = python_unreachable_because(Path(sys.executable))
    if why is None:
        return None
    return f"Moked's Python services run as root, not as {SERVICE_ACCOUNT}: {why}"


def python_services_user() -> str | None:
    """The user supervisord runs the Python services as: `moked` when root and it can run
    them, else None (the invoking user)."""
    if service_ids() is None or python_unreachable_because(Path(sys.executable)):
        return None
    return SERVICE_ACCOUNT


def is_loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class StackLayout:
    """Where everything of one native stack lives, and on which ports it listens."""

    settings: Settings
    state_dir: Path

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def pgdata(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def pg_socket_dir(self) -> Path:
        """Postgres's Unix socket: 0700, so no other local user reaches it."""
        return self.run_dir / "postgres"

    @property
    def pg_superuser_password_file(self) -> Path:
        """The cluster superuser's password (0600), made when the cluster is created: local
        connections need it too (scram-sha-256), not only a shell on the machine."""
        return self.state_dir / "postgres-superuser.secret"

    @property
    def redis_dir(self) -> Path:
        return self.state_dir / "redis"

    @property
    def nginx_run_dir(self) -> Path:
        return self.run_dir / "nginx"

    @property
    def metrics_dir(self) -> Path:
        return self.run_dir / "metrics"

    @property
    def service_home(self) -> Path:
        """HOME of the Python services when they run as `moked` (whose own is /nonexistent):
        what a library caches there (Hugging Face's hub cache, …) stays the stack's."""
        return self.state_dir / "home"

    @property
    def env_file(self) -> Path:
        return self.run_dir / "stack.env"

    @property
    def supervisord_conf(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def nginx_conf(self) -> Path:
        return self.run_dir / "nginx.conf"

    @property
    def redis_conf(self) -> Path:
        return self.run_dir / "redis.conf"

    @property
    def database(self) -> tuple[str, int, str, str, str]:
        """(host, port, user, password, database name) from DATABASE_URL."""
        parts = urlsplit(self.settings.database_url)
        return (
            parts.hostname or "127.0.0.1",
            parts.port or 5432,
            parts.username or "moked",
            parts.password or "",
            parts.path.lstrip("/") or "moked",
        )

    @property
    def redis_port(self) -> int:
        return urlsplit(self.settings.redis_url).port or 6379

    @property
    def manages_postgres(self) -> bool:
        return is_loopback(self.database[0])

    @property
    def manages_redis(self) -> bool:
        return is_loopback(urlsplit(self.settings.redis_url).hostname)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"


def program_section(
    name: str, command: str, *, priority: int, extra: dict[str, str] | None = None
) -> str:
    """One supervisord `[program:NAME]` section; `extra` adds keys or overrides defaults."""
    lines = [
        f"[program:{name}]",
        f"command={command}",
        f"priority={priority}",
        "autostart=true",
        "autorestart=true",
        "startsecs=2",
        "startretries=100",
        "stopasgroup=true",
        "killasgroup=true",
        "stopwaitsecs=15",
        "redirect_stderr=true",
        "stdout_logfile=%(here)s/../log/" + name + ".log",
        "stdout_logfile_maxbytes=20MB",
        "stdout_logfile_backups=2",
    ]
    overridden = {key for key in (extra or {})}
    lines = [line for line in lines if line.split("=", 1)[0] not in overridden]
    lines += [f"{key}={value}" for key, value in (extra or {}).items()]
    return "\n".join(lines) + "\n"
