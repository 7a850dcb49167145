"""The caller card and the blocked-callers list in a real browser: named and blocked by
clicks, every control named, nothing off a phone's screen; screenshots kept as artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moked import callers
from moked.db.session import session_scope
from tests.harness import StackUnderTest
from tests.helpers import unique_caller
from tests.services.crm_ui.conftest import Tenant, feed_call
from tests.services.crm_ui.test_browser import (
    assert_accessible_forms,
    assert_fits_the_screen,
    login,
)


def a_caller() -> str:
    return unique_caller()


def test_name_and_block_a_caller_by_clicks_on_a_desktop_and_a_phone(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    browser: Any,
    audio_bytes: bytes,
    artifacts: Path,
) -> None:
    tenant = tenants[0]
    number = a_caller()
    feed_call(stack, tenant, "שלום, זו שיחה ראשונה", audio_bytes, caller=number)
    call = feed_call(stack, tenant, "שוב אני, תחזרו אליי", audio_bytes, caller=number)

    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="he-IL")
    page = context.new_page()
    try:
        login(page, stack.base, tenant.staff_email)
        page.goto(f"{stack.base}/?business={tenant.business.id}")
        row = page.locator(f"tr[data-call-sid='{call.call_sid}']")
        assert "שיחה מס׳ 2 השבוע" in row.inner_text()

        page.goto(f"{stack.base}/calls/{call.call_sid}")
        assert page.locator("#caller .caller-call").count() == 2
        page.fill("#caller-name", "דנה כהן")
        page.click("form.caller-name-form button[type=submit]")
        page.wait_for_selector("#caller .caller-name")
        assert page.inner_text("#caller .caller-name") == "דנה כהן"
        assert "דנה כהן" in page.inner_text("h1")  # the name heads the page
        assert_accessible_forms(page)

        page.click("#block-caller")
        page.wait_for_selector("#caller-blocked")
        page.screenshot(path=str(artifacts / "crm-caller.png"), full_page=True)
        with session_scope() as session:
            caller = callers.find(session, tenant.business.id, number)
            assert caller is not None and caller.blocked and caller.name == "דנה כהן"

        page.goto(f"{stack.base}/businesses/{tenant.business.id}/callers")
        listed = page.locator(f"tr[data-number='{number}']")
        assert "חסום" in listed.inner_text() and "דנה כהן" in listed.inner_text()
        assert_accessible_forms(page)
        page.screenshot(path=str(artifacts / "crm-callers.png"), full_page=True)

        page.set_viewport_size({"width": 390, "height": 844})
        for path in (f"/calls/{call.call_sid}", f"/businesses/{tenant.business.id}/callers"):
            page.goto(stack.base + path)
            assert_fits_the_screen(page)
        page.screenshot(path=str(artifacts / "crm-callers-phone.png"), full_page=True)

        listed = page.locator(f"tr[data-number='{number}']")
        # The unblock's answer is a new page: wait for it (the old one is "loaded" already).
        with page.expect_navigation():
            listed.locator("button[type=submit]").last.click()
        assert page.locator(f"tr[data-number='{number}']").count() == 0
    finally:
        context.close()
