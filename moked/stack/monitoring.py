"""Prometheus, Alertmanager and the exporters in the native stack, from `monitoring/`.

`monitoring/` is one file set for Docker and for the native stack:

- `prometheus/prometheus.yml` is valid as it is. It finds its targets in
  `prometheus/targets/*.yml` (file_sd) and its rules in `prometheus/rules/*.yml`, both
  relative to itself. Docker mounts the folder unchanged; its target files name the compose
  services.
- Natively, `render_prometheus` writes `run/prometheus/prometheus.yml`: the same document
  with only the intervals (PROMETHEUS_SCRAPE_INTERVAL) and the rule path changed, and
  `run/prometheus/targets/*.yml` with the loopback port of every program this stack runs
  (an empty list for a service it does not run, so no target is "down" for nothing).
- `alertmanager/alertmanager.yml` is a template: `${ALERT_...}` comes from the environment.
  Natively it is rendered here; in Docker by `monitoring/alertmanager/entrypoint.sh`. Both
  quote values the same way (YAML single quotes) and the tests check they agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml

from moked.settings import Settings, to_env
from moked.stack.layout import REPO_ROOT, StackLayout, own_state, program_section, unprivileged

MONITORING_DIR = REPO_ROOT / "monitoring"
PROMETHEUS_CONFIG = MONITORING_DIR / "prometheus" / "prometheus.yml"
RULES_DIR = MONITORING_DIR / "prometheus" / "rules"
ALERTMANAGER_TEMPLATE = MONITORING_DIR / "alertmanager" / "alertmanager.yml"

ALERTMANAGER_VARIABLES = (
    "ALERT_EMAIL_TO",
    "ALERT_EMAIL_FROM",
    "ALERT_SMTP_SMARTHOST",
    "ALERT_SMTP_USERNAME",
    "ALERT_SMTP_PASSWORD",
    "ALERT_SMTP_REQUIRE_TLS",
    "ALERT_WEBHOOK_URL",
)
"""Every ${NAME} in the Alertmanager template (documented in .env.example)."""

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PROGRAM_NAME = re.compile(r"^\[program:([^\]]+)\]", re.MULTILINE)
_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DEFAULT_SCRAPE_TIMEOUT_SECONDS = 10.0


def prometheus_dir(layout: StackLayout) -> Path:
    return layout.run_dir / "prometheus"


def alertmanager_dir(layout: StackLayout) -> Path:
    return layout.run_dir / "alertmanager"


def postgres_password_file(layout: StackLayout) -> Path:
    return layout.run_dir / "postgres-exporter.password"


def redis_password_file(layout: StackLayout) -> Path:
    return layout.run_dir / "redis-exporter.passwords.json"


# --- targets ----------------------------------------------------------------------------

Port = Callable[[Settings], int]

SCRAPE_JOBS: dict[str, tuple[tuple[str, ...], Port]] = {
    # job: (supervisord programs that serve it, first match wins; the port it listens on)
    "prometheus": (("prometheus",), lambda s: s.prometheus_port),
    "alertmanager": (("alertmanager",), lambda s: s.alertmanager_port),
    "webhooks": (("webhooks",), lambda s: s.webhooks_port),
    "crm-ui": (("crm-ui", "crm"), lambda s: s.crm_port),
    "transcriber": (("transcriber",), lambda s: s.transcriber_metrics_port),
    "reconciler": (("reconciler",), lambda s: s.reconciler_metrics_port),
    "notifier": (("notifier",), lambda s: s.notifier_metrics_port),
    "nginx": (("nginx-exporter",), lambda s: s.nginx_exporter_port),
    "postgres": (("postgres-exporter",), lambda s: s.postgres_exporter_port),
    "redis": (("redis-exporter",), lambda s: s.redis_exporter_port),
}
"""Every job of prometheus.yml, and how the native stack finds its target."""


def program_names(sections: Iterable[str]) -> list[str]:
    """The supervisord program names in rendered `[program:NAME]` sections."""
    return [match for section in sections for match in _PROGRAM_NAME.findall(section)]


def _runs(programs: Iterable[str], wanted: tuple[str, ...]) -> bool:
    names = set(programs)
    return any(
        name == want or name.startswith(want + "-") or name.startswith(want + "_")
        for want in wanted
        for name in names
    )


def native_targets(settings: Settings, programs: Iterable[str]) -> dict[str, list[str]]:
    """job -> ["127.0.0.1:port"] for every job whose program this stack runs, else []."""
    programs = list(programs)
    return {
        job: [f"127.0.0.1:{port(settings)}"] if _runs(programs, wanted) else []
        for job, (wanted, port) in SCRAPE_JOBS.items()
    }


# --- prometheus.yml ---------------------------------------------------------------------


def duration_seconds(value: str) -> float:
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a Prometheus duration: {value!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _duration(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{round(seconds * 1000)}ms"


def prometheus_config(settings: Settings, *, source: Path = PROMETHEUS_CONFIG) -> str:
    """The repository's prometheus.yml with the native intervals and rule path."""
    document: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    interval = settings.prometheus_scrape_interval
    timeout = DEFAULT_SCRAPE_TIMEOUT_SECONDS
    if duration_seconds(interval) < timeout:
        timeout = duration_seconds(interval)
    document["global"].update(
        {
            "scrape_interval": interval,
            "scrape_timeout": _duration(timeout),
            "evaluation_interval": interval,
        }
    )
    document["rule_files"] = [
        str(source.parent / pattern) if not Path(pattern).is_absolute() else pattern
        for pattern in document.get("rule_files", [])
    ]
    header = f"# Rendered by moked.stack.monitoring from {source}; edit that file, not this one.\n"
    return header + str(yaml.safe_dump(document, sort_keys=False, default_flow_style=False))


def target_file(targets: list[str], job: str) -> str:
    groups = [{"targets": targets}] if targets else []
    return f"# {job}: written by the native stack runner\n" + str(yaml.safe_dump(groups))


def _write_if_changed(path: Path, content: str, mode: int = 0o644) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.chmod(mode)
    tmp.replace(path)  # atomic: Prometheus watches target files and must never read half
    return True


def render_prometheus(layout: StackLayout, sections: Iterable[str]) -> bool:
    """Write the native prometheus.yml and target files; True when prometheus.yml changed."""
    directory = prometheus_dir(layout)
    changed = _write_if_changed(directory / "prometheus.yml", prometheus_config(layout.settings))
    for job, targets in native_targets(layout.settings, program_names(sections)).items():
        _write_if_changed(directory / "targets" / f"{job}.yml", target_file(targets, job))
    return changed


# --- alertmanager.yml -------------------------------------------------------------------


def yaml_single_quoted(value: str) -> str:
    """The inside of a YAML single-quoted scalar (the template supplies the quotes)."""
    if any(ch in value for ch in "\r\n"):
        raise ValueError("alerting settings must be one line")
    return value.replace("'", "''")


def alertmanager_variables(settings: Settings) -> dict[str, str]:
    env = to_env(settings)
    values = {name: env[name] for name in ALERTMANAGER_VARIABLES}
    url = urlsplit(values["ALERT_WEBHOOK_URL"])
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError("ALERT_WEBHOOK_URL must be an http(s) URL")
    if "@" not in values["ALERT_EMAIL_TO"] or "@" not in values["ALERT_EMAIL_FROM"]:
        raise ValueError("ALERT_EMAIL_TO and ALERT_EMAIL_FROM must be email addresses")
    if values["ALERT_SMTP_REQUIRE_TLS"] not in ("true", "false"):
        raise ValueError("ALERT_SMTP_REQUIRE_TLS must be true or false")
    return values


def render_alertmanager_template(template: str, values: dict[str, str]) -> str:
    """Replace every ${NAME}, exactly as entrypoint.sh does; any other text is left alone."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"alertmanager template: {name} has no value")
        return yaml_single_quoted(values[name])

    return _PLACEHOLDER.sub(value, template)


def alertmanager_config(settings: Settings) -> str:
    template = ALERTMANAGER_TEMPLATE.read_text(encoding="utf-8")
    return render_alertmanager_template(template, alertmanager_variables(settings))


def render_alertmanager(layout: StackLayout) -> bool:
    # 0600: it may hold the SMTP password; Alertmanager's own user reads it.
    path = alertmanager_dir(layout) / "alertmanager.yml"
    changed = _write_if_changed(path, alertmanager_config(layout.settings), mode=0o600)
    own_state(path)
    return changed


# --- exporters --------------------------------------------------------------------------


def postgres_exporter_env(layout: StackLayout) -> dict[str, str]:
    """postgres_exporter's connection: the app's DATABASE_URL, password in a 0600 file."""
    parts = urlsplit(layout.settings.database_url)
    host, port, user, _password, name = layout.database
    query = parts.query or ("sslmode=disable" if layout.manages_postgres else "")
    uri = urlunsplit(("", f"{host}:{port}", f"/{name}", query, "")).removeprefix("//")
    return {
        "DATA_SOURCE_URI": uri,
        "DATA_SOURCE_USER": unquote(user),
        "DATA_SOURCE_PASS_FILE": str(postgres_password_file(layout)),
    }


def _redis_address(settings: Settings) -> str:
    url = urlsplit(settings.redis_url)
    scheme = "rediss" if url.scheme == "rediss" else "redis"
    return f"{scheme}://{url.hostname or '127.0.0.1'}:{url.port or 6379}"


def redis_exporter_args(layout: StackLayout) -> str:
    """redis_exporter's flags: REDIS_URL's address; its password (if any) in a 0600 file."""
    url = urlsplit(layout.settings.redis_url)
    args = f" -redis.addr={_redis_address(layout.settings)}"
    if url.username:
        args += f" -redis.user={unquote(url.username)}"
    if url.password:
        args += f" -redis.password-file={redis_password_file(layout)}"
    return args


def write_exporter_secrets(layout: StackLayout) -> None:
    """The exporters' passwords, readable by their own user only, never on a command line."""
    _, _, _, password, _ = layout.database
    _write_if_changed(postgres_password_file(layout), unquote(password), mode=0o600)
    redis_password = urlsplit(layout.settings.redis_url).password
    if redis_password:
        passwords = {_redis_address(layout.settings): unquote(redis_password)}
        _write_if_changed(redis_password_file(layout), json.dumps(passwords), mode=0o600)
    own_state(postgres_password_file(layout), redis_password_file(layout))


def prometheus_data(layout: StackLayout) -> Path:
    return layout.state_dir / "prometheus"


def alertmanager_data(layout: StackLayout) -> Path:
    return layout.state_dir / "alertmanager"


def prepare_data_dirs(layout: StackLayout) -> None:
    """Prometheus's and Alertmanager's storage, their own user's (the stack's, or `moked`
    when it runs as root): made here, since neither may write the state directory."""
    for directory in (prometheus_data(layout), alertmanager_data(layout)):
        directory.mkdir(parents=True, exist_ok=True)
        own_state(directory)


def _environment(values: dict[str, str]) -> str:
    for value in values.values():
        if any(ch in value for ch in '"%,\n'):
            raise ValueError(f"cannot pass {value!r} through supervisord's environment")
    return ",".join(f'{key}="{value}"' for key, value in values.items())


def monitoring_programs(layout: StackLayout) -> list[str]:
    """supervisord programs: the three exporters, Prometheus and Alertmanager (loopback)."""
    settings = layout.settings
    # Root is not needed by any of them: as root, the stack runs them as `moked`.
    user = unprivileged()
    return [
        program_section(
            "nginx-exporter",
            "prometheus-nginx-exporter"
            f" -nginx.scrape-uri=http://127.0.0.1:{settings.http_port}/nginx_status"
            f" -web.listen-address=127.0.0.1:{settings.nginx_exporter_port}"
            " -nginx.retries=30 -nginx.retry-interval=1s",
            priority=45,
            extra=user,
        ),
        program_section(
            "postgres-exporter",
            "prometheus-postgres-exporter"
            f" --web.listen-address=127.0.0.1:{settings.postgres_exporter_port}"
            " --disable-settings-metrics",
            priority=45,
            extra={**user, "environment": _environment(postgres_exporter_env(layout))},
        ),
        program_section(
            "redis-exporter",
            "prometheus-redis-exporter"
            + redis_exporter_args(layout)
            + f" -web.listen-address=127.0.0.1:{settings.redis_exporter_port}",
            priority=45,
            extra=user,
        ),
        program_section(
            "alertmanager",
            "prometheus-alertmanager"
            f" --config.file={alertmanager_dir(layout) / 'alertmanager.yml'}"
            f" --storage.path={alertmanager_data(layout)}"
            f" --web.listen-address=127.0.0.1:{settings.alertmanager_port}"
            f" --web.external-url=http://127.0.0.1:{settings.alertmanager_port}/"
            # No gossip port: a single Alertmanager, and two stacks must not collide on 9094.
            " --cluster.listen-address=",
            priority=50,
            extra=user,
        ),
        program_section(
            "prometheus",
            "prometheus"
            f" --config.file={prometheus_dir(layout) / 'prometheus.yml'}"
            f" --storage.tsdb.path={prometheus_data(layout)}"
            f" --storage.tsdb.retention.time={settings.prometheus_retention}"
            f" --web.listen-address=127.0.0.1:{settings.prometheus_port}"
            f" --web.external-url=http://127.0.0.1:{settings.prometheus_port}/",
            priority=50,
            extra=user,
        ),
    ]
