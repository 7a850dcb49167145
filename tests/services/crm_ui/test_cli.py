"""`moked user add`, `moked token create` and the demo admin `make up` prints."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import requests

from moked.cli import DEMO_ADMIN_EMAIL, DEMO_ADMIN_FILE, seed_demo, seed_demo_admin
from moked.settings import ENV_FILE_VARIABLE
from tests.harness import StackUnderTest
from tests.services.crm_ui.conftest import Client, Tenant

MOKED = str(Path(sys.executable).parent / "moked")


def moked(stack: StackUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, ENV_FILE_VARIABLE: str(stack.layout.env_file)}
    return subprocess.run(
        [MOKED, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_user_add_prints_a_generated_password_that_signs_in(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant]
) -> None:
    email = f"new-{secrets.token_hex(3)}@alpha.test"
    business = tenants[0].business.name
    result = moked(
        stack, "user", "add", "--email", email, "--business", business, "--role", "staff"
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"password: (\S+)", result.stdout)
    assert match, result.stdout
    assert Client(stack).login(email, match.group(1)).status_code == 302

    # Again with a password: updated, nothing printed; staff without a business is refused.
    again = moked(
        stack,
        "user",
        "add",
        "--email",
        email,
        "--business",
        business,
        "--password",
        "another-secret-1",
    )
    assert again.returncode == 0 and "password:" not in again.stdout
    assert Client(stack).login(email, "another-secret-1").status_code == 302
    orphan = moked(stack, "user", "add", "--email", f"x-{email}", "--role", "staff")
    assert orphan.returncode == 1 and "business" in orphan.stderr
    unknown = moked(stack, "user", "add", "--email", f"y-{email}", "--business", "no such business")
    assert unknown.returncode == 1


def test_token_create_prints_a_working_token(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant]
) -> None:
    result = moked(stack, "token", "create", "--email", tenants[0].staff_email)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("mk_")
    response = requests.get(
        f"{stack.base}/api/v1/calls", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200
    assert moked(stack, "token", "create", "--email", "nobody@nowhere.test").returncode == 1


def test_demo_admin_is_created_once_and_shown_again(stack: StackUnderTest) -> None:
    settings = stack.settings
    seed_demo(settings)
    first = seed_demo_admin(settings)
    second = seed_demo_admin(settings)
    assert first == second
    assert DEMO_ADMIN_EMAIL in first[0]
    kept = settings.state_dir / DEMO_ADMIN_FILE
    assert kept.stat().st_mode & 0o077 == 0
    email, password = kept.read_text(encoding="utf-8").split()
    assert Client(stack).login(email, password).status_code == 302
