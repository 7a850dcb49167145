"""A whole native stack for a test session: the same runner as `make up`, on free ports.

Also playing Twilio's part at the HTTP level: signed form posts through nginx. Test code
only, so it lives here and no image installs it; the benchmarks and `make chaos` use it
too (`python -m scripts.X` from the repository root, where `tests` is importable).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from moked.settings import ENV_FILE_VARIABLE, Settings, get_settings, load_settings
from moked.stack import native
from moked.stack.config import StackLayout
from moked.twilio.signature import SIGNATURE_HEADER, FormParams, sign

TEST_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_test_settings(state_dir: Path, **overrides: object) -> Settings:
    password = secrets.token_hex(8)
    http_port = free_port()
    values: dict[str, object] = {
        "moked_env": "development",
        "public_host": f"http://127.0.0.1:{http_port}",
        "http_port": http_port,
        "webhooks_port": free_port(),
        "crm_port": free_port(),
        "transcriber_metrics_port": free_port(),
        "reconciler_metrics_port": free_port(),
        "prometheus_port": free_port(),
        "prometheus_scrape_interval": "2s",
        "alertmanager_port": free_port(),
        "nginx_exporter_port": free_port(),
        "postgres_exporter_port": free_port(),
        "redis_exporter_port": free_port(),
        "alert_webhook_url": f"http://127.0.0.1:{free_port()}/alerts",
        "database_url": f"postgresql+psycopg2://moked:{password}@127.0.0.1:{free_port()}/moked",
        # Redis asks for a password, as in `make up` (.env.example).
        "redis_url": f"redis://:{secrets.token_hex(8)}@127.0.0.1:{free_port()}/0",
        "twilio_account_sid": TEST_ACCOUNT_SID,
        "twilio_auth_token": secrets.token_hex(16),
        # Tests never reach Twilio: the REST API points at a loopback port where nothing
        # listens (refused), unless a test starts the Twilio simulator on it for a while
        # (StackUnderTest.twilio_api_port) or passes its own mock's address.
        "twilio_api_base": f"http://127.0.0.1:{free_port()}",
        "secret_key": secrets.token_hex(32),
        "state_dir": state_dir,
        "greetings_dir": state_dir / "media" / "voice_responses",
        "recordings_dir": state_dir / "media" / "recordings",
        "spool_dir": state_dir / "spool",
        "nginx_fallback_log": state_dir / "log" / "twilio_fallback.log",
        "reconcile_interval_seconds": 1.0,
        "reconcile_stale_after_seconds": 5.0,
        # Notifications: the notifier, the mail sink and the Twilio simulator on free ports;
        # retries a second apart so a test sees three attempts in seconds.
        "notifier_metrics_port": free_port(),
        "smtp_url": f"smtp://127.0.0.1:{free_port()}",
        "mail_dir": state_dir / "mail",
        "twilio_sim_port": free_port(),
        "notify_retry_base_seconds": 1.0,
    }
    values.update(overrides)
    return load_settings(**values)


def make_state_dir(prefix: str = "moked-test-") -> Path:
    """A state directory the postgres and nobody users can traverse (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@dataclass
class StackUnderTest:
    layout: StackLayout

    @property
    def settings(self) -> Settings:
        return self.layout.settings

    @property
    def base(self) -> str:
        return self.settings.public_base

    @property
    def twilio_api_port(self) -> int:
        """Where the stack's services look for Twilio's REST API (nothing listens there
        unless a test starts the simulator on it)."""
        port = urlsplit(self.settings.twilio_api_base or "").port
        assert port is not None
        return port

    def supervisorctl(self, *args: str) -> str:
        """Run supervisorctl; after start/restart, wait until those programs answer.

        supervisord calls a program RUNNING after `startsecs`, which can be before gunicorn
        listens on a busy machine; a test must not mistake that gap for an outage.
        """
        output = native.supervisorctl(self.layout, *args, check=False)
        if args and args[0] in ("start", "restart"):
            for program in args[1:]:
                self.wait_until_serving(program)
        return output

    def wait_until_serving(self, program: str, timeout: float = 60.0) -> None:
        settings = self.settings
        probes = {
            "webhooks": f"http://127.0.0.1:{settings.webhooks_port}/healthz",
            "crm-ui": f"http://127.0.0.1:{settings.crm_port}/healthz",
            "nginx": f"{self.layout.http_url}/server/static/voice_responses/",
        }
        if program == "postgres":
            native.wait_for("postgres", lambda: _connects(settings.database_url), timeout)
        elif program == "redis":
            from moked.queue import redis_client

            native.wait_for("redis", lambda: bool(redis_client(settings.redis_url).ping()), timeout)
        elif program == "nginx":
            native.wait_for("nginx", lambda: _answers(probes["nginx"]), timeout)
        elif program in probes:
            native.wait_for(program, lambda: native.http_ok(probes[program]), timeout)

    def post(
        self,
        path: str,
        params: FormInput,
        *,
        query: str = "",
        signed: bool = True,
        signature: str | None = None,
        timeout: float = 15.0,
    ) -> requests.Response:
        """POST as Twilio does: form-encoded, signed over PUBLIC_HOST + path + query."""
        url, pairs, headers = twilio_form(
            self.settings, path, params, query=query, signed=signed, signature=signature
        )
        return requests.post(
            url, data=pairs, headers=headers, timeout=timeout, allow_redirects=False
        )


FormInput = Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]]


def twilio_form(
    settings: Settings,
    path: str,
    params: FormInput,
    *,
    query: str = "",
    signed: bool = True,
    signature: str | None = None,
) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
    """What Twilio sends for a webhook: the URL it signs (PUBLIC_HOST + path + query), the
    form's pairs (a name sent twice keeps both values) and the headers, signature included.
    Used by `StackUnderTest.post` (through nginx) and tests/apps.py (in-process)."""
    url = settings.public_base + path + (f"?{query}" if query else "")
    if isinstance(params, Mapping):
        pairs: list[tuple[str, str]] = []
        for key, value in params.items():
            values = [value] if isinstance(value, str) else list(value)
            pairs += [(key, v) for v in values]
    else:
        pairs = list(params)
    headers = {"User-Agent": "TwilioProxy/1.1"}
    if signed:
        multi: dict[str, list[str]] = {}
        for key, value in pairs:
            multi.setdefault(key, []).append(value)
        token = settings.twilio_auth_token.get_secret_value()
        headers[SIGNATURE_HEADER] = signature or sign(token, url, FormParams(multi))
    return url, pairs, headers


def _all_running(layout: StackLayout) -> bool:
    status = native.supervisorctl(layout, "status", check=False)
    states = re.findall(r"^(\S+)\s+([A-Z]+)", status, re.M)
    return bool(states) and all(state == "RUNNING" for _, state in states)


def _connects(database_url: str) -> bool:
    from sqlalchemy import create_engine, exc, pool

    engine = create_engine(
        database_url, poolclass=pool.NullPool, connect_args={"connect_timeout": 2}
    )
    try:
        with engine.connect():
            return True
    except exc.OperationalError:
        return False
    finally:
        engine.dispose()


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return True


def start_test_stack(state_dir: Path, **overrides: object) -> StackUnderTest:
    settings = make_test_settings(state_dir, **overrides)
    layout = StackLayout(settings=settings, state_dir=state_dir)
    native.start(layout)
    native.wait_healthy(layout, timeout=90)
    # The apps can answer before supervisord calls them RUNNING (startsecs): a test that
    # reads supervisord's states must not see the stack still STARTING.
    native.wait_for("every program RUNNING", lambda: _all_running(layout), timeout=60)
    os.environ[ENV_FILE_VARIABLE] = str(layout.env_file)
    get_settings.cache_clear()
    from moked.db.session import reset_engine

    reset_engine()
    return StackUnderTest(layout=layout)


def stop_test_stack(stack: StackUnderTest, *, remove: bool = True) -> None:
    native.stop(stack.layout)
    if remove:
        shutil.rmtree(stack.layout.state_dir, ignore_errors=True)
