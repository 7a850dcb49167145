"""Triage with the keyboard only, in a real browser (issue 12, item 6): j/k through the inbox,
Enter to open, ? for the help and Esc to close it, e to resolve and go on, k back, c to call
back; nothing fires while typing in a field."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from moked.accounts import Role, add_user
from moked.db.models import Business, Call, CallbackAttempt
from moked.db.session import session_scope
from moked.statuses import FollowUp
from tests.harness import StackUnderTest
from tests.services.crm_ui.conftest import PASSWORD, Tenant, feed_call
from tests.services.crm_ui.test_browser import login

T0 = dt.datetime(2026, 11, 3, 8, 0, tzinfo=dt.UTC)


def highlighted(page: Any) -> str:
    """The CallSid of the highlighted row, which must also hold the focus."""
    return str(
        page.evaluate(
            """() => { const row = document.querySelector('tr.call-row.is-highlighted');
                       const focused = document.activeElement.closest('tr.call-row');
                       return row && row === focused ? row.dataset.callSid : ''; }"""
        )
    )


def test_keyboard_only_triage(
    stack: StackUnderTest,
    make_business: Callable[..., Business],
    audio_bytes: bytes,
    browser: Any,
    artifacts: Path,
) -> None:
    business = make_business(name=f"Keyboard {secrets.token_hex(3)}")
    email = f"keys-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        user_id = add_user(
            session, email, role=Role.STAFF, business=business.name, password=PASSWORD,
            phone="+972545550177",
        ).user_id  # fmt: skip
    tenant = Tenant(business, email, business.numbers[0].e164)
    fed = [
        feed_call(stack, tenant, f"הודעה מספר {i}", audio_bytes, caller=f"+97252555012{i}")
        for i in range(3)
    ]
    with session_scope() as session:
        for i, one in enumerate(fed):
            call = session.scalar(select(Call).where(Call.call_sid == one.call_sid))
            assert call is not None
            call.started_at = T0 + dt.timedelta(minutes=i)
    oldest, middle, newest = (one.call_sid for one in fed)
    base = stack.base

    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="he-IL")
    try:
        run_with_the_keyboard(
            context.new_page(), base, email, user_id, oldest, middle, newest, artifacts
        )
    finally:
        context.close()


def run_with_the_keyboard(
    page: Any, base: str, email: str, user_id: int, oldest: str, middle: str, newest: str,
    artifacts: Path,
) -> None:  # fmt: skip
    login(page, base, email)
    page.goto(base + "/")  # the inbox opens on the Open view
    page.locator("tr.call-row").first.wait_for()
    steps = []
    for key in ("j", "j", "j", "k", "k", "j"):
        page.keyboard.press(key)
        steps.append(highlighted(page))
    assert steps == [newest, middle, oldest, middle, newest, middle]
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/calls/{middle}?view=open")

    # The help: a modal dialog that takes the focus, and Esc gives it back.
    page.keyboard.press("?")
    help_dialog = page.get_by_role("dialog", name="קיצורי מקלדת")
    help_dialog.wait_for(state="visible")
    assert page.evaluate("document.activeElement.id") == "shortcuts-close"
    assert "סימון כטופלה ומעבר לשיחה הבאה" in help_dialog.inner_text()
    page.screenshot(path=str(artifacts / "crm-shortcuts.png"))
    page.keyboard.press("Escape")
    help_dialog.wait_for(state="hidden")
    assert not page.evaluate(
        "document.getElementById('shortcuts-help').contains(document.activeElement)"
    )

    # e: resolved, and on to the next open call.
    page.keyboard.press("e")
    page.wait_for_url(f"{base}/calls/{oldest}?view=open")
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == middle))
        assert call is not None
        assert call.follow_up is FollowUp.RESOLVED and call.handled_by_id == user_id
    # k: the previous open call; the resolved one has left the list.
    page.keyboard.press("k")
    page.wait_for_url(f"{base}/calls/{newest}?view=open")

    # c: Moked calls the user's phone (the test stack's Twilio is unreachable: it fails).
    page.keyboard.press("c")
    # Back on the same call, in the same list, at the callback card (or its form's error).
    page.wait_for_url(re.compile(re.escape(f"{base}/calls/{newest}?view=open#callback")))
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == newest))
        assert call is not None
        attempts = session.scalars(
            select(CallbackAttempt).where(CallbackAttempt.call_id == call.id)
        ).all()
        assert [a.user_id for a in attempts] == [user_id]

    # Typing a note: the letters are the note's, no shortcut fires.
    page.focus("#note-body")
    page.keyboard.type("jek?")
    assert page.input_value("#note-body") == "jek?"
    assert page.url.startswith(f"{base}/calls/{newest}?view=open#callback")
    assert page.locator("#shortcuts-help[open]").count() == 0
