"""The transcript's sentences in a real browser (issue 15): a click seeks the player there,
the sentence being heard is highlighted while it plays, and search words are marked."""

from __future__ import annotations

from typing import Any

import pytest

from moked import recordings
from moked.db.session import session_scope
from moked.statuses import ProcessingStatus
from moked.transcripts import Segment
from tests.harness import StackUnderTest
from tests.services.crm_ui.conftest import Tenant, feed_call
from tests.services.crm_ui.test_browser import login
from tests.services.transcriber.audio import VOICEMAIL_TEXT, telephone_mp3

SEGMENTS = (
    Segment(0.0, 2.8, "Hello, this is Dana from the bakery.", -0.3, 0.05, 0.0),
    Segment(2.8, 7.3, "Please call me back about the birthday cake order.", -0.4, 0.05, 0.0),
    Segment(7.3, 8.6, "Thank you very much.", -0.2, 0.05, 0.0),
)


@pytest.fixture(scope="module")
def a_call(stack: StackUnderTest, tenants: tuple[Tenant, Tenant]) -> Any:
    """A voicemail whose transcript came in timed segments (written as the worker does)."""
    fed = feed_call(
        stack,
        tenants[0],
        None,
        telephone_mp3(VOICEMAIL_TEXT),
        processing=ProcessingStatus.TRANSCRIBING,
    )
    text = " ".join(s.text for s in SEGMENTS)
    transcript = recordings.Transcript(
        text, "en", "local", "whisper-base", 8.8, segments=SEGMENTS, detected_language="en",
        language_probability=0.93,
    )  # fmt: skip
    with session_scope() as session:
        assert recordings.finish(session, fed.recording_sid, transcript) is ProcessingStatus.READY
    return fed


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="he-IL")
    page = context.new_page()
    yield page
    context.close()


def test_a_sentence_click_seeks_the_player_and_the_heard_one_is_highlighted(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], a_call: Any, page: Any
) -> None:
    login(page, stack.base, tenants[0].staff_email)
    page.goto(f"{stack.base}/calls/{a_call.call_sid}?q=cake")
    page.wait_for_function(
        "() => { const a = document.querySelector('#player');"
        " return a && a.readyState >= 1 && a.duration > 0; }",
        timeout=15000,
    )
    sentences = page.locator("#segments .segment")
    assert sentences.count() == len(SEGMENTS)
    assert sentences.nth(1).locator("mark").inner_text() == "cake"

    page.evaluate("document.querySelector('#player').muted = true")
    sentences.nth(1).click()
    at = page.evaluate("document.querySelector('#player').currentTime")
    assert SEGMENTS[1].start <= at < SEGMENTS[1].end, at
    page.wait_for_selector("#segments .segment.is-current")
    assert sentences.nth(1).get_attribute("aria-current") == "true"

    # Playing on (or seeking elsewhere) moves the highlight with the player.
    page.evaluate(f"document.querySelector('#player').currentTime = {SEGMENTS[2].start + 0.2}")
    page.wait_for_function(
        "() => document.querySelectorAll('#segments .segment')[2].classList.contains('is-current')"
    )
    assert sentences.nth(1).get_attribute("aria-current") is None

    # The keyboard reaches a sentence too.
    sentences.nth(0).focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.querySelector('#player').currentTime") < SEGMENTS[0].end
    # Hebrew first: "Language: English · detected, 93%".
    assert page.locator("#transcript-language").inner_text() == "שפה: אנגלית · זוהתה, 93%"
