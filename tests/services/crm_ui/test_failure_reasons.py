"""A failed transcription as staff see it (issue 13, item 7): a plain, translated reason,
never the stored error with internal hosts and Twilio's account path (that is for admins
and the logs); on a phone "Transcribe again" stays on the screen."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from crm_ui.messages import HEBREW
from crm_ui.present import SERVICE_FAILED, failure_reason
from moked.accounts import Role
from moked.db.models import Business
from moked.db.session import session_scope
from moked.statuses import ProcessingStatus
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import recorded_call, settle
from tests.services.crm_ui.test_hostile_queries import PASSWORD, new_user, sign_in

ACCOUNT_PATH = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings"
# What the worker stored for a download that failed, as found (internal host, account path).
RAW_DOWNLOAD_ERROR = (
    "fetching the recording failed: HTTPSConnectionPool(host='media-proxy.internal.lan',"
    f" port=8443): Max retries exceeded with url: {ACCOUNT_PATH}/RE0123.wav (Caused by"
    " NewConnectionError('<urllib3.connection.HTTPSConnection object at 0x7f3a2c1d5e10>:"
    " Failed to establish a new connection: [Errno 111] Connection refused'))"
)


DOWNLOAD = "The recording could not be downloaded."
NOT_AUDIO = "The file is not audio."


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        (RAW_DOWNLOAD_ERROR, DOWNLOAD),
        (
            "media host '10.0.0.7' is not in MEDIA_ALLOWED_HOSTS (api.twilio.com)",
            "The recording could not be downloaded.",
        ),
        ("refusing a media URL with user-info 'https://u:p@x/'", DOWNLOAD),
        ("more than 5 redirects fetching https://x/", DOWNLOAD),
        ("Twilio gave no RecordingUrl for this recording", DOWNLOAD),
        ("the file is not audio (Invalid data found when processing input)", NOT_AUDIO),
        (
            "the file is not audio (no audio frames could be decoded); 12 bytes served as text",
            NOT_AUDIO,
        ),
        (
            "the recording is over MEDIA_MAX_BYTES (50000000 bytes)",
            "The recording is too large to transcribe.",
        ),
        ("Twilio could not record (error 16102)", "Twilio could not record the message."),
        ("faster-whisper failed: CUDA out of memory", SERVICE_FAILED),
        ("OperationalError: connection to server at 10.1.2.3 failed", SERVICE_FAILED),
        ("", SERVICE_FAILED),
        (None, SERVICE_FAILED),
    ],
)
def test_every_stored_error_has_a_plain_translated_reason(stored: str | None, reason: str) -> None:
    assert failure_reason(stored) == reason
    assert reason in HEBREW


def _failed_call(twilio: TwilioClient, business: Business, error: str) -> tuple[str, str]:
    """A call whose recording a worker failed for good with `error`, via the state machine."""
    media = "https://api.twilio.com" + ACCOUNT_PATH + "/{recording_sid}"
    call_sid, recording_sid = recorded_call(twilio, business.numbers[0].e164, media)
    with session_scope() as session:  # one transaction: no worker sees it half-way
        settle(session, recording_sid, ProcessingStatus.FAILED, error=error)
    return call_sid, recording_sid


@pytest.fixture
def business(make_business: Callable[..., Business]) -> Business:
    return make_business(name=f"Failing {secrets.token_hex(3)}")


def test_staff_see_the_reason_and_admins_the_detail(
    twilio: TwilioClient, crm_app: Flask, business: Business
) -> None:
    call_sid, _ = _failed_call(twilio, business, RAW_DOWNLOAD_ERROR)
    staff, staff_token = sign_in(crm_app, business, Role.STAFF)
    admin, admin_token = sign_in(crm_app, business, Role.ADMIN)

    page = staff.get(f"/calls/{call_sid}").get_data(as_text=True)
    assert HEBREW["The recording could not be downloaded."] in page
    assert 'id="retranscribe"' in page
    for secret in ("media-proxy.internal.lan", "Accounts/AC", "HTTPSConnectionPool", "0x7f3a"):
        assert secret not in page, secret

    page = admin.get(f"/calls/{call_sid}").get_data(as_text=True)
    assert HEBREW["The recording could not be downloaded."] in page
    assert "media-proxy.internal.lan" in page and "Accounts/AC" in page  # under "Technical details"

    def api_error(token: str) -> Any:
        answer = staff.get(
            f"/api/v1/calls/{call_sid}", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200
        return answer.get_json()["transcription_error"]

    assert api_error(staff_token) == "The recording could not be downloaded."
    assert api_error(admin_token) == RAW_DOWNLOAD_ERROR


def test_on_a_phone_transcribe_again_stays_on_screen(
    stack: StackUnderTest, twilio: TwilioClient, business: Business, browser: Any
) -> None:
    """As found: the stored error, one long unbroken line, pushed the button off a phone's
    screen. Whole stack: signed in through nginx in Debian's chromium at 390 px; an admin,
    who also gets the (wrapped) detail."""
    call_sid, _ = _failed_call(twilio, business, RAW_DOWNLOAD_ERROR.replace(" ", "_"))
    email, _ = new_user(business, Role.ADMIN)
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        page.goto(stack.base + "/login")
        page.fill("#email", email)
        page.fill("#password", PASSWORD)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(re.compile(re.escape(stack.base) + r"/(\?.*)?$"))
        page.goto(f"{stack.base}/calls/{call_sid}")
        details = page.locator("#transcript details summary")
        if details.count():
            details.click()  # the admin's detail, opened, must wrap too
        width = page.evaluate("window.innerWidth")
        for selector in ("#retranscribe", "#transcript .error-text"):
            box = page.locator(selector).bounding_box()
            assert box is not None, selector
            assert box["x"] >= -1 and box["x"] + box["width"] <= width + 1, (selector, box, width)
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
    finally:
        context.close()
