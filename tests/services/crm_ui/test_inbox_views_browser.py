"""The inbox's saved views and bulk bar in a real browser (the script's part): "check every
call on this page", the count of checked calls, a bulk resolve that returns to the same view,
by keyboard; every control named, nothing off a phone's screen; screenshots as artifacts."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import select

from moked.accounts import Role, add_user
from moked.db.models import Call
from moked.db.session import session_scope
from moked.statuses import CallStatus, FollowUp
from tests.harness import StackUnderTest
from tests.helpers import new_call_sid, unique_number
from tests.services.crm_ui.conftest import PASSWORD
from tests.services.crm_ui.test_browser import (
    assert_accessible_forms,
    assert_fits_the_screen,
    login,
)


def test_check_all_and_resolve_in_bulk_by_keyboard(
    stack: StackUnderTest, browser: Any, make_business: Any, artifacts: Path
) -> None:
    business = make_business(name=f"Bulk {secrets.token_hex(3)}", numbers=(unique_number(),))
    email = f"staff-{secrets.token_hex(4)}@bulk.test"
    sids = [new_call_sid() for _ in range(3)]
    with session_scope() as session:
        add_user(session, email, role=Role.STAFF, business=str(business.id), password=PASSWORD)
        for i, sid in enumerate(sids):
            session.add(
                Call(
                    call_sid=sid,
                    business_id=business.id,
                    from_number=f"+97252{secrets.randbelow(10**7):07d}",
                    to_number=business.numbers[0].e164,
                    status=CallStatus.COMPLETED,
                    started_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=i),
                    duration_seconds=12,
                )
            )

    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="he-IL")
    page = context.new_page()
    try:
        login(page, stack.base, email)
        assert page.get_attribute(".view-tab[aria-current=page]", "data-view") == "open"
        assert page.inner_text("[data-view-count=open]") == "3"
        assert_accessible_forms(page)

        # The actions appear once a call is checked (on a phone the calls come first).
        assert not page.is_visible("#bulk-resolve") and not page.is_visible("#bulk-tag")
        page.focus("#select-all")
        page.keyboard.press("Space")
        assert page.locator(".row-select:checked").count() == 3
        assert page.is_visible("#bulk-resolve") and page.is_visible("#bulk-tag")
        assert "3" in page.inner_text("#bulk-count")
        page.locator(".row-select").first.focus()
        page.keyboard.press("Space")  # one unchecked again
        assert page.locator(".row-select:checked").count() == 2
        assert page.evaluate("document.getElementById('select-all').indeterminate")
        page.screenshot(path=str(artifacts / "crm-inbox-bulk.png"), full_page=True)

        page.focus("#bulk-resolve")
        # The answer is a new page: its flash can be parsed before its rows and counts.
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "2 שיחות סומנו כטופלו." in page.inner_text(".flashes")
        assert page.get_attribute(".view-tab[aria-current=page]", "data-view") == "open"
        assert page.locator("tr.call-row").count() == 1
        assert page.inner_text("[data-view-count=all]") == "3"

        page.set_viewport_size({"width": 390, "height": 844})
        assert_fits_the_screen(page)
        page.screenshot(path=str(artifacts / "crm-inbox-bulk-mobile.png"), full_page=True)
    finally:
        context.close()
    with session_scope() as session:
        rows = session.execute(select(Call.call_sid, Call.follow_up).where(Call.call_sid.in_(sids)))
        states = {sid: state for sid, state in rows}
    # The first (newest) row was unchecked: it alone is still open.
    assert states == {sids[0]: FollowUp.NEW, sids[1]: FollowUp.RESOLVED, sids[2]: FollowUp.RESOLVED}
