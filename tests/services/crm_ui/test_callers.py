"""Callers in the CRM, through nginx: the caller card (name, block, their calls), badges in
the inbox, the list of blocked and flagged callers, and other tenants' callers (404)."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from flask import Flask
from sqlalchemy import update

from moked import callers
from moked.db.models import Caller
from moked.db.session import session_scope
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, unique_caller
from tests.services.crm_ui.conftest import Client, FedCall, Tenant, feed_call


def a_caller() -> str:
    return unique_caller()


def the_caller(tenant: Tenant, number: str) -> Caller:
    with session_scope() as session:
        caller = callers.find(session, tenant.business.id, number)
        assert caller is not None
        session.expunge_all()
        return caller


def ring(stack: StackUnderTest, tenant: Tenant, number: str) -> list[str]:
    """A new call from `number` through nginx; the verbs of its TwiML."""
    answer = stack.post(
        "/webhook/incoming_call",
        call_params(new_call_sid(), tenant.number, From=number, Caller=number),
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].split(";")[0] == "text/xml"
    return [verb.tag for verb in ET.fromstring(answer.content)]


def test_staff_name_block_and_unblock_a_caller_from_the_call_page(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    client: Client,
    audio_bytes: bytes,
) -> None:
    tenant = tenants[0]
    number = a_caller()
    first = feed_call(stack, tenant, "שלום, זו הפעם הראשונה", audio_bytes, caller=number)
    second = feed_call(stack, tenant, "שוב אני", audio_bytes, caller=number)
    assert client.login(tenant.staff_email).status_code == 302
    token = client.csrf(f"/calls/{second.call_sid}")

    page = client.get(f"/calls/{second.call_sid}").text
    assert 'id="caller"' in page and first.call_sid in page  # their other call is listed

    named = client.post(
        f"/calls/{second.call_sid}/caller/name", {"csrf_token": token, "name": " דנה  כהן "}
    )
    assert named.status_code == 302 and named.headers["Location"].endswith("#caller")
    assert the_caller(tenant, number).name == "דנה כהן"
    too_long = client.post(
        f"/calls/{second.call_sid}/caller/name", {"csrf_token": token, "name": "א" * 201}
    )
    assert too_long.status_code == 302
    assert the_caller(tenant, number).name == "דנה כהן"
    page = client.get(f"/calls/{first.call_sid}").text
    assert "דנה כהן" in page

    blocked = client.post(f"/calls/{second.call_sid}/caller/block", {"csrf_token": token})
    assert blocked.status_code == 302
    caller = the_caller(tenant, number)
    assert caller.blocked and caller.blocked_by_id is not None
    assert ring(stack, tenant, number) == ["Reject"]
    page = client.get(f"/calls/{second.call_sid}").text
    assert 'id="caller-blocked"' in page and 'id="unblock-caller"' in page

    listing = client.get(f"/businesses/{tenant.business.id}/callers")
    assert listing.status_code == 200
    assert f'data-number="{number}"' in listing.text

    unblocked = client.post(f"/calls/{second.call_sid}/caller/unblock", {"csrf_token": token})
    assert unblocked.status_code == 302
    assert not the_caller(tenant, number).blocked
    assert "Record" in ring(stack, tenant, number)
    listing = client.get(f"/businesses/{tenant.business.id}/callers")
    assert f'data-number="{number}"' not in listing.text


def test_the_list_page_shows_flagged_callers_and_the_inbox_badges(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    client: Client,
    audio_bytes: bytes,
) -> None:
    tenant = tenants[0]
    spammer, repeat = a_caller(), a_caller()
    for _ in range(3):
        feed_call(stack, tenant, "שלום", audio_bytes, caller=repeat)
    feed_call(stack, tenant, "קנו עכשיו", audio_bytes, caller=spammer)
    withheld: FedCall = feed_call(stack, tenant, "חסוי", audio_bytes, caller="anonymous")
    with session_scope() as session:
        session.execute(
            update(Caller)
            .where(Caller.business_id == tenant.business.id, Caller.number == spammer)
            .values(flagged_spam_at=dt.datetime.now(dt.UTC))
        )
    assert client.login(tenant.staff_email).status_code == 302

    inbox = client.get(f"/?business={tenant.business.id}").text
    assert "שיחה מס׳ 3 השבוע" in inbox and "שיחה מס׳ 2 השבוע" in inbox
    assert "spam-badge" in inbox and "כנראה ספאם" in inbox
    assert 'class="withheld">חסוי<' in inbox
    english = client.get(f"/?business={tenant.business.id}", cookies={"moked_lang": "en"}).text
    assert "3rd call this week" in english and "2nd call this week" in english
    assert "Withheld" in english
    assert "חסוי" in client.get(f"/calls/{withheld.call_sid}").text

    listing = client.get(f"/businesses/{tenant.business.id}/callers")
    assert listing.status_code == 200
    assert f'data-number="{spammer}"' in listing.text and "כנראה ספאם" in listing.text
    spam = the_caller(tenant, spammer)
    token = client.csrf(f"/businesses/{tenant.business.id}/callers")
    assert client.post(f"/callers/{spam.id}/block", {"csrf_token": token}).status_code == 302
    assert the_caller(tenant, spammer).blocked
    assert client.post(f"/callers/{spam.id}/unblock", {"csrf_token": token}).status_code == 302
    cleared = the_caller(tenant, spammer)
    assert not cleared.blocked and cleared.flagged_spam_at is None  # "not spam"


def test_another_business_s_callers_are_404(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    client: Client,
    audio_bytes: bytes,
) -> None:
    mine, theirs = tenants
    number = a_caller()
    their_call = feed_call(stack, theirs, "לא שלך", audio_bytes, caller=number)
    feed_call(stack, mine, "שלי", audio_bytes, caller=number)
    their_caller = the_caller(theirs, number)
    assert client.login(mine.staff_email).status_code == 302
    token = client.csrf("/")

    for path in ("name", "block", "unblock"):
        answer = client.post(
            f"/calls/{their_call.call_sid}/caller/{path}", {"csrf_token": token, "name": "x"}
        )
        assert answer.status_code == 404, path
    for path in ("block", "unblock"):
        answer = client.post(f"/callers/{their_caller.id}/{path}", {"csrf_token": token})
        assert answer.status_code == 404, path
    assert client.get(f"/businesses/{theirs.business.id}/callers").status_code == 404
    after = the_caller(theirs, number)
    assert not after.blocked and after.name is None
    # The same number is another caller here: blocking it here leaves theirs alone.
    assert client.get(f"/businesses/{mine.business.id}/callers").status_code == 200
    with session_scope() as session:
        assert callers.find(session, mine.business.id, number) is not None


def test_a_blocked_caller_s_call_is_not_a_missed_call(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], client: Client
) -> None:
    tenant = tenants[0]
    blocked, allowed = a_caller(), a_caller()
    with session_scope() as session:
        callers.block(session, tenant.business.id, blocked)
    sids = {}
    for number in (blocked, allowed):
        sid = new_call_sid()
        params = call_params(sid, tenant.number, From=number, Caller=number)
        assert stack.post("/webhook/incoming_call", params).status_code == 200
        ended = {**params, "CallStatus": "busy", "CallDuration": "0", "SequenceNumber": "2"}
        assert stack.post("/webhook/call_status", ended).status_code == 200
        sids[number] = sid
    assert client.login(tenant.staff_email).status_code == 302
    missed = client.get(f"/?kind=missed&business={tenant.business.id}&per_page=100").text
    assert f'data-call-sid="{sids[allowed]}"' in missed
    assert f'data-call-sid="{sids[blocked]}"' not in missed
    everything = client.get(f"/?view=all&business={tenant.business.id}&per_page=100").text
    assert f'data-call-sid="{sids[blocked]}"' in everything and "blocked-badge" in everything
    # A blocked caller's call is no open work: only All shows it.
    opened = client.get(f"/?business={tenant.business.id}&per_page=100").text
    assert f'data-call-sid="{sids[blocked]}"' not in opened
    assert f'data-call-sid="{sids[allowed]}"' in opened


def test_the_business_page_links_to_its_blocked_callers(
    tenants: tuple[Tenant, Tenant], client: Client, admin_email: str
) -> None:
    business = tenants[1].business
    assert client.login(admin_email).status_code == 302
    page = client.get(f"/businesses/{business.id}").text
    assert f'href="/businesses/{business.id}/callers" id="callers-link"' in page
    assert client.get(f"/businesses/{business.id}/callers").status_code == 200  # admins: all


def test_only_a_caller_who_can_be_called_back_gets_a_tel_link(crm_app: Flask) -> None:
    with crm_app.test_request_context():
        number = crm_app.jinja_env.get_template("_macros.html").module.number  # type: ignore[attr-defined]
        assert 'href="tel:+972501234567"' in str(number("+972501234567"))
        for withheld in ("+266696687", "anonymous", "client:desk"):
            assert "tel:" not in str(number(withheld)), withheld
