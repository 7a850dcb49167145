"""The CRM's notifications (issue 11), in-process on the test client: a business's rules
page (admins and owners manage, members read, other tenants get 404), a test send to a
real SMTP server, and a call's deliveries on its page with "send again".

Everything runs on a database and a Redis index of their own (tests/moked/notify's
`isolated_settings`): the stack's reconciler sweeps every second and its notifier sends
whatever is pending, so a retried delivery would not stay pending long enough to look at.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from moked import cli
from moked.accounts import Role, add_user, create_token
from moked.businesses import BusinessSpec, upsert_business
from moked.calls import SCHEMA_PATH, call_loading, describe_call
from moked.db.models import Call, Membership, NotificationDelivery, NotificationRule, User
from moked.db.session import session_scope, settings_session
from moked.notify import deliveries, rules
from moked.queue import fetch_job, redis_client
from moked.settings import Settings
from moked.statuses import AlertKind, CallStatus, Channel, DeliveryStatus, MembershipRole
from tests.harness import StackUnderTest
from tests.helpers import new_call_sid, unique_number
from tests.moked.notify.conftest import isolated_settings  # noqa: F401 - a fixture
from tests.moked.notify.receivers import SmtpServer
from tests.services.crm_ui.conftest import PASSWORD

NOW = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Tenant:
    business_id: int
    name: str
    owner: str
    member: str


def _app(settings: Settings) -> Flask:
    from crm_ui.app import create_app

    app = create_app(settings, WTF_CSRF_ENABLED=False)
    app.testing = True
    return app


@pytest.fixture(scope="module")
def app(isolated_settings: Settings) -> Flask:  # noqa: F811
    return _app(isolated_settings)


@pytest.fixture(scope="module")
def admin(isolated_settings: Settings) -> str:  # noqa: F811
    email = f"admin-{secrets.token_hex(4)}@moked.test"
    with settings_session(isolated_settings) as session:
        add_user(session, email, role=Role.ADMIN, password=PASSWORD)
    return email


def _tenant(settings: Settings) -> Tenant:
    """A business with an owner and a plain member."""
    with settings_session(settings) as session:
        spec = BusinessSpec(name=f"Delta {secrets.token_hex(3)}", numbers=(unique_number(),))
        business = upsert_business(session, spec, settings.greetings_dir)
        session.flush()
        business_id, name = business.id, business.name
        owner = f"owner-{secrets.token_hex(4)}@delta.test"
        member = f"member-{secrets.token_hex(4)}@delta.test"
        add_user(session, owner, business=str(business_id), password=PASSWORD, owner=True)
        add_user(session, member, business=str(business_id), password=PASSWORD)
    return Tenant(business_id, name, owner, member)


@pytest.fixture
def tenant(isolated_settings: Settings) -> Tenant:  # noqa: F811
    return _tenant(isolated_settings)


@pytest.fixture
def other(isolated_settings: Settings) -> Tenant:  # noqa: F811
    return _tenant(isolated_settings)


def _login(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    answer = client.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 302, answer.data
    return client


def _rule_form(channel: str, recipient: str, **extra: str) -> dict[str, str]:
    return {"channel": channel, "recipient": recipient, "when": "message", "hold": "", **extra}


def _rules(settings: Settings, business_id: int) -> list[NotificationRule]:
    with settings_session(settings) as session:
        found = list(rules.rules_of(session, business_id))
        session.expunge_all()
    return found


def _flash(page: str) -> str:
    return " ".join(re.findall(r'class="flash flash-\w+"[^>]*>(.*?)<', page, re.S))


def _form_error(page: str, form_id: str) -> str:
    """The error shown inside the form that was refused (crm_ui.feedback)."""
    found = re.search(rf'id="{form_id}-error" role="alert">(.*?)</div>', page, re.S)
    return found.group(1) if found else ""


# --- rules ---------------------------------------------------------------------------------


def test_an_admin_adds_email_and_webhook_rules_and_a_bad_one_is_refused(
    app: Flask,
    admin: str,
    tenant: Tenant,
    isolated_settings: Settings,  # noqa: F811
) -> None:
    client = _login(app, admin)
    page = f"/businesses/{tenant.business_id}/notifications"
    business_page = client.get(f"/businesses/{tenant.business_id}").get_data(as_text=True)
    assert f'href="{page}"' in business_page, "the business page links to its notifications"
    team = business_page.split('id="team"', 1)[1]
    owner_item = team.split(tenant.owner, 1)[1].split("</li>", 1)[0]
    member_item = team.split(tenant.member, 1)[1].split("</li>", 1)[0]
    assert '<span class="role">בעלים</span>' in owner_item
    assert '<span class="role">בעלים</span>' not in member_item
    assert "אף אחד עדיין לא מקבל התראות." in client.get(page).get_data(as_text=True)

    email = client.post(
        page,
        data=_rule_form("email", "Owner@Delta.TEST", quiet_hours="22:00-07:00", attach_audio="y"),
    )
    assert email.status_code == 302
    listed = client.get(page).get_data(as_text=True)
    assert "Owner@delta.test" in listed and "22:00-07:00" in listed
    assert "כלל התראה נוסף: Owner@delta.test." in _flash(listed)

    hook = client.post(
        page, data=_rule_form("webhook", "http://127.0.0.1:9/hooks/moked", generate_secret="y")
    )
    assert hook.status_code == 201
    shown = re.search(r'id="new-secret"[^>]*>(whsec_[A-Za-z0-9+/=]+)<', hook.get_data(as_text=True))
    assert shown, "the generated secret is shown once"
    made = {r.channel: r for r in _rules(isolated_settings, tenant.business_id)}
    assert set(made) == {Channel.EMAIL, Channel.WEBHOOK}
    assert made[Channel.WEBHOOK].secret == shown.group(1)
    assert made[Channel.EMAIL].quiet_start == dt.time(22, 0)
    assert made[Channel.EMAIL].hold_in_quiet_hours is False  # email's default: sent anyway
    assert made[Channel.EMAIL].attach_audio is True
    again = client.get(page).get_data(as_text=True)
    assert shown.group(1) not in again and rules.masked_secret(shown.group(1)) in again

    refused = {
        "זו אינה כתובת דוא״ל תקינה.": _rule_form("email", "not-an-address"),
        "webhook צריך סוד חתימה": _rule_form("webhook", "http://127.0.0.1:9/other"),
        "שעות שקט נכתבות כך": _rule_form("sms", "+972505551234", quiet_hours="25:00-07:00"),
        "כבר מקבל/ת התראות": _rule_form("email", "Owner@DELTA.test"),
        "רק webhook מקבל סוד": _rule_form("email", "x@delta.test", secret="whsec_abc"),
    }
    for message, form in refused.items():
        answer = client.post(page, data=form)
        assert answer.status_code == 400, form
        assert message in _form_error(answer.get_data(as_text=True), "rule-form"), (message, form)
    assert len(_rules(isolated_settings, tenant.business_id)) == 2

    rule_id = made[Channel.EMAIL].id
    removed = client.post(f"{page}/{rule_id}/delete")
    assert removed.status_code == 302
    assert [r.channel for r in _rules(isolated_settings, tenant.business_id)] == [Channel.WEBHOOK]
    assert client.post(f"{page}/{rule_id}/delete").status_code == 404


def test_owners_manage_members_read_and_other_businesses_are_404(
    app: Flask,
    tenant: Tenant,
    other: Tenant,
    isolated_settings: Settings,  # noqa: F811
) -> None:
    page = f"/businesses/{tenant.business_id}/notifications"
    owner = _login(app, tenant.owner)
    assert 'id="rule-form"' in owner.get(page).get_data(as_text=True)
    assert owner.post(page, data=_rule_form("sms", "050-555-1234")).status_code == 302
    (rule,) = _rules(isolated_settings, tenant.business_id)
    assert rule.target == "+972505551234" and rule.hold_in_quiet_hours is True

    member = _login(app, tenant.member)
    read_only = member.get(page)
    assert read_only.status_code == 200
    text = read_only.get_data(as_text=True)
    assert "+972505551234" in text and 'id="rule-form"' not in text
    assert "/delete" not in text and "/test" not in text
    assert member.post(page, data=_rule_form("email", "m@delta.test")).status_code == 403
    assert member.post(f"{page}/{rule.id}/delete").status_code == 403
    assert member.post(f"{page}/{rule.id}/test").status_code == 403

    # Another business's owner: the page, adding, removing and testing do not exist.
    stranger = _login(app, other.owner)
    assert stranger.get(page).status_code == 404
    assert stranger.post(page, data=_rule_form("email", "x@evil.test")).status_code == 404
    assert stranger.post(f"{page}/{rule.id}/delete").status_code == 404
    assert stranger.post(f"{page}/{rule.id}/test").status_code == 404
    # ...nor through their own business's URL.
    own = f"/businesses/{other.business_id}/notifications"
    assert stranger.post(f"{own}/{rule.id}/delete").status_code == 404
    assert stranger.post(f"{own}/{rule.id}/test").status_code == 404
    assert len(_rules(isolated_settings, tenant.business_id)) == 1

    assert owner.post(f"{page}/{rule.id}/delete").status_code == 302
    assert _rules(isolated_settings, tenant.business_id) == []


def test_a_test_alert_reaches_a_real_smtp_server(
    tenant: Tenant,
    isolated_settings: Settings,  # noqa: F811
) -> None:
    server = SmtpServer().start()
    try:
        app = _app(isolated_settings.model_copy(update={"smtp_url": server.url}))
        owner = _login(app, tenant.owner)
        page = f"/businesses/{tenant.business_id}/notifications"
        assert owner.post(page, data=_rule_form("email", "desk@delta.test")).status_code == 302
        (rule,) = _rules(isolated_settings, tenant.business_id)
        sent = owner.post(f"{page}/{rule.id}/test", follow_redirects=True)
        assert "התראת בדיקה נשלחה אל desk@delta.test." in _flash(sent.get_data(as_text=True))
        assert [m["To"] for m in server.inbox] == ["desk@delta.test"]
    finally:
        server.stop()
    # The server is gone: the failure is said, not a 500.
    failed = owner.post(f"{page}/{rule.id}/test", follow_redirects=True)
    assert failed.status_code == 200
    shown = _form_error(failed.get_data(as_text=True), f"test-{rule.id}")
    assert "הבדיקה אל desk@delta.test נכשלה" in shown
    assert len(server.inbox) == 1


def test_user_add_owner_on_the_command_line(
    stack: StackUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    with session_scope() as session:
        spec = BusinessSpec(name=f"Epsilon {secrets.token_hex(3)}", numbers=(unique_number(),))
        business_id = upsert_business(session, spec, stack.settings.greetings_dir).id
    email = f"boss-{secrets.token_hex(4)}@epsilon.test"

    def role() -> MembershipRole | None:
        with session_scope() as session:
            return session.scalar(
                select(Membership.role)
                .join(Membership.user)
                .where(Membership.business_id == business_id)
                .where(User.email == email)
            )

    base = ["user", "add", "--email", email, "--business", str(business_id)]
    assert cli.main([*base, "--password", PASSWORD]) == 0
    assert role() is MembershipRole.MEMBER
    assert cli.main([*base, "--owner"]) == 0
    assert "(owner)" in capsys.readouterr().out
    assert role() is MembershipRole.OWNER
    assert cli.main(base) == 0  # without --owner the membership is left as it is
    assert role() is MembershipRole.OWNER


# --- a call's deliveries -------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    call_sid: str
    failed_id: int
    sent_id: int


def _call_with_deliveries(settings: Settings, business_id: int) -> Delivered:
    """A call with an email that failed for good and an SMS the handset never got."""
    call_sid = new_call_sid()
    with settings_session(settings) as session:
        call = Call(
            call_sid=call_sid,
            business_id=business_id,
            from_number="+972501234567",
            to_number=unique_number(),
            status=CallStatus.COMPLETED,
            started_at=NOW,
            ended_at=NOW + dt.timedelta(seconds=30),
        )
        session.add(call)
        session.flush()
        business = call.business
        assert business is not None
        email = rules.add(
            session, settings, business, rules.NewRule(Channel.EMAIL, f"{call_sid}@delta.test")
        )
        sms = rules.add(session, settings, business, rules.NewRule(Channel.SMS, unique_number()))
        ids = []
        for rule in (email, sms):
            made = deliveries.plan(
                session, call.id, rule, AlertKind.MESSAGE_READY, trigger_at=NOW, held_until=None
            )
            assert made is not None
            ids.append(made)
        failed, sent = (session.get(NotificationDelivery, i) for i in ids)
        assert failed is not None and sent is not None
        deliveries.begin_attempt(failed)
        deliveries.failed_attempt(
            settings,
            failed,
            "550 5.1.1 mailbox unavailable",
            permanent=True,
            code="550",
            now=NOW + dt.timedelta(minutes=1),
        )
        deliveries.begin_attempt(sent)
        deliveries.sent(sent, "SM" + secrets.token_hex(16), NOW + dt.timedelta(minutes=1))
        session.flush()
        assert sent.provider_id is not None
        assert deliveries.provider_reported(session, sent.provider_id, "undelivered", "30003")
        # The rules are gone; their deliveries stay with the call.
        rules.remove(session, business_id, email.id)
        rules.remove(session, business_id, sms.id)
    return Delivered(call_sid, ids[0], ids[1])


def _status(settings: Settings, delivery_id: int) -> DeliveryStatus:
    with settings_session(settings) as session:
        delivery = session.get(NotificationDelivery, delivery_id)
        assert delivery is not None
        return delivery.status


def test_the_call_page_lists_deliveries_and_sends_a_failed_one_again(
    app: Flask,
    tenant: Tenant,
    other: Tenant,
    isolated_settings: Settings,  # noqa: F811
) -> None:
    made = _call_with_deliveries(isolated_settings, tenant.business_id)
    member = _login(app, tenant.member)
    page = member.get(f"/calls/{made.call_sid}").get_data(as_text=True)
    section = page.split('id="notifications"', 1)[1].split("</section>", 1)[0]
    failed_item, sent_item = re.findall(r'<li class="delivery".*?</li>', section, re.S)
    assert f'data-delivery-id="{made.failed_id}"' in failed_item
    assert "נכשלה" in failed_item and "הניסיון האחרון נכשל" in failed_item
    assert "550 5.1.1" not in failed_item, "the stored error is for owners and admins"
    assert "ניסיונות: 1" in failed_item
    assert "שליחה חוזרת" in failed_item
    assert "נשלחה" in sent_item and "לא נמסרה" in sent_item and "30003" in sent_item
    assert "11:31:00" in sent_item  # sent_at in the business's zone (Jerusalem, UTC+2)
    assert "שליחה חוזרת" not in sent_item, "only a failed one is offered again"
    timeline = page.split('class="timeline"', 1)[1].split("</ol>", 1)[0]
    assert "התראה נשלחה" in timeline and "התראה נכשלה" in timeline

    owner = _login(app, tenant.owner).get(f"/calls/{made.call_sid}").get_data(as_text=True)
    assert "550 5.1.1 mailbox unavailable" in owner

    # Another business's member: neither the call nor its delivery.
    stranger = _login(app, other.member)
    retry = f"/calls/{made.call_sid}/notifications/{made.failed_id}/retry"
    assert stranger.post(retry).status_code == 404
    assert _status(isolated_settings, made.failed_id) is DeliveryStatus.FAILED
    foreign = _call_with_deliveries(isolated_settings, other.business_id)
    sneaky = f"/calls/{made.call_sid}/notifications/{foreign.failed_id}/retry"
    assert member.post(sneaky).status_code == 404
    assert _status(isolated_settings, foreign.failed_id) is DeliveryStatus.FAILED

    answer = member.post(retry, follow_redirects=True)
    assert "ההתראה תישלח שוב." in _flash(answer.get_data(as_text=True))
    assert _status(isolated_settings, made.failed_id) is DeliveryStatus.PENDING
    job = fetch_job(redis_client(isolated_settings.redis_url), f"delivery-{made.failed_id}")
    assert job.args == [made.failed_id] or job.args == (made.failed_id,)
    # Pending already: refused, and nothing changes.
    again = member.post(retry, follow_redirects=True)
    assert "אפשר לשלוח שוב רק התראה שנכשלה." in _flash(again.get_data(as_text=True))
    # A sent one is not sent again either.
    sent_retry = f"/calls/{made.call_sid}/notifications/{made.sent_id}/retry"
    member.post(sent_retry)
    assert _status(isolated_settings, made.sent_id) is DeliveryStatus.SENT


def test_a_call_describes_its_notifications(
    app: Flask,
    tenant: Tenant,
    isolated_settings: Settings,  # noqa: F811
) -> None:
    made = _call_with_deliveries(isolated_settings, tenant.business_id)
    with settings_session(isolated_settings) as session:
        call = session.scalar(
            select(Call).options(*call_loading()).where(Call.call_sid == made.call_sid)
        )
        assert call is not None
        described = describe_call(call, isolated_settings.recordings_dir)
        token = create_token(session, tenant.member)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    validator.validate(described)
    failed, sent = described["notifications"]
    assert failed == {
        "channel": "email",
        "recipient": f"{made.call_sid}@delta.test",
        "status": "failed",
        "attempts": 1,
        "sent_at": None,
        "provider_status": None,
        "provider_error_code": "550",
        "error": "550 5.1.1 mailbox unavailable",
    }
    assert sent["channel"] == "sms" and sent["status"] == "sent"
    assert dt.datetime.fromisoformat(sent["sent_at"]) == NOW + dt.timedelta(minutes=1)
    assert sent["provider_status"] == "undelivered" and sent["provider_error_code"] == "30003"

    api = app.test_client().get(
        f"/api/v1/calls/{made.call_sid}", headers={"Authorization": f"Bearer {token}"}
    )
    assert api.status_code == 200
    body = api.get_json()
    # A member's token: the stored error (SMTP replies, hosts) is for admins.
    assert body["notifications"][0]["error"] == "the last attempt failed"
    assert body["notifications"][1] == described["notifications"][1]
    validator.validate(body)


@pytest.fixture(autouse=True)
def _no_leftover_jobs(isolated_settings: Settings) -> Iterator[None]:  # noqa: F811
    yield
    redis_client(isolated_settings.redis_url).flushdb()


def test_moked_call_show_lists_the_notifications(
    stack: StackUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    """On the stack's database (the command's own): failed and sent deliveries are final,
    so the stack's sweep leaves them alone."""
    with session_scope() as session:
        spec = BusinessSpec(name=f"Eta {secrets.token_hex(3)}", numbers=(unique_number(),))
        business_id = upsert_business(session, spec, stack.settings.greetings_dir).id
    made = _call_with_deliveries(stack.settings, business_id)
    capsys.readouterr()
    assert cli.main(["call", "show", made.call_sid]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("notif")]
    assert len(lines) == 2
    assert f"email {made.call_sid}@delta.test failed -" in lines[0]
    assert lines[1].endswith("(undelivered)") and " sms +9723" in lines[1]
    assert cli.main(["call", "show", made.call_sid, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["notifications"]
    assert [n["status"] for n in listed] == ["failed", "sent"]
