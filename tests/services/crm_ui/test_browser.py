"""The CRM in a real browser (Debian's chromium, headless) against the running stack."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from moked.accounts import add_user
from moked.db.models import Business, Recording
from moked.db.session import session_scope
from moked.greetings import synthesize_mp3
from moked.statuses import ProcessingStatus
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, settle
from tests.services.crm_ui.conftest import PASSWORD, Tenant, feed_call
from tests.services.webhooks.test_call_path import parse_twiml

HEBREW_TRANSCRIPT = (
    "שלום, קוראים לי דנה כהן. אני צריכה דחוף לאינסטלטור, יש נזילה מתחת לכיור במטבח."
    " The boiler is leaking too. אפשר לחזור אליי היום אחרי הצהריים? תודה רבה."
)


def login(page: Any, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(re.compile(re.escape(base) + r"/(\?.*)?$"))


def assert_accessible_forms(page: Any) -> None:
    """Every visible form control has a name (label, aria-label); html has lang and dir."""
    unnamed = page.evaluate(
        """() => Array.from(document.querySelectorAll('input, select, textarea, button'))
            .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !(el.tagName === 'BUTTON' && el.textContent.trim()))
            .map(el => el.outerHTML.slice(0, 120))"""
    )
    assert unnamed == []
    assert page.evaluate("document.documentElement.lang") in ("he", "en")
    assert page.locator("main#main").count() == 1


def assert_fits_the_screen(page: Any) -> None:
    """Nothing sticks out sideways on a phone (in RTL, overflow goes left)."""
    outside = page.evaluate(
        """() => Array.from(document.querySelectorAll('body *'))
            .filter(el => el.offsetParent !== null && !el.closest('.visually-hidden'))
            .filter(el => { const r = el.getBoundingClientRect(), w = window.innerWidth;
                            return r.width > 0 && (r.left < -1 || r.right > w + 1); })
            .map(el => el.tagName + '.' + el.className)"""
    )
    assert outside == []


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="he-IL")
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="module")
def a_call(stack: StackUnderTest, tenants: tuple[Tenant, Tenant], audio_bytes: bytes) -> Any:
    return feed_call(stack, tenants[0], HEBREW_TRANSCRIPT, audio_bytes)


def test_staff_sees_the_call_hears_it_tags_it_and_finds_it(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], a_call: Any, page: Any, artifacts: Path
) -> None:
    tenant = tenants[0]
    login(page, stack.base, tenant.staff_email)

    # Hebrew first, right to left.
    assert page.get_attribute("html", "lang") == "he"
    assert page.get_attribute("html", "dir") == "rtl"
    row = page.locator(f"tr[data-call-sid='{a_call.call_sid}']")
    row.wait_for()
    assert "לאינסטלטור" in row.inner_text()
    assert "050-123-4567" in row.inner_text()  # the caller, formatted
    assert "הסתיימה" in row.inner_text()  # call status: completed
    assert "מוכן" in row.inner_text()  # processing status: ready

    # The call page: transcript, timeline, and the recording streamed through nginx.
    audio_responses: list[Any] = []
    page.on(
        "response",
        lambda r: (
            audio_responses.append(r) if f"/recordings/{a_call.recording_sid}/" in r.url else None
        ),
    )
    row.locator("a.row-link").click()  # within the inbox's list (its view): it rides along
    page.wait_for_url(f"**/calls/{a_call.call_sid}?view=open")
    assert HEBREW_TRANSCRIPT in page.locator("blockquote.transcript").inner_text()
    timeline = page.locator(".timeline").inner_text()
    assert "התקבלה שיחה" in timeline and "הודעה הוקלטה" in timeline
    page.wait_for_function(
        "() => { const a = document.querySelector('#player');"
        " return a && a.readyState >= 1 && a.duration > 0; }",
        timeout=15000,
    )
    assert audio_responses, "the audio element never requested the recording"
    first = audio_responses[0]
    assert first.status in (200, 206)
    assert first.headers["content-type"].startswith("audio/")
    page.click(".speed-btn[data-rate='2']")
    assert page.evaluate("document.querySelector('#player').playbackRate") == 2
    assert page.get_attribute(".speed-btn[data-rate='2']", "aria-pressed") == "true"

    # Tag it from the per-business vocabulary.
    page.fill("#tag-name", "חזרה ללקוח")
    page.click("form.tag-form button[type=submit]")
    page.wait_for_url(f"**/calls/{a_call.call_sid}?view=open#tags")
    assert "חזרה ללקוח" in page.locator("#tags .tag-list").inner_text()

    # A note for the team, assign it to someone, and the page as staff see it.
    page.fill("#note-body", "התקשרתי ללקוחה, נקבע ביקור למחר ב-10:00.")
    page.click("#notes button[type=submit]")
    page.wait_for_url(f"**/calls/{a_call.call_sid}?view=open#notes")
    assert "נקבע ביקור" in page.locator("ol.notes").inner_text()
    page.select_option("#assignee", label=tenant.staff_email)
    page.click("form.assign-form button[type=submit]")
    page.wait_for_url(f"**/calls/{a_call.call_sid}?view=open")
    with page.expect_navigation(url=f"**/calls/{a_call.call_sid}?view=open"):  # the same URL
        page.click("#mark-handled")
    assert "טופלה" in page.locator(".facts").inner_text()
    # "Mark handled" resolves the call's follow-up; the timeline says so, with who.
    timeline = page.locator(".timeline").inner_text()
    assert "מעקב: טופלה" in timeline
    assert tenant.staff_email in timeline
    page.wait_for_function("() => document.querySelector('#player').readyState >= 1")
    assert_accessible_forms(page)
    page.screenshot(path=str(artifacts / "crm-call.png"), full_page=True)

    # Find it again: an English word, a Hebrew word inside a prefixed form, and the tag.
    # It is handled now: the inbox opens on open calls, so search All.
    for query in ("boiler", "אינסטלטור", "נזילה כיור"):
        page.goto(stack.base + "/?view=all")
        page.fill("#q", query)
        page.press("#q", "Enter")
        page.wait_for_url("**/?q=*")
        row = page.locator(f"tr[data-call-sid='{a_call.call_sid}']")
        assert row.count() == 1, query
        marked = [m.lower() for m in row.locator("mark").all_inner_texts()]
        assert query.split()[0].lower() in marked, (query, marked)
        if query == "אינסטלטור":
            page.screenshot(path=str(artifacts / "crm-search.png"))
    page.goto(stack.base + "/?view=all&tag=" + requests.utils.quote("חזרה ללקוח"))
    assert page.locator(f"tr[data-call-sid='{a_call.call_sid}']").count() == 1
    page.goto(stack.base + "/?q=" + requests.utils.quote("מילה-שלא-קיימת-" + secrets.token_hex(3)))
    assert page.locator("tr.call-row").count() == 0
    assert "אין שיחות מתאימות" in page.content()

    page.goto(stack.base + "/?handled=open")
    assert page.locator(f"tr[data-call-sid='{a_call.call_sid}']").count() == 0
    page.goto(stack.base + "/?handled=handled&assignee=me")
    assert page.locator(f"tr[data-call-sid='{a_call.call_sid}']").count() == 0, "not open"
    page.goto(stack.base + "/?view=all&handled=handled&assignee=me")
    assert page.locator(f"tr[data-call-sid='{a_call.call_sid}']").count() == 1
    page.goto(stack.base + "/?view=all")
    page.locator(f"tr[data-call-sid='{a_call.call_sid}']").wait_for()
    assert_accessible_forms(page)
    page.screenshot(path=str(artifacts / "crm-inbox.png"), full_page=True)


def test_new_calls_and_transcripts_appear_without_reload(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], audio_bytes: bytes, page: Any
) -> None:
    tenant = tenants[0]
    login(page, stack.base, tenant.staff_email)
    page.evaluate("window.__sameDocument = true")

    # Awaiting media: Twilio has not reported the recording completed, so no worker or
    # reconciler touches it; the test plays the transcriber's part below.
    pending = feed_call(
        stack, tenant, None, audio_bytes, processing=ProcessingStatus.AWAITING_MEDIA
    )
    page.locator(f"tr[data-call-sid='{pending.call_sid}']").wait_for(timeout=20000)
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"

    page.goto(f"{stack.base}/calls/{pending.call_sid}")
    assert "ממתין להקלטה" in page.locator("#transcript").inner_text()
    assert page.get_attribute("#transcript", "data-pending") == "1"
    page.evaluate("window.__sameDocument = true")
    with session_scope() as session:
        settle(
            session,
            pending.recording_sid,
            ProcessingStatus.READY,
            transcript="הודעה שהגיעה עכשיו, תתקשרו בבקשה",
        )
    page.locator("blockquote.transcript").wait_for(timeout=20000)
    assert "הודעה שהגיעה עכשיו" in page.locator("blockquote.transcript").inner_text()
    assert page.evaluate("window.__sameDocument") is True


def test_upload_greeting_and_incoming_call_plays_it(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    page: Any,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    tenant = tenants[1]
    mp3 = tmp_path / "greeting.mp3"
    mp3.write_bytes(synthesize_mp3(f"shalom {secrets.token_hex(2)}", "he"))
    owner = f"owner-{secrets.token_hex(4)}@beta.test"  # owners manage greetings
    with session_scope() as session:
        add_user(session, owner, business=str(tenant.business.id), owner=True, password=PASSWORD)
    login(page, stack.base, owner)
    page.goto(f"{stack.base}/businesses/{tenant.business.id}")

    # Not audio: refused with a readable Hebrew reason.
    fake = tmp_path / "fake.mp3"
    fake.write_bytes(b"not audio at all " * 100)
    page.set_input_files("#greeting-file", str(fake))
    page.click("form.upload button[type=submit]")
    page.wait_for_url("**#greeting-upload")  # the error inside the form that refused it
    assert "הקובץ אינו MP3" in page.locator("#greeting-upload-error[role=alert]").inner_text()

    page.set_input_files("#greeting-file", str(mp3))
    page.click("form.upload button[type=submit]")
    page.wait_for_url("**#greeting")
    assert "פעילה עכשיו" in page.locator(".flashes").inner_text()
    with session_scope() as session:
        business = session.get(Business, tenant.business.id)
        assert business is not None
        new_file = business.greeting_file
    assert new_file and new_file.startswith(f"business_{tenant.business.id}_")
    active = page.locator(".version.is-active")
    assert new_file in active.inner_text()
    # The preview loads the public greeting.
    page.wait_for_function(
        "() => { const a = document.querySelector('.version.is-active audio');"
        " a.preload = 'metadata'; a.load(); return true; }"
    )
    page.screenshot(path=str(artifacts / "crm-business.png"), full_page=True)
    assert_accessible_forms(page)
    page.goto(f"{stack.base}/account")
    page.click("form[action='/account/tokens'] button[type=submit]")
    assert page.locator("#new-token").inner_text().startswith("mk_")
    page.screenshot(path=str(artifacts / "crm-account.png"), full_page=True)

    response = stack.post("/webhook/incoming_call", call_params(new_call_sid(), tenant.number))
    play = parse_twiml(response).find("Play")
    assert play is not None
    assert play.text == f"{stack.base}/server/static/voice_responses/{new_file}"
    head = requests.head(play.text, timeout=5)
    assert head.status_code == 200 and head.headers["Content-Type"] == "audio/mpeg"


def test_english_is_available_and_mobile_layout(
    stack: StackUnderTest,
    tenants: tuple[Tenant, Tenant],
    a_call: Any,
    browser: Any,
    artifacts: Path,
) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    try:
        page.goto(stack.base + "/login")
        assert_accessible_forms(page)
        page.screenshot(path=str(artifacts / "crm-login-mobile.png"))
        login(page, stack.base, tenants[0].staff_email)
        page.goto(stack.base + "/?view=all")  # handled by the test above: not in Open
        page.locator(f"tr[data-call-sid='{a_call.call_sid}']").wait_for()
        assert_fits_the_screen(page)
        page.screenshot(path=str(artifacts / "crm-inbox-mobile.png"), full_page=False)
        page.goto(f"{stack.base}/calls/{a_call.call_sid}")
        assert_fits_the_screen(page)
        page.screenshot(path=str(artifacts / "crm-call-mobile.png"), full_page=True)
        page.goto(stack.base + "/")
        page.click("button[name=lang][value=en]")
        page.wait_for_load_state()
        assert page.get_attribute("html", "lang") == "en"
        assert page.get_attribute("html", "dir") == "ltr"
        assert page.locator("h1").inner_text() == "Inbox"
        page.set_viewport_size({"width": 1280, "height": 800})
        page.screenshot(path=str(artifacts / "crm-inbox-english.png"))
        page.click("button[name=lang][value=he]")
        page.wait_for_load_state()
        assert page.get_attribute("html", "dir") == "rtl"
    finally:
        context.close()


def test_failed_recording_can_be_transcribed_again(
    stack: StackUnderTest, tenants: tuple[Tenant, Tenant], audio_bytes: bytes, page: Any
) -> None:

    from moked.queue import fetch_job, redis_client, transcription_job_id

    failed = feed_call(stack, tenants[0], None, audio_bytes, processing=ProcessingStatus.FAILED)
    login(page, stack.base, tenants[0].staff_email)
    page.goto(f"{stack.base}/calls/{failed.call_sid}")
    assert "התמלול נכשל" in page.locator("#transcript").inner_text()
    clicked_at = dt.datetime.now(dt.UTC)
    page.click("#retranscribe")
    page.wait_for_url("**#transcript")
    assert "נשלחה לתמלול מחדש" in page.locator(".flashes").inner_text()
    job = fetch_job(
        redis_client(stack.settings.redis_url), transcription_job_id(failed.recording_sid)
    )
    assert list(job.args) == [failed.recording_sid]
    with session_scope() as session:
        recording = session.scalar(
            select(Recording).where(Recording.recording_sid == failed.recording_sid)
        )
        assert recording is not None
        # Reset and re-queued (a worker may already have moved it on from "awaiting").
        assert recording.queued_at is not None and recording.queued_at >= clicked_at
