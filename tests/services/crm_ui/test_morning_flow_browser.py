"""The receptionist's morning in a real browser (issue 12): open the inbox, play the
voicemail, call the caller back, see the outcome logged, resolve and go to the next call.

Twilio is played by the simulator on the port the stack's services use for Twilio's REST
API, so "Call back" runs the whole loop for real: the CRM's `Calls.create` → the staff
leg answered → the signed `/webhook/callback_connect` through nginx → `<Dial>` to the
caller → signed status callbacks → the attempt `reached`, with its duration.

By taps on a phone-sized and clicks on a desktop viewport, then once with the keyboard
only; screenshots of every step are kept in test-artifacts/.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from moked.accounts import Role, add_user
from moked.db.models import Business, Call, CallbackAttempt
from moked.db.session import session_scope
from moked.simulator.twilio_api import TwilioApiSimulator
from moked.statuses import CallbackStatus, FollowUp
from tests.harness import StackUnderTest
from tests.services.crm_ui.conftest import PASSWORD, Tenant, feed_call
from tests.services.crm_ui.test_browser import login

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
T0 = dt.datetime(2026, 11, 3, 7, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def twilio_sim(stack: StackUnderTest) -> Iterator[TwilioApiSimulator]:
    """Twilio's REST API for the stack's own services, for this module only."""
    sim = TwilioApiSimulator(
        stack.settings.twilio_account_sid,
        stack.settings.twilio_auth_token.get_secret_value(),
        port=stack.twilio_api_port,
        callback_delay=0.05,
    ).start()
    yield sim
    sim.stop()


@dataclass(frozen=True)
class Morning:
    email: str
    user_id: int
    staff_phone: str
    newest: str
    """The voicemail the inbox shows first (the one called back)."""
    older: str
    """The next one down the list."""
    caller: str


def _number(prefix: str) -> str:
    """A number the simulator answers (its no-answer/busy numbers end in 0486/0280)."""
    return f"{prefix}{secrets.randbelow(9000) + 1000:04d}"


def a_morning(
    stack: StackUnderTest, make_business: Callable[..., Business], audio: bytes
) -> Morning:
    """A business, its receptionist (with her phone) and two voicemails of the night."""
    business = make_business(name=f"Morning {secrets.token_hex(3)}")
    email = f"reception-{secrets.token_hex(4)}@moked.test"
    staff_phone = _number("+97254555")
    with session_scope() as session:
        user_id = add_user(
            session, email, role=Role.STAFF, business=business.name, password=PASSWORD,
            phone=staff_phone,
        ).user_id  # fmt: skip
    tenant = Tenant(business, email, business.numbers[0].e164)
    older_caller, caller = _number("+97252555"), _number("+97253555")
    older = feed_call(stack, tenant, "בוקר טוב, אני צריך הצעת מחיר", audio, caller=older_caller)
    newest = feed_call(stack, tenant, "שלום, תחזרו אליי בבקשה לגבי התיקון", audio, caller=caller)
    with session_scope() as session:
        for minutes, fed in ((0, older), (20, newest)):
            call = session.scalar(select(Call).where(Call.call_sid == fed.call_sid))
            assert call is not None
            call.started_at = T0 + dt.timedelta(minutes=minutes)
    return Morning(email, user_id, staff_phone, newest.call_sid, older.call_sid, caller)


def reached_attempt(call_sid: str, timeout: float = 20.0) -> CallbackAttempt:
    """The call's callback attempt once it has its outcome."""
    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            attempt = session.scalar(
                select(CallbackAttempt).join(Call).where(Call.call_sid == call_sid)
            )
            if attempt is not None and (attempt.status.is_final or time.monotonic() > deadline):
                session.expunge(attempt)
                return attempt
        assert time.monotonic() < deadline, "no callback attempt was made"
        time.sleep(0.1)


def follow_up_of(call_sid: str) -> tuple[FollowUp, int | None]:
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        return call.follow_up, call.handled_by_id


def wait_playing(page: Any) -> None:
    """The recording really plays: streamed through nginx and its time moving."""
    page.wait_for_function(
        "() => { const a = document.querySelector('#player');"
        " return a && !a.paused && a.currentTime > 0; }",
        timeout=15000,
    )


def check_called_back(page: Any, morning: Morning, sim: TwilioApiSimulator) -> None:
    """Twilio rang the receptionist from the business's number and dialled the caller;
    the page, reloaded, shows the attempt reached and the call called back."""
    attempt = reached_attempt(morning.newest)
    assert attempt.status is CallbackStatus.REACHED, attempt.error
    assert attempt.user_id == morning.user_id and attempt.duration_seconds == sim.talk_seconds
    placed = sim.wait_for_call(str(attempt.call_sid))
    assert (placed.to, placed.dial_number) == (morning.staff_phone, morning.caller)
    page.reload()
    logged = page.locator(".callback-attempt[data-status='reached']")
    assert logged.count() == 1
    talk = f"{sim.talk_seconds // 60}:{sim.talk_seconds % 60:02d}"
    assert talk in logged.inner_text() and "נענתה" in logged.inner_text()  # reached, 0:42
    assert follow_up_of(morning.newest)[0] is FollowUp.CALLED_BACK
    assert page.locator("#follow-up").inner_text().strip() == "חזרנו"  # called back


def check_resolved_and_next(page: Any, base: str, morning: Morning) -> None:
    page.wait_for_url(re.compile(re.escape(f"{base}/calls/{morning.older}") + r"\?view=open"))
    assert follow_up_of(morning.newest) == (FollowUp.RESOLVED, morning.user_id)
    assert page.locator("#call-back").count() == 1  # the next voicemail, ready for its call


# --- by taps and clicks ---------------------------------------------------------------------


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_morning_flow_by_clicks(
    stack: StackUnderTest,
    make_business: Callable[..., Business],
    audio_bytes: bytes,
    browser: Any,
    artifacts: Path,
    twilio_sim: TwilioApiSimulator,
    viewport: dict[str, int],
) -> None:
    morning = a_morning(stack, make_business, audio_bytes)
    size = "phone" if viewport is PHONE else "desktop"
    base = stack.base
    context = browser.new_context(viewport=viewport, locale="he-IL")
    page = context.new_page()
    try:
        login(page, base, morning.email)

        # The inbox opens on the open calls, newest first.
        rows = page.locator("tr.call-row")
        rows.first.wait_for()
        assert [rows.nth(i).get_attribute("data-call-sid") for i in range(2)] == [
            morning.newest,
            morning.older,
        ]
        page.screenshot(path=str(artifacts / f"morning-{size}-1-inbox.png"), full_page=True)

        rows.first.locator("a.row-link").click()
        page.wait_for_url(f"**/calls/{morning.newest}?view=open")
        page.locator("#player").focus()  # the player's own play control, from its focus
        page.keyboard.press("Space")
        wait_playing(page)
        page.screenshot(path=str(artifacts / f"morning-{size}-2-call.png"), full_page=True)

        page.click("#call-back")
        page.wait_for_url(f"**/calls/{morning.newest}?view=open#callback")
        check_called_back(page, morning, twilio_sim)
        page.screenshot(path=str(artifacts / f"morning-{size}-3-called-back.png"), full_page=True)

        page.click("#resolve-next")
        check_resolved_and_next(page, base, morning)
        page.screenshot(path=str(artifacts / f"morning-{size}-4-next.png"), full_page=True)
    finally:
        context.close()


# --- with the keyboard only -----------------------------------------------------------------


def tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until `selector` holds the focus: it is reachable from the keyboard."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def test_the_morning_flow_with_the_keyboard_only(
    stack: StackUnderTest,
    make_business: Callable[..., Business],
    audio_bytes: bytes,
    browser: Any,
    artifacts: Path,
    twilio_sim: TwilioApiSimulator,
) -> None:
    morning = a_morning(stack, make_business, audio_bytes)
    base = stack.base
    context = browser.new_context(viewport=DESKTOP, locale="he-IL")
    page = context.new_page()
    try:
        page.goto(base + "/login")
        tab_to(page, "#email")
        page.keyboard.type(morning.email)
        tab_to(page, "#password")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        # The inbox loaded: its rows are parsed before app.js (deferred) sets up the keys.
        page.wait_for_url(re.compile(re.escape(base) + r"/(\?.*)?$"))
        page.locator("tr.call-row").first.wait_for()

        page.keyboard.press("j")  # the first (newest) row
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/calls/{morning.newest}?view=open")
        tab_to(page, "#player")
        page.keyboard.press("Space")
        wait_playing(page)

        page.keyboard.press("c")  # call back
        page.wait_for_url(f"**/calls/{morning.newest}?view=open#callback")
        check_called_back(page, morning, twilio_sim)
        page.screenshot(path=str(artifacts / "morning-keyboard-called-back.png"), full_page=True)

        page.keyboard.press("e")  # resolve and next
        check_resolved_and_next(page, base, morning)
        page.screenshot(path=str(artifacts / "morning-keyboard-next.png"), full_page=True)
    finally:
        context.close()
