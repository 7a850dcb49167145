"""Both gunicorn configs take every value from the settings, which alone read the
environment: the same names (WEBHOOKS_BIND_HOST, WEBHOOKS_PORT, WEBHOOKS_WORKERS, ...)
natively, in the images and in compose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from moked.settings import default_port, load_settings

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "webhooks": ROOT / "services" / "webhooks" / "gunicorn.conf.py",
    "crm": ROOT / "services" / "crm-ui" / "gunicorn.conf.py",
}
READ = "import json, runpy, sys; ns = runpy.run_path(sys.argv[1]); print(json.dumps({k: ns[k] for k in ('bind', 'workers', 'threads', 'accesslog')}))"  # noqa: E501


def load(config: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the config file as gunicorn does, in a clean environment plus `env`."""
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MOKED_ENV_FILE": str(tmp_path / "none.env"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", READ, str(config)],
        env=clean,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def values(config: Path, tmp_path: Path, **env: str) -> dict[str, object]:
    result = load(config, tmp_path, **env)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def test_defaults_are_loopback_on_the_default_ports(tmp_path: Path) -> None:
    cores = os.cpu_count() or 1
    assert values(CONFIGS["webhooks"], tmp_path) == {
        "bind": f"127.0.0.1:{default_port('webhooks_port')}",
        "workers": 2 * cores,
        "threads": 4,
        "accesslog": None,
    }
    assert values(CONFIGS["crm"], tmp_path) == {
        "bind": f"127.0.0.1:{default_port('crm_port')}",
        "workers": max(2, cores),
        "threads": 4,
        "accesslog": None,
    }


@pytest.mark.parametrize("service", sorted(CONFIGS))
def test_every_value_comes_from_its_setting(service: str, tmp_path: Path) -> None:
    prefix = service.upper()
    env = {
        f"{prefix}_BIND_HOST": "0.0.0.0",  # noqa: S104 - only read back, never bound
        f"{prefix}_PORT": "9555",
        f"{prefix}_WORKERS": "3",
        f"{prefix}_THREADS": "7",
        f"{prefix}_ACCESS_LOG": "-",
    }
    assert values(CONFIGS[service], tmp_path, **env) == {
        "bind": "0.0.0.0:9555",
        "workers": 3,
        "threads": 7,
        "accesslog": "-",
    }
    # The same names through the env file the native stack writes.
    env_file = tmp_path / "stack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    from_file = values(CONFIGS[service], tmp_path, MOKED_ENV_FILE=str(env_file))
    assert from_file["bind"] == "0.0.0.0:9555" and from_file["workers"] == 3


@pytest.mark.parametrize("service", sorted(CONFIGS))
def test_a_bad_value_stops_gunicorn_with_one_line(service: str, tmp_path: Path) -> None:
    result = load(CONFIGS[service], tmp_path, **{f"{service.upper()}_WORKERS": "-1"})
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"{service.upper()}_WORKERS" in result.stderr


@pytest.mark.parametrize("service", sorted(CONFIGS))
def test_the_configs_read_no_environment_themselves(service: str) -> None:
    text = CONFIGS[service].read_text()
    assert "environ" not in text and "getenv" not in text


def test_an_ipv6_host_is_bracketed() -> None:
    settings = load_settings(webhooks_bind_host="::", crm_bind_host="::1", crm_port=9556)
    assert settings.webhooks_bind == f"[::]:{settings.webhooks_port}"
    assert settings.crm_bind == "[::1]:9556"
