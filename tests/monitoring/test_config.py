"""The monitoring configuration is valid: promtool, amtool, and the native rendering."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from moked.stack import monitoring
from moked.stack.config import StackLayout, program_sections
from tests.harness import make_test_settings
from tests.monitoring.promql import RULE_TESTS_DIR, rule_files

ALERTMANAGER_DIR = monitoring.MONITORING_DIR / "alertmanager"


@pytest.fixture(autouse=True)
def _tools() -> None:
    """Fail, not skip: `make test` installs them (scripts/bootstrap) and CI must run these."""
    for tool in ("promtool", "amtool"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing: run `make install` (Debian prometheus packages)")


def run(*command: str | Path) -> str:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout}{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture
def layout(tmp_path: Path) -> StackLayout:
    settings = make_test_settings(tmp_path)
    return StackLayout(settings=settings, state_dir=tmp_path)


def test_the_docker_prometheus_config_is_valid_as_it_is():
    output = run("promtool", "check", "config", monitoring.PROMETHEUS_CONFIG)
    for path in rule_files():
        assert path.name in output  # every rule file is loaded through rule_files


def test_rules_are_valid():
    run("promtool", "check", "rules", *rule_files())


def test_every_rule_passes_its_unit_tests():
    tests = sorted(RULE_TESTS_DIR.glob("*_test.yml"))
    assert tests
    output = run("promtool", "test", "rules", *tests)
    assert output.count("SUCCESS") == len(tests)


def test_the_native_config_is_valid_and_differs_only_in_intervals_and_paths(layout: StackLayout):
    sections = program_sections(layout)
    monitoring.render_prometheus(layout, sections)
    rendered = monitoring.prometheus_dir(layout) / "prometheus.yml"
    run("promtool", "check", "config", rendered)

    native = yaml.safe_load(rendered.read_text(encoding="utf-8"))
    docker = yaml.safe_load(monitoring.PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert native["global"]["scrape_interval"] == "2s"
    assert native["global"]["evaluation_interval"] == "2s"
    assert native["global"]["scrape_timeout"] == "2s"
    assert native["rule_files"] == [str(monitoring.RULES_DIR / "*.yml")]
    for key in ("global", "rule_files"):
        native.pop(key), docker.pop(key)
    assert native == docker


def test_native_targets_follow_the_programs_the_stack_runs(layout: StackLayout):
    settings = layout.settings
    programs = monitoring.program_names(program_sections(layout))
    assert {"prometheus", "alertmanager", "nginx-exporter", "postgres-exporter"} <= set(programs)
    assert "redis-exporter" in programs

    targets = monitoring.native_targets(settings, programs)
    assert set(targets) == set(monitoring.SCRAPE_JOBS)
    assert targets["webhooks"] == [f"127.0.0.1:{settings.webhooks_port}"]
    assert targets["reconciler"] == [f"127.0.0.1:{settings.reconciler_metrics_port}"]
    assert targets["postgres"] == [f"127.0.0.1:{settings.postgres_exporter_port}"]
    without_crm = monitoring.native_targets(settings, [p for p in programs if p != "crm-ui"])
    assert without_crm["crm-ui"] == []  # not run, not scraped: no permanently "down" target
    assert monitoring.native_targets(settings, ["transcriber-0"])["transcriber"]

    monitoring.render_prometheus(layout, program_sections(layout))
    written = yaml.safe_load(
        (monitoring.prometheus_dir(layout) / "targets" / "webhooks.yml").read_text()
    )
    assert written == [{"targets": [f"127.0.0.1:{settings.webhooks_port}"]}]


def test_every_job_has_a_docker_target_file():
    for job in monitoring.SCRAPE_JOBS:
        groups = yaml.safe_load(
            (monitoring.PROMETHEUS_CONFIG.parent / "targets" / f"{job}.yml").read_text()
        )
        assert groups and groups[0]["targets"], job


def test_postgres_exporter_gets_the_app_database_without_its_password_on_a_command_line(
    layout: StackLayout,
):
    env = monitoring.postgres_exporter_env(layout)
    host, port, user, password, name = layout.database
    assert env["DATA_SOURCE_URI"] == f"{host}:{port}/{name}?sslmode=disable"
    assert env["DATA_SOURCE_USER"] == user
    monitoring.write_exporter_secrets(layout)
    secret = Path(env["DATA_SOURCE_PASS_FILE"])
    assert secret.read_text() == password
    assert secret.stat().st_mode & 0o777 == 0o600
    assert password not in "".join(program_sections(layout))


def test_alertmanager_config_is_valid_and_routes_by_severity(layout: StackLayout):
    monitoring.render_alertmanager(layout)
    config = monitoring.alertmanager_dir(layout) / "alertmanager.yml"
    assert config.stat().st_mode & 0o777 == 0o600  # may hold the SMTP password
    run("amtool", "check-config", config)
    for labels, receiver in (
        (["severity=critical", "service=twilio"], "pager"),
        (["severity=warning", "service=webhooks"], "email"),
        (["severity=info"], "null"),
        (["alertname=Unlabelled"], "email"),
    ):
        output = run("amtool", "config", "routes", "test", f"--config.file={config}", *labels)
        assert output.splitlines()[0].strip() == receiver, (labels, output)
    rendered = yaml.safe_load(config.read_text())
    pager = next(r for r in rendered["receivers"] if r["name"] == "pager")
    assert pager["webhook_configs"][0]["url"] == layout.settings.alert_webhook_url
    assert pager["email_configs"][0]["to"] == layout.settings.alert_email_to


def test_docker_entrypoint_renders_exactly_what_the_native_stack_renders(tmp_path: Path):
    values = {
        "ALERT_EMAIL_TO": "oncall@example.org",
        "ALERT_EMAIL_FROM": "moked@example.org",
        "ALERT_SMTP_SMARTHOST": "smtp.example.org:587",
        "ALERT_SMTP_USERNAME": "moked",
        "ALERT_SMTP_PASSWORD": 'it\'s $ecret & ${NOT_A_VAR} \\ "quoted"',
        "ALERT_SMTP_REQUIRE_TLS": "true",
        "ALERT_WEBHOOK_URL": "https://hooks.example.org/moked?token=a&b=c",
    }
    native = monitoring.render_alertmanager_template(
        monitoring.ALERTMANAGER_TEMPLATE.read_text(encoding="utf-8"), values
    )
    env = {"PATH": os.environ["PATH"], "ALERTMANAGER_CONFIG": str(tmp_path / "am.yml"), **values}
    result = subprocess.run(
        ["sh", str(ALERTMANAGER_DIR / "entrypoint.sh"), "--render-only"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == native
    parsed = yaml.safe_load(native)
    assert parsed["global"]["smtp_auth_password"] == values["ALERT_SMTP_PASSWORD"]
    assert parsed["global"]["smtp_require_tls"] is True
    run("amtool", "check-config", tmp_path / "am.yml")

    del env["ALERT_WEBHOOK_URL"]
    missing = subprocess.run(
        ["sh", str(ALERTMANAGER_DIR / "entrypoint.sh"), "--render-only"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert missing.returncode != 0
    assert "ALERT_WEBHOOK_URL is not set" in missing.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"alert_webhook_url": "ftp://x"}, "ALERT_WEBHOOK_URL"),
        ({"alert_email_to": "nobody"}, "ALERT_EMAIL_TO"),
        ({"alert_email_from": "x@y\nz: 1"}, "one line"),
    ],
)
def test_bad_alerting_settings_are_refused(tmp_path: Path, override: dict[str, str], message: str):
    settings = make_test_settings(tmp_path, **override)
    with pytest.raises(ValueError, match=message):
        monitoring.alertmanager_config(settings)


def test_a_redis_password_reaches_the_exporter_through_a_private_file(tmp_path: Path):
    settings = make_test_settings(tmp_path, redis_url="redis://:p%40ss@10.0.0.5:6380/0")
    layout = StackLayout(settings=settings, state_dir=tmp_path)
    args = monitoring.redis_exporter_args(layout)
    assert "-redis.addr=redis://10.0.0.5:6380" in args
    assert "p%40ss" not in "".join(program_sections(layout)) and "p@ss" not in args
    monitoring.write_exporter_secrets(layout)
    secret = monitoring.redis_password_file(layout)
    assert json.loads(secret.read_text()) == {"redis://10.0.0.5:6380": "p@ss"}
    assert secret.stat().st_mode & 0o777 == 0o600
