"""The inbox's triage (issue 12 item 6): saved views (Mine / Unassigned / Open / All), counters
that follow the filters, a "this week" count, and bulk resolve / assign / tag. In-process on
the test client, one fresh business (and staff user) per test so every count is exact."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from moked import followup
from moked.accounts import Role, add_user, create_token
from moked.businesses import zone
from moked.db.models import AssignmentChange, Business, Call, CallTag, FollowUpChange, Tag, User
from moked.db.session import session_scope
from moked.statuses import CallStatus, FollowUp
from tests.harness import StackUnderTest
from tests.helpers import new_call_sid

PASSWORD = "correct-horse-battery"


@dataclass(frozen=True)
class Staff:
    client: FlaskClient
    user_id: int
    business: Business


def _user(business: Business, email: str | None = None) -> int:
    with session_scope() as session:
        made = add_user(
            session,
            email or f"staff-{secrets.token_hex(4)}@triage.test",
            role=Role.STAFF,
            business=str(business.id),
            password=PASSWORD,
        )
        return made.user_id


def _sign_in(client: FlaskClient, user_id: int) -> None:
    with session_scope() as session:
        user = session.get(User, user_id)
        assert user is not None
        email = user.email
    answer = client.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 302, answer.data


@pytest.fixture
def staff(crm_client: FlaskClient, make_business: Callable[..., Business]) -> Staff:
    business = make_business(name=f"Triage {secrets.token_hex(3)}")
    user_id = _user(business)
    _sign_in(crm_client, user_id)
    return Staff(crm_client, user_id, business)


def _call(
    business: Business,
    *,
    at: dt.datetime | None = None,
    assignee_id: int | None = None,
    resolved_by: int | None = None,
    blocked: bool = False,
    caller_name: str | None = None,
) -> str:
    """A finished call of `business`; resolved through moked.followup when asked."""
    sid = new_call_sid()
    with session_scope() as session:
        call = Call(
            call_sid=sid,
            business_id=business.id,
            from_number=f"+9725{secrets.randbelow(10**8):08d}",
            to_number=business.numbers[0].e164,
            status=CallStatus.COMPLETED,
            started_at=at or dt.datetime.now(dt.UTC),
            duration_seconds=20,
            assignee_id=assignee_id,
            blocked=blocked,
            caller_name=caller_name,
        )
        session.add(call)
        session.flush()
        if resolved_by is not None:
            locked = followup.lock(session, call.id)
            assert locked is not None
            followup.change(session, locked, FollowUp.RESOLVED, user_id=resolved_by)
    return sid


def _rows(html: str) -> set[str]:
    return set(re.findall(r'<tr class="call-row[^"]*" data-call-sid="(CA\w+)"', html))


def _view_counts(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-view-count="(\w+)">(\d+)<', html)}


def _kpi(html: str, name: str) -> int:
    match = re.search(rf'class="kpi {name}"[^>]*><strong>(\d+)</strong>', html)
    assert match, f"no {name} counter"
    return int(match.group(1))


def _get(client: FlaskClient, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, answer.status_code
    return answer.get_data(as_text=True)


def _follow_up(call_sid: str) -> tuple[FollowUp, int | None, int | None]:
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        return call.follow_up, call.handled_by_id, call.assignee_id


def _tags(call_sid: str) -> list[str]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(Tag.name)
                .join(CallTag, CallTag.tag_id == Tag.id)
                .join(Call, Call.id == CallTag.call_id)
                .where(Call.call_sid == call_sid)
            )
        )


def test_the_inbox_opens_on_open_calls_and_each_view_selects_its_calls(staff: Staff) -> None:
    colleague = _user(staff.business)
    unassigned = _call(staff.business)
    mine = _call(staff.business, assignee_id=staff.user_id)
    theirs = _call(staff.business, assignee_id=colleague)
    resolved = _call(staff.business, resolved_by=staff.user_id)
    blocked = _call(staff.business, blocked=True)

    page = _get(staff.client, "/")
    assert _rows(page) == {unassigned, mine, theirs}, "Open: no resolved, no blocked call"
    assert re.search(r'class="view-tab is-current" data-view="open" aria-current="page"', page)
    assert _view_counts(page) == {"mine": 1, "unassigned": 1, "open": 3, "all": 5}
    # The view rides along everywhere the inbox links to itself.
    assert '<input type="hidden" name="view" value="open">' in page
    assert re.search(r'data-live-url="/inbox/rows\?view=open"', page)
    assert re.search(r'href="/inbox/export.csv\?view=open"', page)
    assert re.search(r'action="/inbox/bulk\?view=open"', page)

    everything = _get(staff.client, "/?view=all")
    assert _rows(everything) == {unassigned, mine, theirs, resolved, blocked}
    assert _rows(_get(staff.client, "/?view=mine")) == {mine}
    assert _rows(_get(staff.client, "/?view=unassigned")) == {unassigned}
    assert _rows(_get(staff.client, "/inbox/rows?view=unassigned")) == {unassigned}
    assert _rows(_get(staff.client, "/?view=no-such-view")) == {unassigned, mine, theirs}
    csv = _get(staff.client, "/inbox/export.csv?view=mine")
    assert mine in csv and unassigned not in csv
    assert resolved in _get(staff.client, "/inbox/export.csv"), "no view: every call, as before"
    # Each row can be checked, for the bulk bar (and other scripts) to find.
    assert f'class="row-select" name="call_sid" value="{mine}" form="bulk-form"' in page


def test_counters_and_view_counts_follow_the_filters(
    staff: Staff, make_business: Callable[..., Business]
) -> None:
    other = make_business(name=f"Triage other {secrets.token_hex(3)}")
    with session_scope() as session:  # the same staff member works for both businesses
        user = session.get(User, staff.user_id)
        assert user is not None
        add_user(session, user.email, business=str(other.id))
    _sign_in(staff.client, staff.user_id)  # memberships are read at sign-in
    word = f"dana{secrets.token_hex(3)}"
    dana = _call(staff.business, caller_name=f"{word} Levi")
    _call(staff.business, assignee_id=staff.user_id)
    _call(staff.business, resolved_by=staff.user_id)
    _call(other)
    _call(other, resolved_by=staff.user_id)

    page = _get(staff.client, "/?view=all")
    assert _view_counts(page) == {"mine": 1, "unassigned": 2, "open": 3, "all": 5}
    assert _kpi(page, "kpi-open") == 3 and _kpi(page, "kpi-week") == 5

    one = _get(staff.client, f"/?view=all&business={staff.business.id}")
    assert _view_counts(one) == {"mine": 1, "unassigned": 1, "open": 2, "all": 3}
    assert _kpi(one, "kpi-open") == 2 and _kpi(one, "kpi-week") == 3
    # The counters count what the view shows too: Open of the other business is one call.
    there = _get(staff.client, f"/?business={other.id}")
    assert _kpi(there, "kpi-open") == 1 and _kpi(there, "kpi-week") == 1

    searched = _get(staff.client, "/?q=" + word)
    assert _rows(searched) == {dana}
    assert _view_counts(searched) == {"mine": 0, "unassigned": 1, "open": 1, "all": 1}
    assert _kpi(searched, "kpi-open") == 1


def test_the_week_starts_on_sunday() -> None:
    from crm_ui.queries import week_start

    assert week_start(dt.date(2026, 12, 1)) == dt.date(2026, 11, 29)  # Tuesday
    assert week_start(dt.date(2026, 11, 29)) == dt.date(2026, 11, 29)  # Sunday
    assert week_start(dt.date(2026, 12, 5)) == dt.date(2026, 11, 29)  # Saturday


def test_this_week_counts_the_calls_since_sunday_in_the_business_zone(staff: Staff) -> None:
    from crm_ui.queries import week_start

    tz = zone(staff.business.timezone)
    now = dt.datetime.now(tz)
    sunday = dt.datetime.combine(week_start(now.date()), dt.time.min, tzinfo=tz)
    _call(staff.business, at=now.astimezone(dt.UTC))
    _call(staff.business, at=(sunday - dt.timedelta(minutes=1)).astimezone(dt.UTC))
    _call(staff.business, at=(sunday - dt.timedelta(days=9)).astimezone(dt.UTC))
    expected = 1
    if sunday + dt.timedelta(seconds=1) < now:
        _call(staff.business, at=(sunday + dt.timedelta(seconds=1)).astimezone(dt.UTC))
        expected = 2

    page = _get(staff.client, "/")
    assert _kpi(page, "kpi-week") == expected
    assert f"from={sunday.date().isoformat()}" in page, "the counter links to the week"
    assert _view_counts(page)["open"] == expected + 2


def _bulk(client: FlaskClient, query: str, data: dict[str, object]) -> tuple[str, str]:
    answer = client.post("/inbox/bulk" + query, data=data)
    assert answer.status_code == 302, answer.status_code
    location = answer.headers["Location"]
    return location, _get(client, location)


def test_bulk_resolve_acts_on_the_users_calls_only(
    staff: Staff, make_business: Callable[..., Business]
) -> None:
    stranger = make_business(name=f"Triage stranger {secrets.token_hex(3)}")
    first, second = _call(staff.business), _call(staff.business)
    foreign = _call(stranger)
    kept = _call(staff.business)

    location, page = _bulk(
        staff.client,
        f"?view=open&business={staff.business.id}",
        {"operation": "resolve", "call_sid": [first, second, foreign, "CA\x00x"]},
    )
    assert location.startswith("/?") and "view=open" in location
    assert f"business={staff.business.id}" in location, "back to the same filters"
    assert "2 שיחות סומנו כטופלו." in page
    assert "שיחות שלא נמצאו: 2." in page
    assert _rows(page) == {kept}
    for sid in (first, second):
        assert _follow_up(sid)[:2] == (FollowUp.RESOLVED, staff.user_id)
    assert _follow_up(foreign) == (FollowUp.NEW, None, None), "another business's call"
    assert _follow_up(kept)[0] is FollowUp.NEW
    with session_scope() as session:  # the timeline has who and when
        changes = session.scalars(
            select(FollowUpChange)
            .join(Call, Call.id == FollowUpChange.call_id)
            .where(Call.call_sid.in_([first, second]))
        ).all()
    assert [(c.to_status, c.user_id) for c in changes] == [(FollowUp.RESOLVED, staff.user_id)] * 2

    _, again = _bulk(staff.client, "?view=all", {"operation": "resolve", "call_sid": [first]})
    assert "0 שיחות סומנו כטופלו." in again and "כבר טופלו: 1." in again
    location, none = _bulk(staff.client, "", {"operation": "resolve"})
    assert location.endswith("#bulk-form"), "a refusal lands on the bulk bar"
    error = re.search(r'id="bulk-form-error" role="alert">(.*?)</div>', none)
    assert error and "סמנו לפחות שיחה אחת." in error.group(1), "shown inside the bar"


def test_bulk_assign_refuses_calls_of_a_business_the_assignee_cannot_see(
    staff: Staff, make_business: Callable[..., Business]
) -> None:
    second_business = make_business(name=f"Triage second {secrets.token_hex(3)}")
    stranger = make_business(name=f"Triage stranger {secrets.token_hex(3)}")
    with session_scope() as session:
        user = session.get(User, staff.user_id)
        assert user is not None
        add_user(session, user.email, business=str(second_business.id))
    _sign_in(staff.client, staff.user_id)
    colleague = _user(staff.business)  # works for the first business only
    outsider = _user(stranger)
    here, there = _call(staff.business), _call(second_business)
    foreign = _call(stranger)

    _, page = _bulk(
        staff.client,
        "?view=all",
        {"operation": "assign", "assignee": str(colleague), "call_sid": [here, there, foreign]},
    )
    assert "שיחה אחת שויכה." in page
    assert "לא שויכו, כי המשתמש/ת לא עובד/ת בעסק שלהן: 1." in page
    assert "שיחות שלא נמצאו: 1." in page
    assert _follow_up(here)[2] == colleague
    assert _follow_up(there)[2] is None, "the colleague does not see the second business"
    assert _follow_up(foreign)[2] is None

    _, refused = _bulk(
        staff.client,
        "?view=all",
        {"operation": "assign", "assignee": str(outsider), "call_sid": [here, there]},
    )
    assert "לא ניתן לשייך את המשתמש/ת לשיחות האלה." in refused
    assert _follow_up(here)[2] == colleague and _follow_up(there)[2] is None

    _, mine = _bulk(
        staff.client,
        "?view=mine",
        {"operation": "assign", "assignee": str(staff.user_id), "call_sid": [here, there]},
    )
    assert "2 שיחות שויכו." in mine
    assert _rows(mine) == {here, there}
    _, nobody = _bulk(staff.client, "?view=all", {"operation": "assign", "call_sid": [here]})
    assert "שיחה אחת שויכה." in nobody and _follow_up(here)[2] is None

    # Every change is kept, with who made it: colleague → me → nobody (the refusal is none).
    with session_scope() as session:
        history = session.execute(
            select(AssignmentChange.assignee_id, AssignmentChange.by_id)
            .join(Call, Call.id == AssignmentChange.call_id)
            .where(Call.call_sid == here)
            .order_by(AssignmentChange.id)
        ).all()
    mine_and_colleagues = [(colleague, staff.user_id), (staff.user_id, staff.user_id)]
    assert [tuple(row) for row in history] == [*mine_and_colleagues, (None, staff.user_id)]
    timeline = staff.client.get(f"/calls/{here}").get_data(as_text=True)
    assert timeline.count("tl-assign") == 3 and "השיוך בוטל" in timeline


def test_bulk_tag_tags_the_users_calls_only(
    staff: Staff, make_business: Callable[..., Business]
) -> None:
    stranger = make_business(name=f"Triage stranger {secrets.token_hex(3)}")
    first, second = _call(staff.business), _call(staff.business)
    foreign = _call(stranger)
    name = f"דחוף {secrets.token_hex(2)}"

    _, page = _bulk(
        staff.client,
        "?view=open",
        {"operation": "tag", "tag": f"  {name} ", "call_sid": [first, second, foreign]},
    )
    assert "התגית נוספה ל־2 שיחות." in page and "שיחות שלא נמצאו: 1." in page
    assert _tags(first) == [name] and _tags(second) == [name]
    assert _tags(foreign) == []
    # The same tag again (another case) adds nothing twice.
    _bulk(staff.client, "", {"operation": "tag", "tag": name.upper(), "call_sid": [first]})
    assert _tags(first) == [name]
    _, empty = _bulk(staff.client, "", {"operation": "tag", "tag": "  ", "call_sid": [first]})
    assert "לתגית דרוש שם של עד 64 תווים." in empty and _tags(first) == [name]


@pytest.fixture(scope="module")
def csrf_app(stack: StackUnderTest) -> Flask:
    from crm_ui.app import create_app

    app = create_app(stack.settings)  # CSRF on, as deployed
    app.testing = True
    return app


def _token(client: FlaskClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', _get(client, path))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def test_bulk_actions_need_the_csrf_token(
    csrf_app: Flask, make_business: Callable[..., Business]
) -> None:
    business = make_business(name=f"Triage csrf {secrets.token_hex(3)}")
    user_id = _user(business)
    with session_scope() as session:
        user = session.get(User, user_id)
        assert user is not None
        email = user.email
    client = csrf_app.test_client()
    login = {"email": email, "password": PASSWORD, "csrf_token": _token(client, "/login")}
    signed_in = client.post("/login", data=login)
    assert signed_in.status_code == 302
    call = _call(business)

    bare = client.post("/inbox/bulk", data={"operation": "resolve", "call_sid": call})
    assert bare.status_code == 400
    forged = {"operation": "resolve", "call_sid": call, "csrf_token": "forged"}
    assert client.post("/inbox/bulk", data=forged).status_code == 400
    assert _follow_up(call)[0] is FollowUp.NEW

    token = _token(client, "/")  # the bulk bar's own token
    sent = {"operation": "resolve", "call_sid": call, "csrf_token": token}
    assert client.post("/inbox/bulk", data=sent).status_code == 302
    assert _follow_up(call)[:2] == (FollowUp.RESOLVED, user_id)


def test_the_api_lists_every_call_unless_a_view_is_named(staff: Staff) -> None:
    with session_scope() as session:
        user = session.get(User, staff.user_id)
        assert user is not None
        token = create_token(session, user.email, label="test")
    open_call = _call(staff.business)
    resolved = _call(staff.business, resolved_by=staff.user_id)
    headers = {"Authorization": f"Bearer {token}"}

    def listed(query: str) -> set[str]:
        answer = staff.client.get("/api/v1/calls" + query, headers=headers)
        assert answer.status_code == 200
        return {call["call_sid"] for call in answer.get_json()["data"]}

    assert listed("") == {open_call, resolved}
    assert listed("?view=open") == {open_call}
    assert listed("?view=mine") == set()
