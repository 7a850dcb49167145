"""Bad values in the call list's query string and in stored times (issue 13, items 1 and 2):
the inbox, its live rows, the CSV export and /api/v1/calls answer 400 with a message, or
render, but never 500. In-process on the test client, against the stack's real Postgres."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from moked.accounts import Role, add_user, create_token
from moked.db.models import Business, Call
from moked.db.session import session_scope
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid

PASSWORD = "correct-horse-battery"
LIST_PATHS = ("/", "/inbox/rows", "/inbox/export.csv")


@dataclass(frozen=True)
class Staff:
    client: FlaskClient
    business: Business
    token: str

    def api(self, path: str) -> tuple[int, dict[str, object]]:
        answer = self.client.get(path, headers={"Authorization": f"Bearer {self.token}"})
        assert answer.content_type.startswith("application/json"), answer.content_type
        return answer.status_code, answer.get_json()


def new_user(business: Business, role: Role) -> tuple[str, str]:
    """A new user (staff of `business`, or an admin) and an API token: (email, token)."""
    email = f"{role.value}-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(
            session,
            email,
            role=role,
            business=business.name if role is Role.STAFF else None,
            password=PASSWORD,
        )
        token = create_token(session, email, label="test")
    return email, token


def sign_in(crm_app: Flask, business: Business, role: Role) -> tuple[FlaskClient, str]:
    """A test client signed in as a new user, and the user's API token."""
    email, token = new_user(business, role)
    client = crm_app.test_client()
    answer = client.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 302, answer.data
    return client, token


@pytest.fixture
def staff(stack: StackUnderTest, crm_app: Flask, make_business: Callable[..., Business]) -> Staff:
    business = make_business(name=f"Hostile {secrets.token_hex(3)}")
    client, token = sign_in(crm_app, business, Role.STAFF)
    return Staff(client, business, token)


def _call(twilio: TwilioClient, business: Business) -> str:
    call_sid = new_call_sid()
    params = call_params(call_sid, business.numbers[0].e164)
    assert twilio.post("/webhook/incoming_call", params).status_code == 200
    return call_sid


# --- item 1: impossible dates ---------------------------------------------------------


def test_a_call_at_the_end_of_the_calendar_renders_everywhere(
    twilio: TwilioClient, crm_app: Flask, staff: Staff
) -> None:
    """As found: one call stored (before intake refused such Timestamps) at
    9999-12-31 23:59:59 UTC, past datetime.max in Jerusalem, made the admin inbox, the live
    rows, the CSV, the call page and the API answer 500."""
    call_sid = _call(twilio, staff.business)
    end = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        call.started_at = call.answered_at = call.ended_at = call.handled_at = end

    admin, _ = sign_in(crm_app, staff.business, Role.ADMIN)
    for client in (staff.client, admin):
        for path in (*LIST_PATHS, f"/calls/{call_sid}"):
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.status_code)
    assert "9999" in staff.client.get("/inbox/export.csv").get_data(as_text=True)
    status, listed = staff.api("/api/v1/calls")
    assert status == 200 and [c["call_sid"] for c in listed["data"]] == [call_sid]  # type: ignore[index]
    assert staff.api(f"/api/v1/calls/{call_sid}")[0] == 200


# --- items 1 and 2: values no filter can take -----------------------------------------

HOSTILE = [
    # (query string, the English reason; the CRM shows it in Hebrew)
    ("to=9999-12-31", "The to date is not a valid date between 2000 and 2199."),
    ("from=0001-01-01", "The from date is not a valid date between 2000 and 2199."),
    ("from=yesterday", "The from date is not a valid date between 2000 and 2199."),
    ("from=2026-11-02&to=2026-11-01", "The from date is after the to date."),
    ("q=%00", "The search or a filter contains a character that is not allowed."),
    ("tag=%00", "The search or a filter contains a character that is not allowed."),
    ("q=a%00b&status=%00", "The search or a filter contains a character that is not allowed."),
    ("x%00=1", "The search or a filter contains a character that is not allowed."),
    ("page=99999999999999999999", "The page number must be a whole number from 1 to 100000."),
    ("page=-1", "The page number must be a whole number from 1 to 100000."),
    ("page=%C2%B2", "The page number must be a whole number from 1 to 100000."),
    ("per_page=0", "The number of calls per page must be a whole number from 1 to 100."),
    ("per_page=101", "The number of calls per page must be a whole number from 1 to 100."),
    ("business=99999999999999999999", "The business filter is not a valid business."),
    ("business=%C2%B2", "The business filter is not a valid business."),
]


@pytest.mark.parametrize(("query", "reason"), HOSTILE)
def test_a_hostile_filter_is_a_400_with_its_reason(
    twilio: TwilioClient, staff: Staff, query: str, reason: str
) -> None:
    from crm_ui.messages import HEBREW

    _call(twilio, staff.business)
    for path in LIST_PATHS:
        answer = staff.client.get(f"{path}?{query}")
        assert answer.status_code == 400, (path, answer.status_code)
        assert answer.content_type.startswith("text/html"), answer.content_type
        assert HEBREW[reason] in answer.get_data(as_text=True), path
    status, body = staff.api(f"/api/v1/calls?{query}")
    assert (status, body["error"]) == (400, "bad_request")
    assert reason in str(body["message"])


def test_the_inbox_keeps_its_form_when_it_refuses_a_filter(staff: Staff) -> None:
    page = staff.client.get("/?q=%00").get_data(as_text=True)
    assert 'role="search"' in page and 'role="alert"' in page
    assert "\x00" not in page


def test_good_filters_still_work(twilio: TwilioClient, staff: Staff) -> None:
    call_sid = _call(twilio, staff.business)
    today = dt.datetime.now(dt.UTC).date()
    ok = f"from={today - dt.timedelta(days=1)}&to={today + dt.timedelta(days=1)}"
    for query in (ok, "page=1&per_page=100", "q=&tag=&status=&from=&to=", f"from={today}"):
        for path in LIST_PATHS:
            assert staff.client.get(f"{path}?{query}").status_code == 200, (path, query)
        status, body = staff.api(f"/api/v1/calls?{query}")
        assert status == 200, (query, body)
    status, body = staff.api(f"/api/v1/calls?{ok}")
    assert [c["call_sid"] for c in body["data"]] == [call_sid]  # type: ignore[index]
    # A page past the last is an empty page, not an error.
    status, body = staff.api("/api/v1/calls?page=100000")
    assert status == 200 and body["data"] == []


def test_a_nul_in_a_call_sid_is_not_found(staff: Staff) -> None:
    assert staff.api("/api/v1/calls/CA%00")[0] == 404
    assert staff.client.get("/calls/CA%00").status_code == 404
