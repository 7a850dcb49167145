"""The call page on a 375 px phone in a real browser (issue 12): 300-letter words in the
transcript, a note and the caller's name wrap instead of widening the page, a refused form's
error is on screen inside that form, and every control reached with Tab shows a focus ring
(WCAG 2.2 focus-visible)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moked import recordings
from moked.db.session import session_scope
from moked.statuses import ProcessingStatus
from moked.transcripts import Segment
from tests.harness import StackUnderTest
from tests.services.crm_ui.conftest import Tenant, feed_call
from tests.services.crm_ui.test_browser import login
from tests.services.crm_ui.test_callers_browser import a_caller

WORD = "ש" * 300
URL = "https://example.test/" + "a" * 280
SEGMENTS = (
    Segment(0.0, 1.0, f"שלום {WORD}", -0.3, 0.05, 0.0),
    Segment(1.0, 2.0, f"הקישור {URL}", -0.3, 0.05, 0.0),
)
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  return {what: el.tagName + '#' + el.id + '.' + el.className, style: style.outlineStyle,
          width: parseFloat(style.outlineWidth)};
}"""


def test_long_words_wrap_errors_show_in_their_form_and_every_control_shows_focus(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    browser: Any,
    audio_bytes: bytes,
    artifacts: Path,
) -> None:
    fed = feed_call(
        stack, tenants[0], None, audio_bytes,
        caller=a_caller(), processing=ProcessingStatus.TRANSCRIBING,
    )  # fmt: skip
    transcript = recordings.Transcript(
        " ".join(s.text for s in SEGMENTS), "he", "local", "test", 2.0, segments=SEGMENTS
    )
    with session_scope() as session:
        assert recordings.finish(session, fed.recording_sid, transcript) is ProcessingStatus.READY

    context = browser.new_context(viewport={"width": 375, "height": 812}, locale="he-IL")
    page = context.new_page()
    try:
        login(page, stack.base, tenants[0].staff_email)
        page.goto(f"{stack.base}/calls/{fed.call_sid}")
        page.fill("#note-body", f"{WORD} {URL}")
        page.click("#note-form button[type=submit]")
        page.wait_for_selector(".notes li")
        page.fill("#caller-name", "ד" * 200)
        page.click("#caller-name-form button[type=submit]")
        page.wait_for_selector("#caller .caller-name")
        page.fill("#tag-name", "ת" * 64)
        page.click("#tag-form button[type=submit]")
        page.wait_for_selector("#tags .tag-list .tag")

        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths
        page.screenshot(path=str(artifacts / "crm-call-long-words-phone.png"), full_page=True)
        business = f"/businesses/{fed.business_id}"
        for path in ("/", "/?view=all", "/account", business, f"{business}/notifications"):
            page.goto(stack.base + path)
            widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert widths[0] <= widths[1], (path, widths)
        page.goto(f"{stack.base}/calls/{fed.call_sid}")

        # A refused note: the page lands on the form, its error on screen inside it.
        page.fill("#note-body", "   ")
        page.click("#note-form button[type=submit]")
        page.wait_for_url("**#note-form")
        error = page.locator("#note-form #note-form-error[role=alert]")
        assert error.inner_text() == "הערה לא יכולה להיות ריקה."
        assert page.evaluate(
            """() => { const r = document.querySelector('#note-form-error').getBoundingClientRect();
                       return r.top >= 0 && r.bottom <= window.innerHeight; }"""
        ), "the error is off screen"
        assert page.get_attribute("#note-body", "aria-describedby") == "note-form-error"
        page.screenshot(path=str(artifacts / "crm-call-form-error-phone.png"))

        # Tab through the whole page: every stop shows a ring of at least 2px.
        page.goto(f"{stack.base}/calls/{fed.call_sid}")
        seen: list[dict[str, Any]] = []
        for _ in range(150):
            page.keyboard.press("Tab")
            focused = page.evaluate(FOCUSED)
            if focused is None or (seen and focused["what"] == seen[0]["what"]):
                break
            seen.append(focused)
        kinds = {s["what"].split("#")[0] for s in seen}
        assert {"A", "BUTTON", "INPUT", "SELECT", "TEXTAREA", "AUDIO", "SPAN"} <= kinds, kinds
        assert any(".segment" in s["what"] or "segment" in s["what"] for s in seen)
        ringless = [s for s in seen if s["style"] == "none" or s["width"] < 2]
        assert not ringless, ringless
    finally:
        context.close()
