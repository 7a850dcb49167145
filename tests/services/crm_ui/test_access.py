"""Security of the CRM through nginx: isolation per business, CSRF, sessions, throttling."""

from __future__ import annotations

import csv
import io
import re
import secrets
from typing import Any

import pytest
import requests
from sqlalchemy import select

from moked.accounts import Role, add_user, create_token
from moked.db.models import CallTag
from moked.db.session import session_scope
from tests.harness import StackUnderTest
from tests.helpers import unique_number
from tests.services.crm_ui.conftest import PASSWORD, Client, FedCall, Tenant, feed_call


@pytest.fixture(scope="module")
def calls(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], audio_bytes: bytes
) -> tuple[FedCall, FedCall]:
    a = feed_call(stack, tenants[0], "שיחה של עסק א בלבד alpha-only", audio_bytes)
    b = feed_call(stack, tenants[1], "שיחה של עסק ב בלבד beta-only", audio_bytes)
    return a, b


def token_for(email: str) -> str:
    with session_scope() as session:
        return create_token(session, email, label="test")


def api(stack: StackUnderTest, path: str, token: str | None = None, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))
    return requests.get(stack.base + path, headers=headers, timeout=10, **kw)


def test_staff_of_a_gets_404_for_everything_of_b(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    calls: tuple[FedCall, FedCall],
    client: Client,
) -> None:
    a, b = calls
    assert client.login(tenants[0].staff_email).status_code == 302

    assert client.get(f"/calls/{a.call_sid}").status_code == 200
    assert client.get(f"/calls/{b.call_sid}").status_code == 404
    assert client.get(f"/calls/{b.call_sid}/live").status_code == 404
    assert client.get(f"/recordings/{a.recording_sid}/audio").status_code == 200
    assert client.get(f"/recordings/{b.recording_sid}/audio").status_code == 404
    assert client.get(f"/businesses/{tenants[1].business.id}").status_code == 404
    # Changing B's call is 404 too, even with a valid CSRF token.
    token = client.csrf(f"/calls/{a.call_sid}")
    tagged = client.post(f"/calls/{b.call_sid}/tags", {"csrf_token": token, "name": "x"})
    assert tagged.status_code == 404
    # B's calls are not in A's inbox or search.
    inbox = client.get("/?q=beta-only")
    assert b.call_sid not in inbox.text
    assert a.call_sid in client.get("/?q=alpha-only").text

    api_token = token_for(tenants[0].staff_email)
    assert api(stack, f"/api/v1/calls/{a.call_sid}", api_token).status_code == 200
    assert api(stack, f"/api/v1/calls/{b.call_sid}", api_token).status_code == 404
    listed = api(stack, "/api/v1/calls?per_page=100", api_token).json()
    sids = {c["call_sid"] for c in listed["data"]}
    assert a.call_sid in sids and b.call_sid not in sids
    filtered = api(stack, f"/api/v1/calls?business={tenants[1].business.id}", api_token).json()
    assert filtered["total"] == 0
    # The audio URL with A's token: only A's recording.
    assert api(stack, f"/recordings/{b.recording_sid}/audio", api_token).status_code == 404


def test_admin_sees_every_business(
    stack: StackUnderTest, admin_email: str, calls: tuple[FedCall, FedCall], client: Client
) -> None:
    assert client.login(admin_email).status_code == 302
    for call in calls:
        assert client.get(f"/calls/{call.call_sid}").status_code == 200
    token = token_for(admin_email)
    sids = {c["call_sid"] for c in api(stack, "/api/v1/calls?per_page=100", token).json()["data"]}
    assert {c.call_sid for c in calls} <= sids


def test_api_shape_bearer_tokens_and_streaming(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    calls: tuple[FedCall, FedCall],
    audio_bytes: bytes,
) -> None:
    a, _ = calls
    assert api(stack, "/api/v1/calls").status_code == 401
    missing = api(stack, f"/api/v1/calls/{a.call_sid}")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.headers["Content-Type"].startswith("application/json")
    assert api(stack, "/api/v1/calls", "mk_not-a-real-token").status_code == 401
    assert api(stack, "/api/v1/calls", headers={"Authorization": "Basic eDp5"}).status_code == 401

    token = token_for(tenants[0].staff_email)
    body = api(stack, f"/api/v1/calls/{a.call_sid}", token).json()
    assert body["call_sid"] == a.call_sid
    assert body["status"] == "completed"
    assert body["processing_status"] == "ready"
    assert body["transcript"] == a.transcript
    assert isinstance(body["tags"], list)
    assert body["audio_url"] == f"{stack.base}/recordings/{a.recording_sid}/audio"

    # The audio_url streams through nginx with the token; Range gives 206.
    full = api(stack, body["audio_url"].removeprefix(stack.base), token)
    assert full.status_code == 200
    assert full.headers["Content-Type"] == "audio/mpeg"
    assert full.content == audio_bytes
    assert full.headers.get("Accept-Ranges") == "bytes"
    part = api(
        stack, f"/recordings/{a.recording_sid}/audio", token, headers={"Range": "bytes=0-99"}
    )
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(audio_bytes)}"
    assert part.content == audio_bytes[:100]


def test_recording_is_refused_without_a_session(
    stack: StackUnderTest, calls: tuple[FedCall, FedCall]
) -> None:
    a, _ = calls
    response = requests.get(
        f"{stack.base}/recordings/{a.recording_sid}/audio", timeout=10, allow_redirects=False
    )
    assert response.status_code == 401
    assert not response.headers["Content-Type"].startswith("audio/")
    # nginx's internal location cannot be reached from outside.
    direct = requests.get(
        f"{stack.base}/internal/recordings/{a.business_id}/{a.recording_sid}.mp3", timeout=10
    )
    assert direct.status_code == 404
    # Pages redirect to the sign-in form.
    page = requests.get(f"{stack.base}/calls/{a.call_sid}", timeout=10, allow_redirects=False)
    assert page.status_code == 302 and "/login" in page.headers["Location"]


def test_forms_without_csrf_token_are_refused(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    calls: tuple[FedCall, FedCall],
    client: Client,
) -> None:
    a, _ = calls
    bare = requests.post(
        f"{stack.base}/login",
        data={"email": tenants[0].staff_email, "password": PASSWORD},
        timeout=10,
        allow_redirects=False,
    )
    assert bare.status_code == 400
    assert "moked_session" not in bare.cookies or bare.status_code != 302

    assert client.login(tenants[0].staff_email).status_code == 302
    name = f"no-csrf-{secrets.token_hex(3)}"
    refused = client.post(f"/calls/{a.call_sid}/tags", {"name": name})
    assert refused.status_code == 400
    wrong = client.post(f"/calls/{a.call_sid}/tags", {"name": name, "csrf_token": "forged"})
    assert wrong.status_code == 400
    assert client.post(f"/calls/{a.call_sid}/handled", {}).status_code == 400
    assert client.post("/logout", {}).status_code == 400
    with session_scope() as session:
        names = [ct.tag.name for ct in session.scalars(select(CallTag))]
    assert name not in names
    # With the token it works.
    token = client.csrf(f"/calls/{a.call_sid}")
    assert (
        client.post(f"/calls/{a.call_sid}/tags", {"name": name, "csrf_token": token}).status_code
        == 302
    )


def test_session_cookie_headers_and_no_open_redirect(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], client: Client
) -> None:
    token = client.csrf("/login")
    response = client.http.post(
        stack.base + "/login",
        data={
            "csrf_token": token,
            "email": tenants[0].staff_email,
            "password": PASSWORD,
            "next": "https://evil.example/phish",
        },
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    for target in ("//evil.example/x", "/\\evil.example", "https:evil.example", "/calls/x"):
        other = Client(stack)
        token = other.csrf("/login")
        moved = other.http.post(
            stack.base + "/login",
            data={
                "csrf_token": token,
                "email": tenants[0].staff_email,
                "password": PASSWORD,
                "next": target,
            },
            timeout=10,
            allow_redirects=False,
        )
        expected = target if target == "/calls/x" else "/"
        assert moved.headers["Location"] == expected, target
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert '<html lang="he" dir="rtl">' in page.text
    # No service worker is registered anywhere.
    script = client.get("/static/app.js").text
    assert "serviceWorker.register" not in script
    # Sign out is a POST with CSRF; afterwards the session is gone.
    out = client.post("/logout", {"csrf_token": client.csrf("/")})
    assert out.status_code == 302
    assert client.get("/").status_code == 302


def test_staff_cannot_manage_numbers_but_admin_can(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], admin_email: str, client: Client
) -> None:
    business_id = tenants[0].business.id
    assert client.login(tenants[0].staff_email).status_code == 302
    token = client.csrf(f"/businesses/{business_id}")
    refused = client.post(
        f"/businesses/{business_id}/numbers", {"csrf_token": token, "number": "+97235559999"}
    )
    assert refused.status_code == 403

    admin = Client(stack)
    assert admin.login(admin_email).status_code == 302
    token = admin.csrf(f"/businesses/{business_id}")
    number = unique_number()
    added = admin.post(
        f"/businesses/{business_id}/numbers", {"csrf_token": token, "number": number}
    )
    assert added.status_code == 302
    assert number in admin.get(f"/businesses/{business_id}").text


def test_password_change_signs_out_other_sessions(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant]
) -> None:
    email = f"changer-{secrets.token_hex(3)}@alpha.test"
    with session_scope() as session:
        add_user(
            session, email, role=Role.STAFF, business=str(tenants[0].business.id), password=PASSWORD
        )
    here, elsewhere = Client(stack), Client(stack)
    assert here.login(email).status_code == 302
    assert elsewhere.login(email).status_code == 302
    new = "a-brand-new-password"
    token = here.csrf("/account")
    mismatch = here.post(
        "/account/password",
        {"csrf_token": token, "current": PASSWORD, "new": new, "confirm": "x" + new},
    )
    assert mismatch.status_code == 400
    changed = here.post(
        "/account/password", {"csrf_token": token, "current": PASSWORD, "new": new, "confirm": new}
    )
    assert changed.status_code == 302
    assert here.get("/").status_code == 200
    assert elsewhere.get("/").status_code == 302  # signed out
    assert Client(stack).login(email, PASSWORD).status_code == 401
    assert Client(stack).login(email, new).status_code == 302


def test_personal_api_tokens_can_be_created_and_revoked(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], client: Client
) -> None:
    assert client.login(tenants[0].staff_email).status_code == 302
    created = client.post(
        "/account/tokens", {"csrf_token": client.csrf("/account"), "label": "Zapier"}
    )
    assert created.status_code == 201
    match = re.search(r'id="new-token"[^>]*>(mk_[^<]+)<', created.text)
    assert match
    token = match.group(1)
    assert api(stack, "/api/v1/calls", token).status_code == 200
    page = client.get("/account").text
    assert token not in page and token[:10] in page  # listed by prefix only
    token_id = re.search(r"/account/tokens/(\d+)/revoke", page)
    assert token_id
    revoked = client.post(
        f"/account/tokens/{token_id.group(1)}/revoke", {"csrf_token": client.csrf("/account")}
    )
    assert revoked.status_code == 302
    assert api(stack, "/api/v1/calls", token).status_code == 401


def test_csv_export_is_scoped_and_safe(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    calls: tuple[FedCall, FedCall],
    client: Client,
) -> None:
    a, b = calls
    assert client.login(tenants[0].staff_email).status_code == 302
    response = client.get("/inbox/export.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeffcall_sid,")
    assert a.call_sid in text and b.call_sid not in text
    assert "שיחה של עסק א בלבד" in text
    filtered = client.get("/inbox/export.csv?q=no-such-words-" + secrets.token_hex(3))
    assert a.call_sid not in filtered.content.decode("utf-8")
    rows = {row[0]: row for row in csv.reader(io.StringIO(text.lstrip("\ufeff")))}
    assert any(cell.startswith("+972") for cell in rows[a.call_sid]), "numbers as dialled"


def test_csv_cells_never_run_as_formulas_yet_numbers_stay_numbers() -> None:
    from crm_ui.inbox import _cell

    for formula in ('=HYPERLINK("x")', "+1+1", "-2+3", "@SUM(A1)", "\tx"):
        assert _cell(formula).startswith("'"), formula
    assert _cell("+97231234567") == "+97231234567"
    assert _cell("שלום") == "שלום" and _cell(None) == ""


def test_admin_manages_the_team_of_a_business(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    admin_email: str,
    calls: tuple[FedCall, FedCall],
) -> None:
    b_id = tenants[1].business.id
    admin = Client(stack)
    assert admin.login(admin_email).status_code == 302
    email = f"newcomer-{secrets.token_hex(3)}@beta.test"
    page = f"/businesses/{b_id}"
    created = admin.post(f"{page}/members", {"csrf_token": admin.csrf(page), "email": email})
    assert created.status_code == 201
    match = re.search(r'id="new-member-password">([^<]+)<', created.text)
    assert match
    newcomer = Client(stack)
    assert newcomer.login(email, match.group(1)).status_code == 302
    assert newcomer.get(f"/calls/{calls[1].call_sid}").status_code == 200
    assert newcomer.get(f"/calls/{calls[0].call_sid}").status_code == 404
    # Staff cannot manage the team.
    token = newcomer.csrf(page)
    assert (
        newcomer.post(f"{page}/members", {"csrf_token": token, "email": "x@y.test"}).status_code
        == 403
    )
    # Access removed.
    user_id = re.search(
        rf"/members/(\d+)/remove[^>]*>\s*<input[^>]*>\s*<button[^>]*{re.escape(email)}",
        admin.get(page).text,
    )
    assert user_id
    removed = admin.post(
        f"{page}/members/{user_id.group(1)}/remove", {"csrf_token": admin.csrf(page)}
    )
    assert removed.status_code == 302
    # Their open session stays signed in, and its next request no longer sees B's call.
    assert newcomer.get("/").status_code == 200
    assert newcomer.get(f"/calls/{calls[1].call_sid}").status_code == 404
