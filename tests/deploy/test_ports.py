"""Each port is defined once: a setting's default (moked/settings.py), or for the nginx
container a default of `DockerNginx` (moked/stack/docker.py).

Python derives every other use from there. The files that cannot import Python (the
Dockerfiles, docker-compose.yml, .env.example, monitoring/prometheus/targets) write the
number; these tests hold every such literal to its source, so changing a port in one place
alone fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from moked.settings import Settings, default_port
from moked.stack.docker import DockerNginx
from moked.stack.monitoring import SCRAPE_JOBS

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = Settings.model_construct()  # every field at its default; no environment read
NGINX = DockerNginx()

APP_PORTS = {
    # compose service: (its port setting, the Dockerfile of its image or None)
    "webhooks": ("webhooks_port", "services/webhooks/Dockerfile"),
    "crm-ui": ("crm_port", "services/crm-ui/Dockerfile"),
    "transcriber": ("transcriber_metrics_port", "services/transcriber/Dockerfile"),
    "reconciler": ("reconciler_metrics_port", None),  # runs from the webhooks image
    "notifier": ("notifier_metrics_port", None),  # runs from the webhooks image
}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]  # type: ignore[no-any-return]


def url_port(text: str) -> int:
    """The port of the one http://host:port URL in `text`."""
    (url,) = re.findall(r"https?://[^\s'\"]+", text)
    port = urlsplit(url).port
    assert port is not None, url
    return port


def dockerfile(path: str) -> str:
    return (ROOT / path).read_text()


def exposed(text: str) -> set[int]:
    return {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}


def healthcheck_port(text: str) -> int:
    match = re.search(r"^HEALTHCHECK .*?\n\s+CMD (.+)$", text, re.M | re.S)
    assert match, "no HEALTHCHECK"
    return url_port(match[1].splitlines()[0])


def test_default_port_names_a_port_setting() -> None:
    assert default_port("webhooks_port") == DEFAULTS.webhooks_port
    with pytest.raises(KeyError):
        default_port("webhooks_threads")


@pytest.mark.parametrize("service", sorted(name for name, (_, f) in APP_PORTS.items() if f))
def test_each_image_exposes_and_checks_its_default_port(service: str) -> None:
    setting, path = APP_PORTS[service]
    assert path is not None
    text = dockerfile(path)
    assert exposed(text) == {default_port(setting)}, path
    assert healthcheck_port(text) == default_port(setting), path


def test_the_nginx_image_exposes_what_its_config_listens_on() -> None:
    text = dockerfile("nginx/Dockerfile")
    assert exposed(text) == {NGINX.http_port, NGINX.https_port, NGINX.status_port}
    assert healthcheck_port(text) == NGINX.status_port


def test_compose_gives_the_apps_the_default_ports(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_PORTS:
        env = services[name]["environment"]
        for _, (setting, _) in APP_PORTS.items():
            assert int(env[setting.upper()]) == default_port(setting), (name, setting)
    for service, setting in (
        ("reconciler", "reconciler_metrics_port"),
        ("notifier", "notifier_metrics_port"),
    ):
        test = services[service]["healthcheck"]["test"]
        assert url_port(" ".join(test)) == default_port(setting), service


def test_compose_reaches_monitoring_on_the_default_ports(
    services: dict[str, dict[str, Any]],
) -> None:
    env = services["webhooks"]["environment"]
    assert url_port(env["PROMETHEUS_URL"]) == default_port("prometheus_port")
    for service, setting in (
        ("prometheus", "prometheus_port"),
        ("alertmanager", "alertmanager_port"),
        ("postgres-exporter", "postgres_exporter_port"),
    ):
        test = " ".join(services[service]["healthcheck"]["test"])
        assert url_port(test) == default_port(setting), service


def test_compose_publishes_and_scrapes_nginx_where_it_listens(
    services: dict[str, dict[str, Any]],
) -> None:
    inside = {int(mapping.rsplit(":", 1)[1]) for mapping in services["nginx"]["ports"]}
    assert inside == {NGINX.http_port, NGINX.https_port}
    (scrape,) = services["nginx-exporter"]["command"]
    assert url_port(scrape) == NGINX.status_port


@pytest.mark.parametrize("job", sorted(SCRAPE_JOBS))
def test_each_prometheus_target_is_on_its_default_port(job: str) -> None:
    """The Docker target files; natively the runner writes them from the settings."""
    _, port_of = SCRAPE_JOBS[job]
    path = ROOT / "monitoring" / "prometheus" / "targets" / f"{job}.yml"
    (group,) = yaml.safe_load(path.read_text())
    (target,) = group["targets"]
    assert int(target.rsplit(":", 1)[1]) == port_of(DEFAULTS), path.name


def test_env_example_shows_every_port_setting_at_its_default() -> None:
    text = (ROOT / ".env.example").read_text()
    written = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.M))
    for name in Settings.model_fields:
        if name.endswith("_port"):
            assert int(written[name.upper()]) == default_port(name), name


def test_python_writes_the_app_ports_only_in_settings() -> None:
    """Everything installed derives them from the settings (gunicorn's bind, the Docker
    nginx upstreams, the CLI's help)."""
    ports = {default_port(setting) for setting, _ in APP_PORTS.values()}
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(str, sorted(ports))) + r")(?![\w.])")
    sources = [*ROOT.joinpath("moked").rglob("*.py"), *ROOT.joinpath("services").rglob("*.py")]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources
        if path != ROOT / "moked" / "settings.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
