"""`moked user add`, `moked token create` and the demo admin `make up` prints: the real
console script in a subprocess; what it printed is then tried on the CRM in-process."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from moked.accounts import Role, add_user
from moked.cli import DEMO_ADMIN_EMAIL, DEMO_ADMIN_FILE, seed_demo, seed_demo_admin
from moked.db.models import Business
from moked.db.session import session_scope
from moked.settings import ENV_FILE_VARIABLE
from tests.harness import StackUnderTest

MOKED = str(Path(sys.executable).parent / "moked")


def moked(stack: StackUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, ENV_FILE_VARIABLE: str(stack.layout.env_file)}
    return subprocess.run(
        [MOKED, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def signs_in(crm_app: Flask, email: str, password: str) -> bool:
    """A fresh browser session on the CRM: does the password open it?"""
    answer = crm_app.test_client().post("/login", data={"email": email, "password": password})
    return answer.status_code == 302


def test_user_add_prints_a_generated_password_that_signs_in(
    stack: StackUnderTest, crm_app: Flask, make_business: Callable[..., Business]
) -> None:
    business = make_business(name=f"CLI {secrets.token_hex(3)}").name
    email = f"new-{secrets.token_hex(3)}@alpha.test"
    result = moked(
        stack, "user", "add", "--email", email, "--business", business, "--role", "staff"
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"password: (\S+)", result.stdout)
    assert match, result.stdout
    assert signs_in(crm_app, email, match.group(1))

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
    assert signs_in(crm_app, email, "another-secret-1")
    assert not signs_in(crm_app, email, match.group(1))
    orphan = moked(stack, "user", "add", "--email", f"x-{email}", "--role", "staff")
    assert orphan.returncode == 1 and "business" in orphan.stderr
    unknown = moked(stack, "user", "add", "--email", f"y-{email}", "--business", "no such business")
    assert unknown.returncode == 1


def test_token_create_prints_a_working_token(
    stack: StackUnderTest, crm_app: Flask, make_business: Callable[..., Business]
) -> None:
    business = make_business(name=f"CLI {secrets.token_hex(3)}")
    email = f"staff-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(session, email, role=Role.STAFF, business=business.name, password="x" * 16)
    result = moked(stack, "token", "create", "--email", email)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("mk_")
    api = crm_app.test_client()
    assert api.get("/api/v1/calls", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert api.get("/api/v1/calls", headers={"Authorization": "Bearer mk_x"}).status_code == 401
    assert moked(stack, "token", "create", "--email", "nobody@nowhere.test").returncode == 1


def test_demo_admin_is_created_once_and_shown_again(stack: StackUnderTest, crm_app: Flask) -> None:
    settings = stack.settings
    seed_demo(settings)
    first = seed_demo_admin(settings)
    second = seed_demo_admin(settings)
    assert first == second
    assert DEMO_ADMIN_EMAIL in first[0]
    kept = settings.state_dir / DEMO_ADMIN_FILE
    assert kept.stat().st_mode & 0o077 == 0
    email, password = kept.read_text(encoding="utf-8").split()
    assert signs_in(crm_app, email, password)
