"""Settings are validated at start-up; production refuses placeholders with one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moked.settings import ConfigurationError, Environment, load_settings

GOOD_PRODUCTION = {
    "moked_env": "production",
    "public_host": "https://moked.example.co.il",
    "twilio_account_sid": "AC" + "1f" * 16,
    "twilio_auth_token": "9c1e6a0b7d2f4e8a9c1e6a0b7d2f4e8a",
    "secret_key": "3b9f2c7d1e6a4b8c9d0e1f2a3b4c5d6e7f8091a2",
    "database_url": "postgresql+psycopg2://moked:S3cure-pass@db:5432/moked",
    "smtp_url": "smtp+starttls://alerts:S3cure-pass@smtp.example.co.il:587",
}


def test_production_accepts_real_values() -> None:
    settings = load_settings(**GOOD_PRODUCTION)
    assert settings.moked_env is Environment.PRODUCTION
    assert settings.public_url("/webhook/incoming_call") == (
        "https://moked.example.co.il/webhook/incoming_call"
    )


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"public_host": "http://moked.example.co.il"}, "PUBLIC_HOST"),
        ({"twilio_auth_token": ""}, "TWILIO_AUTH_TOKEN"),
        ({"twilio_auth_token": "change-me"}, "TWILIO_AUTH_TOKEN"),
        ({"secret_key": "change-me-please"}, "SECRET_KEY"),
        ({"twilio_account_sid": "AC00000000000000000000000000000000"}, "TWILIO_ACCOUNT_SID"),
        ({"smtp_url": "smtp://smtp.example.co.il:25"}, "SMTP_URL"),
    ],
)
def test_production_refuses_placeholders(override: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_settings(**{**GOOD_PRODUCTION, **override})
    message = str(error.value)
    assert named in message
    assert "\n" not in message


def test_public_host_must_be_an_origin() -> None:
    with pytest.raises(ConfigurationError, match="PUBLIC_HOST"):
        load_settings(public_host="https://moked.example.co.il/app")
    with pytest.raises(ConfigurationError, match="PUBLIC_HOST"):
        load_settings(public_host="moked.example.co.il")


def test_development_defaults_are_usable() -> None:
    settings = load_settings(moked_env="development", public_host="http://127.0.0.1:8080")
    assert "127.0.0.1" in settings.media_hosts
    assert settings.public_base == "http://127.0.0.1:8080"


def test_a_service_refuses_to_start_with_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {
        "PATH": "/usr/bin:/bin",
        "MOKED_ENV_FILE": str(tmp_path / "none.env"),
        "MOKED_ENV": "production",
        "PUBLIC_HOST": "http://moked.example.co.il",
    }
    result = subprocess.run(
        [sys.executable, "-m", "moked.cli", "business", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "PUBLIC_HOST must be https in production" in result.stderr
