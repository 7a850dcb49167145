"""The whole path with nothing faked on our side: a voicemail through Twilio's signed
webhooks, the real transcriber workers fetching it from a Twilio double, and the CRM showing
the call, then its transcript, without a reload; the stored audio plays from the call page."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest

from moked.accounts import Role, add_user
from moked.db.session import session_scope
from tests.harness import StackUnderTest
from tests.services.crm_ui.conftest import PASSWORD
from tests.services.crm_ui.test_browser import login
from tests.services.transcriber.audio import VOICEMAIL_TEXT, telephone_mp3
from tests.services.transcriber.conftest import leave_voicemail, wait_for
from tests.services.transcriber.doubles import TwilioDouble


@pytest.mark.slow
def test_voicemail_reaches_the_inbox_and_its_transcript_appears_live(
    stack: StackUnderTest, twilio_api: TwilioDouble, make_business: Any, browser: Any
) -> None:
    business = make_business(name=f"Bakery {secrets.token_hex(3)}", language="en-US")
    email = f"baker-{secrets.token_hex(3)}@bakery.test"
    with session_scope() as session:
        add_user(session, email, role=Role.STAFF, business=str(business.id), password=PASSWORD)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        login(page, stack.base, email)
        page.evaluate("window.__sameDocument = true")

        message = leave_voicemail(stack, twilio_api, business, telephone_mp3(VOICEMAIL_TEXT))
        row = page.locator(f"tr[data-call-sid='{message.call_sid}']")
        row.wait_for(timeout=30000)
        done = wait_for(message.recording_sid)
        assert done.processing_status.value == "ready", done.error
        # The list refreshes itself: the transcript shows up in the row.
        page.wait_for_function(
            "sid => { const r = document.querySelector(`tr[data-call-sid='${sid}']`);"
            " return r && /cake/i.test(r.innerText); }",
            arg=message.call_sid,
            timeout=30000,
        )
        assert page.evaluate("window.__sameDocument") is True

        row.locator("a.row-link").click()
        page.wait_for_url(f"**/calls/{message.call_sid}?view=open")
        # A real transcript comes with timed segments: the sentences staff click to seek.
        assert re.search(r"birthday", page.locator("#segments").inner_text(), re.I)
        assert page.locator("#segments .segment").count() >= 1
        page.wait_for_function(
            "() => { const a = document.querySelector('#player');"
            " return a && a.readyState >= 1 && a.duration > 5; }",
            timeout=15000,
        )
        page.goto(f"{stack.base}/?q=birthday")
        assert page.locator(f"tr[data-call-sid='{message.call_sid}']").count() == 1
    finally:
        context.close()
