"""docker-compose.yml: valid, complete, and consistent with .env.example and monitoring/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
VENV_BIN = Path(sys.executable).parent

LONG_RUNNING = {
    "nginx",
    "webhooks",
    "reconciler",
    "notifier",
    "transcriber",
    "crm-ui",
    "postgres",
    "redis",
    "prometheus",
    "grafana",
    "alertmanager",
    "nginx-exporter",
    "postgres-exporter",
    "redis-exporter",
}
ONE_SHOT = {"migrate", "nginx-config"}
PROFILED = {"transcriber-gpu"}
"""Started only with their profile (`--profile gpu`); `docker compose up` leaves them out."""
NO_SHELL_IMAGES = {"nginx-exporter", "redis-exporter"}
"""Their images have no shell or HTTP client: Prometheus' `up` watches them instead."""
APPS = {"webhooks", "reconciler", "notifier", "transcriber", "crm-ui"}
REQUIRED_SECRETS = {
    "PUBLIC_HOST",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "SECRET_KEY",
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "TLS_CERT_DIR",
    "SMTP_URL",  # its credentials; production refuses plain SMTP
    "MAIL_FROM",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def test_valid_against_the_compose_spec() -> None:
    result = subprocess.run(
        [VENV_BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def compose_variables(text: str) -> dict[str, str]:
    """NAME → the text after it (':?msg', ':-default', '') for every ${NAME...}."""
    found: dict[str, str] = {}
    for match in re.finditer(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", text):
        found.setdefault(match[1], match[2])
    return found


def env_example_names() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))


def compose_text_without_comments() -> str:
    return "\n".join(
        line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#")
    )


def test_every_variable_is_documented_in_env_example() -> None:
    used = set(compose_variables(compose_text_without_comments()))
    missing = sorted(used - env_example_names())
    assert not missing, f"not in .env.example: {missing}"


def test_required_secrets_stop_compose_with_a_message() -> None:
    variables = compose_variables(COMPOSE.read_text())
    for name in REQUIRED_SECRETS:
        assert variables[name].startswith(":?") and len(variables[name]) > 8, name


def test_every_service_of_the_design(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == LONG_RUNNING | ONE_SHOT | PROFILED
    assert {name for name, service in services.items() if "profiles" in service} == PROFILED


def test_always_on_with_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in LONG_RUNNING:
        service = services[name]
        assert service.get("restart") == "unless-stopped", name
        if name in NO_SHELL_IMAGES:
            assert "healthcheck" not in service
        elif name not in {"webhooks", "transcriber", "crm-ui", "nginx"}:
            assert service["healthcheck"]["test"], name  # the images above have HEALTHCHECK
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no"


def test_apps_wait_for_the_migration(services: dict[str, dict[str, Any]]) -> None:
    for name in APPS:
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, name
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    nginx = services["nginx"]["depends_on"]
    assert nginx["nginx-config"]["condition"] == "service_completed_successfully"
    assert nginx["webhooks"]["condition"] == "service_healthy"


def test_services_start_through_run_service(services: dict[str, dict[str, Any]]) -> None:
    for name, dockerfile in (
        ("webhooks", "services/webhooks/Dockerfile"),
        ("transcriber", "services/transcriber/Dockerfile"),
        ("crm-ui", "services/crm-ui/Dockerfile"),
        ("reconciler", "services/webhooks/Dockerfile"),
        ("notifier", "services/webhooks/Dockerfile"),
    ):
        assert services[name]["build"]["dockerfile"] == dockerfile
        assert services[name]["command"] == [name]
        text = (ROOT / dockerfile).read_text()
        assert 'ENTRYPOINT ["/app/scripts/run-service"]' in text
    run_service = (ROOT / "scripts/run-service").read_text()
    for name in APPS:
        assert f"    {name})" in run_service


def test_nginx_renders_the_one_template(services: dict[str, dict[str, Any]]) -> None:
    step = services["nginx-config"]
    assert step["entrypoint"] == ["moked"] and step["command"][0] == "render-nginx"
    assert "--template-dir=/app/nginx" in step["command"]
    ports = services["nginx"]["ports"]
    assert any(p.endswith(":8443") for p in ports) and any(p.endswith(":8080") for p in ports)
    assert any(
        v.startswith("${TLS_CERT_DIR") for v in services["nginx"]["volumes"] if isinstance(v, str)
    )


def test_data_services_are_private(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    networks = compose["networks"]
    for name in ("postgres", "redis"):
        assert "ports" not in services[name], name
        for network in services[name]["networks"]:
            assert networks[network].get("internal") is True, (name, network)
    published = {name for name, s in services.items() if "ports" in s}
    assert published == {"nginx", "grafana"}
    assert all(p.startswith("127.0.0.1:") for p in services["grafana"]["ports"])


def test_persistence(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    volumes = set(compose["volumes"])
    assert {
        "greetings",
        "recordings",
        "spool",
        "postgres-data",
        "prometheus-data",
        "grafana-data",
        "redis-data",
    } <= volumes
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_transcriber_scales(services: dict[str, dict[str, Any]]) -> None:
    transcriber = services["transcriber"]
    assert "container_name" not in transcriber and "ports" not in transcriber


def test_monitoring_files_exist_and_targets_are_services(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("prometheus", "grafana", "alertmanager"):
        for volume in services[name]["volumes"]:
            if isinstance(volume, str) and volume.startswith("./"):
                assert (ROOT / volume.split(":")[0]).exists(), volume
    targets_dir = ROOT / "monitoring" / "prometheus" / "targets"
    for path in targets_dir.glob("*.yml"):
        for group in yaml.safe_load(path.read_text()) or []:
            for target in group["targets"]:
                host = target.split(":")[0]
                assert host == "localhost" or host in services, (path.name, target)


def test_the_apps_listen_on_every_interface_in_their_containers(
    services: dict[str, dict[str, Any]],
) -> None:
    """Containers listen on every interface, on the settings' default ports (which
    tests/deploy/test_ports.py holds compose, the Dockerfiles and the targets to)."""
    every_interface = "0.0.0.0"  # noqa: S104 - inside the container, behind its networks
    assert services["webhooks"]["environment"]["WEBHOOKS_BIND_HOST"] == every_interface
    assert services["crm-ui"]["environment"]["CRM_BIND_HOST"] == every_interface
    assert services["webhooks"]["environment"]["METRICS_BIND_HOST"] == every_interface


def test_the_apps_environment_is_settings(services: dict[str, dict[str, Any]]) -> None:
    """Every variable compose gives the apps is a setting (gunicorn's included), or the
    launcher's PROMETHEUS_MULTIPROC_DIR."""
    from moked.settings import Settings

    fields = {name.upper() for name in Settings.model_fields}
    launcher = {"PROMETHEUS_MULTIPROC_DIR"}
    for name in APPS | ONE_SHOT:
        unknown = set(services[name]["environment"]) - fields - launcher
        assert not unknown, (name, sorted(unknown))


def test_the_apps_environment_loads_in_production(services: dict[str, dict[str, Any]]) -> None:
    """With real-looking values, the settings compose builds pass production validation."""
    from moked.settings import Settings, load_settings

    values = {
        "PUBLIC_HOST": "https://moked.example.com",
        "TWILIO_ACCOUNT_SID": "AC" + "1234abcd" * 4,
        "TWILIO_AUTH_TOKEN": "f" * 32,
        "SECRET_KEY": "e" * 64,
        "POSTGRES_PASSWORD": "d" * 24,
        "REDIS_PASSWORD": "c" * 24,
        "SMTP_URL": "smtp+starttls://moked:" + "b" * 24 + "@smtp.example.com:587",
        "MAIL_FROM": "Moked <moked@example.com>",
    }

    def interpolate(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name, rest = match[1], match[2]
            if name in values:
                return values[name]
            return rest[2:] if rest.startswith(":-") else ""

        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", one, text)

    env = {k: interpolate(str(v)) for k, v in services["webhooks"]["environment"].items()}
    assert env["DATABASE_URL"] == (
        "postgresql+psycopg2://moked:" + "d" * 24 + "@postgres:5432/moked"
    )
    fields = set(Settings.model_fields)
    settings = load_settings(**{k.lower(): v for k, v in env.items() if k.lower() in fields})
    assert settings.is_production and settings.public_base == "https://moked.example.com"
    assert str(settings.greetings_dir) == "/srv/moked/greetings"
    assert settings.smtp_url == values["SMTP_URL"] and settings.mail_from == values["MAIL_FROM"]


def test_the_notifier_sends_out_and_reads_recordings_only(
    services: dict[str, dict[str, Any]],
) -> None:
    """It reaches SMTP, Twilio and webhook receivers (egress), Postgres and Redis (data),
    and is scraped (monitoring); it attaches recordings to emails but never writes them."""
    notifier = services["notifier"]
    assert set(notifier["networks"]) == {"data", "monitoring", "egress"}
    assert "ports" not in notifier
    assert notifier["volumes"] == ["recordings:/srv/moked/recordings:ro"]
    assert notifier["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert "/metrics" in " ".join(notifier["healthcheck"]["test"])


def test_the_gpu_transcriber_is_the_transcriber_on_a_reserved_gpu(
    services: dict[str, dict[str, Any]],
) -> None:
    """`docker compose --profile gpu up -d --scale transcriber=0`: the same worker, the GPU
    image (Dockerfile target gpu), one NVIDIA GPU reserved, on CUDA."""
    from moked.settings import Settings

    cpu, gpu = services["transcriber"], services["transcriber-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["image"] == "moked/transcriber-gpu:${MOKED_IMAGE_TAG:-latest}"
    assert gpu["build"] == cpu["build"] | {"target": "gpu"}
    assert "target" not in cpu["build"], "the CPU image is the Dockerfile's default"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    for key in ("command", "volumes", "tmpfs", "depends_on", "restart", "logging", "cap_drop"):
        assert gpu[key] == cpu[key], key
    assert set(gpu["networks"]) == set(cpu["networks"])
    assert gpu["networks"]["monitoring"]["aliases"] == ["transcriber"], "scraped as transcriber"
    assert "container_name" not in gpu and "ports" not in gpu
    env = dict(gpu["environment"])
    assert env.pop("WHISPER_DEVICE") == "cuda"
    assert env.pop("WHISPER_COMPUTE_TYPE") == "${WHISPER_GPU_COMPUTE_TYPE:-float16}"
    assert env == {k: v for k, v in cpu["environment"].items() if k in env}
    assert set(cpu["environment"]) == set(gpu["environment"])
    assert set(gpu["environment"]) <= {name.upper() for name in Settings.model_fields} | {
        "PROMETHEUS_MULTIPROC_DIR"
    }
