"""Calling back in the CRM, through nginx: the account's phone, the call page's callback
card, logging an attempt by hand, the follow-up, and other tenants' calls (404)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from moked.db.models import Business, Call, CallbackAttempt, User
from moked.db.session import session_scope
from moked.statuses import CallbackStatus, FollowUp
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid
from tests.services.crm_ui.conftest import Client, FedCall, Tenant, feed_call

CALLER = "+972525550123"


@pytest.fixture(scope="module")
def calls(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], audio_bytes: bytes
) -> tuple[FedCall, FedCall]:
    a = feed_call(stack, tenants[0], "נא לחזור אליי", audio_bytes, caller=CALLER)
    b = feed_call(stack, tenants[1], "please call back", audio_bytes, caller=CALLER)
    return a, b


def attempts_of(call_sid: str) -> list[CallbackAttempt]:
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        found = list(
            session.scalars(select(CallbackAttempt).where(CallbackAttempt.call_id == call.id))
        )
        session.expunge_all()
        return found


def follow_up_of(call_sid: str) -> FollowUp:
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        return call.follow_up


def test_staff_set_their_phone_and_call_back_or_log_by_hand(
    tenants: tuple[Tenant, Tenant], calls: tuple[FedCall, FedCall], client: Client
) -> None:
    a, _ = calls
    email = tenants[0].staff_email
    assert client.login(email).status_code == 302
    token = client.csrf("/account")

    refused = client.post("/account/phone", {"csrf_token": token, "phone": "054-12ab"})
    assert refused.status_code == 302
    saved = client.post("/account/phone", {"csrf_token": token, "phone": "054-555-0101"})
    assert saved.status_code == 302
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None and user.phone == "+972545550101"
    assert 'value="+972545550101"' in client.get("/account").text

    page = client.get(f"/calls/{a.call_sid}").text
    assert 'id="call-back"' in page and "disabled" not in page.split('id="call-back"')[1][:40]
    assert f'href="tel:{CALLER}"' in page  # the caller's number dials from a phone

    # Through Twilio: the test stack's Twilio is unreachable, so the attempt fails, said so.
    started = client.post(f"/calls/{a.call_sid}/callback", {"csrf_token": token})
    assert started.status_code == 302 and started.headers["Location"].endswith("#callback-start")
    assert 'id="callback-start-error" role="alert"' in client.get(f"/calls/{a.call_sid}").text
    (attempt,) = attempts_of(a.call_sid)
    assert attempt.status is CallbackStatus.FAILED and attempt.error
    assert attempt.staff_number == "+972545550101"

    # By hand, after dialling the tel: link.
    logged = client.post(
        f"/calls/{a.call_sid}/callback/log",
        {"csrf_token": token, "outcome": "reached", "minutes": "3"},
    )
    assert logged.status_code == 302
    outcomes = [(x.status, x.manual, x.duration_seconds) for x in attempts_of(a.call_sid)]
    assert (CallbackStatus.REACHED, True, 180) in outcomes
    assert follow_up_of(a.call_sid) is FollowUp.CALLED_BACK
    bad = client.post(f"/calls/{a.call_sid}/callback/log", {"csrf_token": token, "outcome": "x"})
    assert bad.status_code == 302 and len(attempts_of(a.call_sid)) == 2

    resolved = client.post(
        f"/calls/{a.call_sid}/follow-up", {"csrf_token": token, "status": "resolved"}
    )
    assert resolved.status_code == 302 and follow_up_of(a.call_sid) is FollowUp.RESOLVED
    page = client.get(f"/calls/{a.call_sid}").text
    assert "callback-attempt" in page and 'data-status="reached"' in page
    # "Handled" is the follow-up's resolved: reopening needs a callback again.
    client.post(f"/calls/{a.call_sid}/handled", {"csrf_token": token})
    assert follow_up_of(a.call_sid) is FollowUp.NEEDS_CALLBACK


def test_staff_of_a_cannot_start_see_or_log_a_callback_on_bs_call(
    tenants: tuple[Tenant, Tenant], calls: tuple[FedCall, FedCall], client: Client
) -> None:
    a, b = calls
    assert client.login(tenants[0].staff_email).status_code == 302
    token = client.csrf(f"/calls/{a.call_sid}")

    assert client.get(f"/calls/{b.call_sid}").status_code == 404
    assert client.post(f"/calls/{b.call_sid}/callback", {"csrf_token": token}).status_code == 404
    logged = client.post(
        f"/calls/{b.call_sid}/callback/log", {"csrf_token": token, "outcome": "reached"}
    )
    assert logged.status_code == 404
    moved = client.post(
        f"/calls/{b.call_sid}/follow-up", {"csrf_token": token, "status": "resolved"}
    )
    assert moved.status_code == 404
    assert attempts_of(b.call_sid) == []
    assert follow_up_of(b.call_sid) is FollowUp.NEW


def test_missed_calls_are_kept_apart_from_voicemails(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    calls: tuple[FedCall, FedCall],
    client: Client,
) -> None:
    voicemail, _ = calls
    missed = new_call_sid()
    params = call_params(missed, tenants[0].number, From=CALLER, Caller=CALLER)
    assert stack.post("/webhook/incoming_call", params).status_code == 200
    ended = {**params, "CallStatus": "completed", "CallDuration": "6", "SequenceNumber": "2"}
    assert stack.post("/webhook/call_status", ended).status_code == 200
    assert client.login(tenants[0].staff_email).status_code == 302

    missed_tab = client.get("/?kind=missed").text
    voicemail_tab = client.get("/?kind=voicemail").text
    assert missed in missed_tab and voicemail.call_sid not in missed_tab
    assert voicemail.call_sid in voicemail_tab and missed not in voicemail_tab
    assert 'aria-current="page"' in missed_tab
    assert f"/calls/{missed}/callback" in missed_tab  # "Call back" on the open call's row


def test_admins_and_owners_set_the_callback_limit_and_hours(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], admin_email: str, client: Client
) -> None:
    a, b = tenants
    path = f"/businesses/{a.business.id}/callback-hours"
    form = {"limit": "90", "hours": "09:00-17:00", "days": "sun-thu"}
    assert client.login(a.staff_email).status_code == 302
    token = client.csrf(f"/businesses/{a.business.id}")
    assert client.post(path, {"csrf_token": token, **form}).status_code == 403  # a member
    other = client.post(f"/businesses/{b.business.id}/callback-hours", {"csrf_token": token})
    assert other.status_code == 404

    admin = Client(stack)
    assert admin.login(admin_email).status_code == 302
    token = admin.csrf(f"/businesses/{a.business.id}")
    bad = admin.post(path, {"csrf_token": token, **form, "hours": "17:00-09:00"})
    assert bad.status_code == 302
    assert admin.post(path, {"csrf_token": token, **form}).status_code == 302
    with session_scope() as session:
        business = session.get(Business, a.business.id)
        assert business is not None
        assert business.callback_limit_minutes == 90
        assert (business.hours_start, business.hours_end) == (dt.time(9), dt.time(17))
        assert business.work_days == "sun,mon,tue,wed,thu"
    assert 'value="09:00-17:00"' in admin.get(f"/businesses/{a.business.id}").text
