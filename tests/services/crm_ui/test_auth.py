"""Sessions end on the server; sign-in throttling slows guessing but locks nobody out.

Issue 13, items 3 and 4, reproduced as found, through nginx. nginx passes its
$remote_addr on and the CRM trusts exactly that hop, so a client cannot choose its
address with a header: these tests connect from other loopback addresses (127.x.y.z)
instead, as different machines would.
"""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import select

from moked.accounts import Role, add_user, create_token
from moked.db.models import ApiToken, LoginThrottle, User
from moked.db.session import session_scope
from moked.login_throttle import FREE_ACCOUNT_FAILURES
from tests.harness import StackUnderTest
from tests.moked.test_cli import moked
from tests.services.crm_ui.conftest import PASSWORD, Client, Tenant
from tests.services.crm_ui.test_browser import assert_accessible_forms, login

WRONG = "wrong-password-123"


class _FromAddress(HTTPAdapter):
    """Connects from the given local address (the whole of 127.0.0.0/8 is loopback)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def fresh_address() -> str:
    """A loopback address no other test signs in from."""
    return (
        f"127.{secrets.randbelow(200) + 50}.{secrets.randbelow(256)}.{secrets.randbelow(250) + 2}"
    )


def client_from(stack: StackUnderTest, address: str) -> Client:
    client = Client(stack)
    client.http.mount("http://", _FromAddress(address))
    return client


def new_staff(tenant: Tenant, prefix: str) -> str:
    email = f"{prefix}-{secrets.token_hex(3)}@alpha.test"
    with session_scope() as session:
        add_user(
            session, email, role=Role.STAFF, business=str(tenant.business.id), password=PASSWORD
        )
    return email


def failures(scope: str, key: str) -> int:
    with session_scope() as session:
        row = session.get(LoginThrottle, (scope, key))
        return row.failures if row is not None else 0


def guess_until_blocked(client: Client, account: Callable[[], str]) -> list[int]:
    """Wrong passwords, waiting out each block, until one lasts 3 s or more.

    Returns the Retry-After of each block; the last one is still running on return.
    """
    waits: list[int] = []
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, waits
        response = client.login(account(), WRONG)
        if response.status_code == 401:
            continue
        assert response.status_code == 429, response.status_code
        waits.append(int(response.headers["Retry-After"]))
        if waits[-1] >= 3:
            return waits
        time.sleep(waits[-1])


# --- item 3: sign-out ends the session on the server -------------------------------------


def test_a_session_cookie_copied_before_logout_opens_nothing_after(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant]
) -> None:
    email = new_staff(tenants[0], "copied")
    victim = Client(stack)
    assert victim.login(email).status_code == 302
    csrf = victim.csrf("/account")
    thief = requests.Session()
    thief.cookies.update(victim.http.cookies)  # e.g. from a shared computer's browser
    assert thief.get(stack.base + "/", allow_redirects=False, timeout=10).status_code == 200

    out = victim.post("/logout", {"csrf_token": victim.csrf("/")})
    assert out.status_code == 302

    for path in ("/", "/account", f"/businesses/{tenants[0].business.id}"):
        replay = thief.get(stack.base + path, allow_redirects=False, timeout=10)
        assert replay.status_code == 302, path
        assert replay.headers["Location"].startswith("/login"), path
    # Nor can it change anything with the CSRF token it carries.
    made = thief.post(
        stack.base + "/account/tokens",
        data={"csrf_token": csrf, "label": "stolen"},
        allow_redirects=False,
        timeout=10,
    )
    assert made.status_code == 302 and made.headers["Location"].startswith("/login")
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None
        labels = session.scalars(select(ApiToken.label).where(ApiToken.user_id == user.id))
        assert "stolen" not in list(labels)
    # Signing in again works and makes a new session; the copy stays dead.
    assert victim.login(email).status_code == 302
    assert victim.get("/").status_code == 200
    assert thief.get(stack.base + "/", allow_redirects=False, timeout=10).status_code == 302


def test_a_browser_session_copied_before_sign_out_is_dead_after(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], browser: Any
) -> None:
    email = new_staff(tenants[0], "browser")
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="he-IL")
    page = context.new_page()
    try:
        login(page, stack.base, email)
        thief = requests.Session()
        for cookie in context.cookies():
            thief.cookies.set(cookie["name"], cookie["value"])
        assert thief.get(stack.base + "/", allow_redirects=False, timeout=10).status_code == 200
        page.goto(stack.base + "/account")
        assert_accessible_forms(page)
        page.click("header form[action='/logout'] button[type=submit]")
        page.wait_for_url(re.compile(re.escape(stack.base) + r"/login"))
        assert "יצאת מהמערכת בכל המכשירים" in page.content()
    finally:
        context.close()
    replay = thief.get(stack.base + "/", allow_redirects=False, timeout=10)
    assert replay.status_code == 302 and replay.headers["Location"].startswith("/login")


def test_admin_and_cli_sign_a_user_out_everywhere(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], admin_email: str
) -> None:
    email = new_staff(tenants[0], "lost-phone")
    phone, laptop = Client(stack), Client(stack)
    assert phone.login(email).status_code == 302
    assert laptop.login(email).status_code == 302
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None
        user_id = user.id

    admin = Client(stack)
    assert admin.login(admin_email).status_code == 302
    team = admin.get(f"/businesses/{tenants[0].business.id}").text
    assert f"/users/{user_id}/signout" in team
    # Staff may not sign others out.
    refused = laptop.post(f"/users/{user_id}/signout", {"csrf_token": laptop.csrf("/account")})
    assert refused.status_code == 403
    done = admin.post(
        f"/users/{user_id}/signout",
        {"csrf_token": admin.csrf("/"), "next": f"/businesses/{tenants[0].business.id}#team"},
    )
    assert done.status_code == 302
    assert done.headers["Location"] == f"/businesses/{tenants[0].business.id}#team"
    assert phone.get("/").status_code == 302
    assert laptop.get("/").status_code == 302
    assert admin.get("/").status_code == 200  # the admin's own session goes on

    # The same from the command line.
    assert phone.login(email).status_code == 302
    result = moked(stack, "user", "signout", email)
    assert result.returncode == 0, result.stderr
    assert email in result.stdout
    assert phone.get("/").status_code == 302
    missing = moked(stack, "user", "signout", "nobody@nowhere.test")
    assert missing.returncode == 1 and "no user" in missing.stderr
    # API tokens are not sessions: they keep working until revoked.
    token = _token(email)
    api = requests.get(
        stack.base + "/api/v1/calls", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert api.status_code == 200


def _token(email: str) -> str:
    with session_scope() as session:
        return create_token(session, email, label="signout-test")


# --- item 4: throttling per address and per account --------------------------------------


def test_parallel_guesses_cannot_pass_the_limit_and_the_owner_still_signs_in(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant]
) -> None:
    email = new_staff(tenants[0], "victim")
    attacker_address = fresh_address()
    guesses = 24
    attackers = [client_from(stack, attacker_address) for _ in range(guesses)]
    tokens = [a.csrf("/login") for a in attackers]
    start = threading.Barrier(guesses + 1)
    statuses: list[int] = []

    def guess(client: Client, token: str) -> None:
        start.wait()
        response = client.http.post(
            client.base + "/login",
            data={"csrf_token": token, "email": email, "password": WRONG},
            timeout=30,
            allow_redirects=False,
        )
        statuses.append(response.status_code)

    threads = [
        threading.Thread(target=guess, args=pair) for pair in zip(attackers, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began

    assert sorted(set(statuses)) == [401, 429], statuses
    checked = statuses.count(401)
    # The free failures, then one more each time a block (1 s, 2 s, 4 s …) has run out.
    allowed = FREE_ACCOUNT_FAILURES + math.floor(math.log2(elapsed + 1))
    assert checked <= allowed, (checked, elapsed)
    # Every checked password was counted, each exactly once.
    assert failures("account", email) == checked
    assert failures("address", attacker_address) == checked

    # The owner, from an address that has not been failing, signs in during the attack.
    owner = client_from(stack, fresh_address())
    assert owner.login(email).status_code == 302
    assert owner.get("/").status_code == 200

    # The attacker keeps guessing: each new block is longer than the last.
    waits = guess_until_blocked(attackers[0], lambda: email)
    assert waits == sorted(set(waits)), waits
    # Even the right password is refused from the failing address, with when to retry.
    blocked = attackers[0].login(email)
    assert blocked.status_code == 429
    retry = int(blocked.headers["Retry-After"])
    assert 1 <= retry <= waits[-1]
    assert re.search(r"נסו שוב בעוד \d+ שניות", blocked.text), blocked.text
    # … while another fresh address still gets in.
    assert client_from(stack, fresh_address()).login(email).status_code == 302


def test_an_address_that_keeps_failing_is_slowed_on_every_account(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant]
) -> None:
    address = fresh_address()
    sprayer = client_from(stack, address)

    # One guess each at many accounts (a password spray): no account reaches its limit.
    def somebody() -> str:
        return f"spray-{secrets.token_hex(3)}@alpha.test"

    results = [sprayer.login(somebody(), WRONG).status_code for _ in range(10)]
    assert results == [401] * 10
    waits = guess_until_blocked(sprayer, somebody)
    assert waits == sorted(set(waits)), waits
    assert failures("address", address) >= 11
    # Now even a real account's right password waits, from this address.
    blocked = sprayer.login(tenants[0].staff_email)
    assert blocked.status_code == 429
    assert "נסו שוב בעוד" in blocked.text
    # The account itself was not harmed: its owner signs in from elsewhere.
    assert client_from(stack, fresh_address()).login(tenants[0].staff_email).status_code == 302


def test_hostile_login_values_are_a_form_error_not_a_500(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant]
) -> None:
    client = client_from(stack, fresh_address())
    for email, password in [
        ("nul\x00@alpha.test", WRONG),
        (tenants[0].staff_email, "nul\x00password"),
        ("x" * 300 + "@alpha.test", WRONG),
        (tenants[0].staff_email, "p" * 5000),
        ("", ""),
    ]:
        response = client.login(email, password)
        assert response.status_code == 400, (email[:20], response.status_code)
        assert "הזינו כתובת דוא״ל וסיסמה תקינות" in response.text
    # None of them was counted as a guess.
    assert client.login(tenants[0].staff_email).status_code == 302
