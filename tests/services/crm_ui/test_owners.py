"""A business owner manages their own business (issue 12): greetings, numbers, tags, the
team and notification rules, on the app's test client. Another business stays 404 and
unchanged, a member sees the page read-only and gets 403, the last owner cannot step
down, an owner never makes an admin, and a removed member's open session loses the business
at once (without being signed out)."""

from __future__ import annotations

import datetime as dt
import io
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from moked.accounts import Role, add_user
from moked.db.models import Business, Call, Membership, NotificationRule, PhoneNumber, Tag, User
from moked.db.session import session_scope
from moked.greetings import store_greeting, synthesize_mp3
from moked.statuses import CallStatus, MembershipRole
from tests.harness import StackUnderTest
from tests.helpers import new_call_sid, unique_number
from tests.services.crm_ui.conftest import PASSWORD

LAST_OWNER = "לעסק צריך להישאר לפחות בעלים אחד"


@dataclass(frozen=True)
class Shop:
    business: Business
    owner: str
    member: str
    member_id: int
    call_sid: str


def _user(email: str, business: Business, *, owner: bool = False) -> int:
    with session_scope() as session:
        return add_user(
            session, email, business=str(business.id), owner=owner, password=PASSWORD
        ).user_id


def _shop(make_business: Callable[..., Business], label: str) -> Shop:
    business = make_business(name=f"{label} {secrets.token_hex(3)}")
    owner = f"owner-{secrets.token_hex(4)}@{label.lower()}.test"
    member = f"member-{secrets.token_hex(4)}@{label.lower()}.test"
    _user(owner, business, owner=True)
    member_id = _user(member, business)
    call_sid = new_call_sid()
    with session_scope() as session:
        session.add(
            Call(
                call_sid=call_sid,
                business_id=business.id,
                from_number="+972541234567",
                to_number=business.numbers[0].e164,
                status=CallStatus.COMPLETED,
                started_at=dt.datetime.now(dt.UTC),
                duration_seconds=20,
            )
        )
    return Shop(business, owner, member, member_id, call_sid)


@pytest.fixture
def shops(stack: StackUnderTest, make_business: Callable[..., Business]) -> tuple[Shop, Shop]:
    return _shop(make_business, "Alef"), _shop(make_business, "Bet")


def _login(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    answer = client.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 302, answer.data
    return client


def _state(business_id: int) -> dict[str, object]:
    """Everything the business page and the notifications page can change."""
    with session_scope() as session:
        business = session.get(Business, business_id)
        assert business is not None
        return {
            "greeting": (business.greeting_file, business.greeting_text),
            "hours": (business.callback_limit_minutes, business.work_days),
            "numbers": sorted(
                session.scalars(
                    select(PhoneNumber.e164).where(PhoneNumber.business_id == business_id)
                )
            ),
            "tags": sorted(session.scalars(select(Tag.name).where(Tag.business_id == business_id))),
            "members": sorted(
                (m.user_id, m.role.value)
                for m in session.scalars(
                    select(Membership).where(Membership.business_id == business_id)
                )
            ),
            "rules": sorted(
                session.scalars(
                    select(NotificationRule.id).where(NotificationRule.business_id == business_id)
                )
            ),
        }


def _membership(business_id: int, user_id: int) -> MembershipRole | None:
    with session_scope() as session:
        return session.scalar(
            select(Membership.role).where(
                Membership.business_id == business_id, Membership.user_id == user_id
            )
        )


def _user_id(email: str) -> int:
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None
        return user.id


def _form_error(answer: TestResponse, form_id: str) -> str:
    """The error shown inside the element `form_id` of the page (crm_ui.feedback)."""
    html = answer.get_data(as_text=True)
    found = re.search(
        rf'<div class="form-error" id="{form_id}-error" role="alert">(.*?)</div>', html
    )
    assert found, f"no error inside #{form_id}"
    return re.sub(r"<[^>]+>", "", found.group(1))


def _rule(recipient: str) -> dict[str, str]:
    return {"channel": "email", "recipient": recipient, "when": "message", "hold": ""}


def _changes(
    business_id: int, greetings_dir: object, other_ids: tuple[int, int, int]
) -> list[tuple[str, dict[str, object]]]:
    """Every change route of the business page and its notifications, with a form."""
    number_id, tag_id, user_id = other_ids
    page = f"/businesses/{business_id}"
    mp3 = synthesize_mp3("shalom", "en")
    version = f"business_{business_id}_aaaaaaaaaaaa.mp3"
    return [
        (f"{page}/greetings", {"file": (io.BytesIO(mp3), "g.mp3"), "activate": "y"}),
        (f"{page}/greetings/{version}/activate", {}),
        (f"{page}/greetings/{version}/delete", {}),
        (f"{page}/greetings/deactivate", {}),
        (f"{page}/greeting-text", {"text": "hijacked"}),
        (f"{page}/numbers", {"number": unique_number()}),
        (f"{page}/numbers/{number_id}/delete", {}),
        (f"{page}/tags", {"name": "hijacked"}),
        (f"{page}/tags/{tag_id}/delete", {}),
        (f"{page}/members", {"email": f"intruder-{secrets.token_hex(3)}@x.test"}),
        (f"{page}/members/{user_id}/role", {"role": "owner"}),
        (f"{page}/members/{user_id}/remove", {}),
        (f"{page}/notifications", _rule("intruder@x.test")),
        (f"{page}/callback-hours", {"limit": "5", "hours": "00:00-23:59", "days": "sun-sat"}),
    ]


def _ids(shop: Shop, tag: str) -> tuple[int, int, int]:
    with session_scope() as session:
        number_id = session.scalars(
            select(PhoneNumber.id).where(PhoneNumber.business_id == shop.business.id)
        ).first()
        row = Tag(business_id=shop.business.id, name=tag)
        session.add(row)
        session.flush()
        assert number_id is not None
        return number_id, row.id, shop.member_id


def test_an_owner_manages_their_business_and_nothing_of_another(
    stack: StackUnderTest, crm_app: Flask, shops: tuple[Shop, Shop]
) -> None:
    a, b = shops
    owner = _login(crm_app, a.owner)
    page = f"/businesses/{a.business.id}"
    shown = owner.get(page).get_data(as_text=True)
    assert f'action="{page}/greetings"' in shown and f'action="{page}/members"' in shown

    # Greetings: upload without activating, then make it active.
    mp3 = synthesize_mp3(f"shalom {secrets.token_hex(2)}", "en")
    uploaded = owner.post(
        f"{page}/greetings",
        data={"file": (io.BytesIO(mp3), "greeting.mp3")},
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 302
    versions = list(stack.settings.greetings_dir.glob(f"business_{a.business.id}_*.mp3"))
    assert len(versions) == 1 and _state(a.business.id)["greeting"] == (None, None)
    active = owner.post(f"{page}/greetings/{versions[0].name}/activate")
    assert active.status_code == 302
    assert _state(a.business.id)["greeting"] == (versions[0].name, None)

    # Numbers: add one, refuse another business's without naming it, remove ours.
    number = unique_number()
    assert owner.post(f"{page}/numbers", data={"number": number}).status_code == 302
    assert number in _state(a.business.id)["numbers"]  # type: ignore[operator]
    taken = owner.post(f"{page}/numbers", data={"number": b.business.numbers[0].e164})
    assert taken.status_code == 302 and taken.headers["Location"].endswith("#number-form")
    error = _form_error(owner.get(page), "number-form")
    assert "כבר שייך לעסק אחר" in error
    assert b.business.name not in error and str(b.business.id) not in error
    assert b.business.numbers[0].e164 not in _state(a.business.id)["numbers"]  # type: ignore[operator]
    owner.post(f"{page}/numbers", data={"number": "12"})
    assert "זה אינו מספר טלפון תקין." in _form_error(owner.get(page), "number-form")
    with session_scope() as session:
        number_id = session.scalar(select(PhoneNumber.id).where(PhoneNumber.e164 == number))
    assert owner.post(f"{page}/numbers/{number_id}/delete").status_code == 302
    assert number not in _state(a.business.id)["numbers"]  # type: ignore[operator]

    # The team: a new person gets a staff account and a one-time password.
    newcomer = f"new-{secrets.token_hex(4)}@alef.test"
    created = owner.post(f"{page}/members", data={"email": newcomer})
    assert created.status_code == 201
    password = re.search(r'id="new-member-password">([^<]+)<', created.get_data(as_text=True))
    assert password
    newcomer_id = _user_id(newcomer)
    assert _membership(a.business.id, newcomer_id) is MembershipRole.MEMBER
    assert (
        crm_app.test_client()
        .post("/login", data={"email": newcomer, "password": password.group(1)})
        .status_code
        == 302
    )
    promoted = owner.post(f"{page}/members/{newcomer_id}/role", data={"role": "owner"})
    assert promoted.status_code == 302
    assert _membership(a.business.id, newcomer_id) is MembershipRole.OWNER
    demoted = owner.post(f"{page}/members/{newcomer_id}/role", data={"role": "member"})
    assert demoted.status_code == 302
    assert _membership(a.business.id, newcomer_id) is MembershipRole.MEMBER
    assert owner.post(f"{page}/members/{newcomer_id}/remove").status_code == 302
    assert _membership(a.business.id, newcomer_id) is None
    with session_scope() as session:
        user = session.get(User, newcomer_id)
        assert user is not None and user.role == Role.STAFF.value  # the account stays

    # Notification rules of A.
    rules_page = f"{page}/notifications"
    recipient = f"desk-{secrets.token_hex(3)}@alef.test"
    assert owner.post(rules_page, data=_rule(recipient)).status_code == 302
    assert recipient in owner.get(rules_page).get_data(as_text=True)

    # Business B: every page and every change is 404, and nothing of B changes.
    before = _state(b.business.id)
    assert owner.get(f"/businesses/{b.business.id}").status_code == 404
    assert owner.get(f"/businesses/{b.business.id}/notifications").status_code == 404
    for path, data in _changes(b.business.id, stack.settings.greetings_dir, _ids(b, "b-tag")):
        answer = owner.post(path, data=data, content_type="multipart/form-data")
        assert answer.status_code == 404, path
    after = _state(b.business.id)
    assert after == {**before, "tags": sorted([*before["tags"], "b-tag"])}  # type: ignore[misc]
    listed = owner.get("/businesses").get_data(as_text=True)
    assert a.business.name in listed and b.business.name not in listed


def test_a_member_sees_the_page_read_only_and_cannot_change_it(
    stack: StackUnderTest, crm_app: Flask, shops: tuple[Shop, Shop]
) -> None:
    a, _ = shops
    store_greeting(stack.settings.greetings_dir, a.business.id, synthesize_mp3("hi", "en"))
    member = _login(crm_app, a.member)
    page = f"/businesses/{a.business.id}"
    shown = member.get(page)
    assert shown.status_code == 200
    html = shown.get_data(as_text=True)
    assert a.owner in html and "בעלי העסק מנהלים את הצוות." in html
    assert re.findall(rf'<form[^>]*action="{page}/', html) == []
    assert 'name="text"' not in html and 'id="greeting-file"' not in html
    rules = member.get(f"{page}/notifications").get_data(as_text=True)
    assert re.findall(rf'<form[^>]*action="{page}/', rules) == []

    owner_id = _user_id(a.owner)
    before = _state(a.business.id)
    ids = _ids(a, "a-tag")
    for path, data in _changes(a.business.id, stack.settings.greetings_dir, ids):
        if path.endswith(f"/members/{a.member_id}/role") or path.endswith("/remove"):
            path = path.replace(f"/members/{a.member_id}/", f"/members/{owner_id}/")
        answer = member.post(path, data=data, content_type="multipart/form-data")
        assert answer.status_code == 403, path
    assert _state(a.business.id) == {**before, "tags": sorted([*before["tags"], "a-tag"])}  # type: ignore[misc]


def test_the_last_owner_cannot_step_down_or_leave(
    stack: StackUnderTest, crm_app: Flask, shops: tuple[Shop, Shop]
) -> None:
    a, _ = shops
    owner = _login(crm_app, a.owner)
    owner_id = _user_id(a.owner)
    page = f"/businesses/{a.business.id}"
    for path, data in ((f"{owner_id}/role", {"role": "member"}), (f"{owner_id}/remove", {})):
        answer = owner.post(f"{page}/members/{path}", data=data)
        assert answer.status_code == 302 and answer.headers["Location"].endswith("#team")
        assert LAST_OWNER in _form_error(owner.get(page), "team")
        assert _membership(a.business.id, owner_id) is MembershipRole.OWNER

    # With a second owner, stepping down works; the very next request is a member's.
    assert (
        owner.post(f"{page}/members/{a.member_id}/role", data={"role": "owner"}).status_code == 302
    )
    stepped = owner.post(f"{page}/members/{owner_id}/role", data={"role": "member"})
    assert stepped.status_code == 302
    assert _membership(a.business.id, owner_id) is MembershipRole.MEMBER
    assert owner.post(f"{page}/tags", data={"name": "x"}).status_code == 403


def test_an_owner_never_makes_an_admin_nor_changes_a_global_role(
    stack: StackUnderTest, crm_app: Flask, shops: tuple[Shop, Shop], admin_email: str
) -> None:
    a, b = shops
    owner = _login(crm_app, a.owner)
    page = f"/businesses/{a.business.id}"
    email = f"boss-{secrets.token_hex(4)}@alef.test"
    for role in ("admin", "staff"):
        refused = owner.post(f"{page}/members", data={"email": email, "role": role})
        assert refused.headers["Location"].endswith("#member-form")
        assert _form_error(owner.get(page), "member-form")
    with session_scope() as session:
        assert session.scalar(select(User).where(User.email == email)) is None
    assert (
        owner.post(f"{page}/members/{a.member_id}/role", data={"role": "admin"}).status_code == 400
    )

    # An existing user of B joins A as they are: staff stays staff (password unchanged,
    # B's membership untouched), an admin stays admin.
    with session_scope() as session:
        b_member = session.get(User, b.member_id)
        assert b_member is not None
        password_hash = b_member.password_hash
    added = owner.post(f"{page}/members", data={"email": b.member, "role": "owner"})
    assert added.status_code == 302
    assert _membership(a.business.id, b.member_id) is MembershipRole.OWNER
    assert _membership(b.business.id, b.member_id) is MembershipRole.MEMBER
    with session_scope() as session:
        b_member = session.get(User, b.member_id)
        assert b_member is not None
        assert b_member.role == Role.STAFF.value and b_member.password_hash == password_hash
    assert owner.post(f"{page}/members", data={"email": admin_email}).status_code == 302
    with session_scope() as session:
        admin = session.scalar(select(User).where(User.email == admin_email))
        assert admin is not None and admin.role == Role.ADMIN.value
    # An admin's membership removed: their access did not shrink, their session stays.
    admin_client = _login(crm_app, admin_email)
    assert owner.post(f"{page}/members/{_user_id(admin_email)}/remove").status_code == 302
    assert admin_client.get(page).status_code == 200


def test_a_removed_member_stops_seeing_the_business_at_once(
    stack: StackUnderTest, crm_app: Flask, shops: tuple[Shop, Shop]
) -> None:
    a, b = shops
    # An owner cannot sign someone out by adding their email, then removing it.
    other = _login(crm_app, b.owner)
    assert other.get(f"/businesses/{b.business.id}").status_code == 200
    a_owner = _login(crm_app, a.owner)
    a_page = f"/businesses/{a.business.id}"
    assert a_owner.post(f"{a_page}/members", data={"email": b.owner}).status_code == 302
    b_owner_id = _user_id(b.owner)
    assert a_owner.post(f"{a_page}/members/{b_owner_id}/remove").status_code == 302
    assert other.get(f"/businesses/{b.business.id}").status_code == 200

    member = _login(crm_app, a.member)
    assert member.get(f"/calls/{a.call_sid}").status_code == 200
    owner = _login(crm_app, a.owner)
    page = f"/businesses/{a.business.id}"
    assert owner.post(f"{page}/members/{a.member_id}/remove").status_code == 302
    assert _membership(a.business.id, a.member_id) is None
    # The very next request of the same session no longer sees A (read on every request).
    assert member.get(f"/calls/{a.call_sid}").status_code == 404
    assert member.get(page).status_code == 404
    assert member.get("/").status_code == 200  # signed in, just without A
    # Removing a non-member of A is a 404 (another business's people are not A's to touch).
    assert owner.post(f"{page}/members/{a.member_id}/remove").status_code == 404
