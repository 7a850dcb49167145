"""Notifications end to end, in a real browser against the running stack: an owner adds an
email rule in the CRM, a voicemail comes in through Twilio's signed webhooks, and the
stack's own processes (the reconciler's sweep plans the alert, the notifier sends it, the
development mail sink receives it) put "notification sent" on the call's timeline."""

from __future__ import annotations

import email.policy
import secrets
import time
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from moked.accounts import add_user
from moked.db.session import session_scope
from tests.harness import StackUnderTest
from tests.services.crm_ui.conftest import PASSWORD, Tenant, feed_call
from tests.services.crm_ui.test_browser import (
    assert_accessible_forms,
    assert_fits_the_screen,
    login,
)

TRANSCRIPT = "שלום, זה יוסי. הדוד במקלחת דולף, תחזרו אליי בבקשה."


def _mail_to(mail_dir: Path, address: str, timeout: float = 30.0) -> list[Any]:
    """The messages the stack's mail sink stored for `address` (waits for the first)."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in sorted(mail_dir.glob("*.eml")) if mail_dir.is_dir() else []:
            message = BytesParser(policy=email.policy.default).parsebytes(path.read_bytes())
            if address in str(message["To"]):
                found.append(message)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_an_owner_adds_an_email_rule_and_the_voicemail_alert_shows_on_the_call(
    stack: StackUnderTest, make_business: Any, browser: Any, audio_bytes: bytes, artifacts: Path
) -> None:
    business = make_business(name=f"Zeta Plumbing {secrets.token_hex(3)}")
    owner = f"owner-{secrets.token_hex(4)}@zeta.test"
    with session_scope() as session:
        add_user(session, owner, business=str(business.id), password=PASSWORD, owner=True)
    inbox = f"desk-{secrets.token_hex(4)}@zeta.test"

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="he-IL")
    page = context.new_page()
    try:
        login(page, stack.base, owner)
        page.goto(f"{stack.base}/businesses/{business.id}")
        page.click("#notifications-link")
        page.wait_for_url(f"**/businesses/{business.id}/notifications")
        assert_accessible_forms(page)
        page.select_option("#rule-channel", "email")
        page.fill("#rule-recipient", inbox)
        page.select_option("#rule-when", "message")
        # The form redirects back to the URL the page is already on: wait for the new page.
        with page.expect_navigation(url=f"**/businesses/{business.id}/notifications"):
            page.click("#rule-form button[type=submit]")
        assert inbox in page.locator("ul.rules").inner_text()
        assert "כלל התראה נוסף" in page.locator(".flashes").inner_text()
        page.screenshot(path=str(artifacts / "crm-notifications.png"), full_page=True)

        tenant = Tenant(business=business, staff_email=owner, number=business.numbers[0].e164)
        call = feed_call(stack, tenant, TRANSCRIPT, audio_bytes)

        # The stack sends it: the reconciler's sweep plans the alert, the notifier sends it
        # to the development mail sink.
        (message,) = _mail_to(stack.settings.mail_dir, inbox)
        assert "יוסי" in message.get_body(preferencelist=("plain",)).get_content()

        page.goto(f"{stack.base}/calls/{call.call_sid}")
        deadline = time.monotonic() + 20
        while "התראה נשלחה" not in page.locator(".timeline").inner_text():
            assert time.monotonic() < deadline, page.locator(".timeline").inner_text()
            time.sleep(0.5)
            page.reload()
        delivery = page.locator("#notifications li.delivery")
        assert delivery.count() == 1
        text = delivery.inner_text()
        assert inbox in text and "נשלחה" in text and "ניסיונות: 1" in text
        assert delivery.get_attribute("data-status") == "sent"
        assert page.locator("#notifications form").count() == 0, "nothing to send again"
        page.screenshot(path=str(artifacts / "crm-call-notifications.png"), full_page=True)

        # The rules page on a phone: nothing sticks out sideways.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{stack.base}/businesses/{business.id}/notifications")
        assert_fits_the_screen(page)
        page.goto(f"{stack.base}/calls/{call.call_sid}")
        assert_fits_the_screen(page)
    finally:
        context.close()
