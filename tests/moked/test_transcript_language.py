"""A recording's language (issue 15): staff's forced language is owned by moked.recordings,
and each business's expected languages reach the worker's request."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from moked import recordings
from moked.accounts import Role, add_user
from moked.businesses import BusinessError, check_expected_languages
from moked.db.models import Business, Recording
from moked.db.session import session_scope
from moked.statuses import ProcessingStatus
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import recorded_call, settle
from transcriber import jobs

PASSWORD = "correct-horse-battery"


def _ready(twilio: TwilioClient, business: Business) -> str:
    _, recording_sid = recorded_call(twilio, business.numbers[0].e164)
    with session_scope() as session:
        settle(session, recording_sid, ProcessingStatus.READY, transcript="hello", model="test")
    return recording_sid


def _row(recording_sid: str) -> Recording:
    with session_scope() as session:
        row = session.scalar(select(Recording).where(Recording.recording_sid == recording_sid))
        assert row is not None
        session.expunge(row)
        return row


def test_a_ready_transcript_is_redone_only_in_a_named_language(
    stack: StackUnderTest, twilio: TwilioClient, make_business: Callable[..., Business]
) -> None:
    sid = _ready(twilio, make_business())
    assert not recordings.can_retry(_row(sid)) and recordings.can_retry(_row(sid), True)

    with pytest.raises(recordings.RetryRefused), session_scope() as session:
        recordings.retry(session, sid)
    with pytest.raises(recordings.RetryRefused, match="language code"), session_scope() as session:
        recordings.retry(session, sid, "english; drop table")
    assert _row(sid).processing_status is ProcessingStatus.READY

    with session_scope() as session:
        recordings.retry(session, sid, "EN")
        # The worker reads the choice when it claims the recording, under the same lock.
        row = recordings.claim(session, sid)
        request = jobs._language(session, stack.settings, row)
        recordings.fail(session, sid, "test over", final=True)
    assert request.forced == "en"
    after = _row(sid)
    assert after.forced_language == "en" and after.attempts == 1

    # A plain retry later keeps staff's language.
    with session_scope() as session:
        recordings.retry(session, sid)
        claimed = recordings.claim(session, sid)
        assert jobs._language(session, stack.settings, claimed).forced == "en"
        recordings.fail(session, sid, "test over", final=True)


def test_a_business_limits_the_languages_detection_picks_from(
    stack: StackUnderTest, twilio: TwilioClient, make_business: Callable[..., Business]
) -> None:
    limited = make_business(language="he-IL", expected_languages=check_expected_languages("en"))
    default = make_business(language="he-IL")
    requests = {}
    for name, business in (("limited", limited), ("default", default)):
        sid = _ready(twilio, business)
        with session_scope() as session:
            recordings.retry(session, sid, "he")
            row = recordings.claim(session, sid)
            requests[name] = jobs._language(session, stack.settings, row)
            recordings.fail(session, sid, "test over", final=True)

    assert requests["limited"].expected == ("he", "en")
    assert requests["default"].expected == ("he", "en", "ar", "ru")
    assert requests["default"].business == "he"
    with pytest.raises(BusinessError):
        check_expected_languages("en,hebrew!")
    assert check_expected_languages(" HE, en ,he") == ("he", "en")
    assert check_expected_languages("") == ()


def test_the_call_page_takes_only_the_pickers_languages(
    stack: StackUnderTest,
    twilio: TwilioClient,
    make_business: Callable[..., Business],
    crm_client: FlaskClient,
) -> None:
    business = make_business()
    call_sid, recording_sid = recorded_call(twilio, business.numbers[0].e164)
    with session_scope() as session:
        settle(session, recording_sid, ProcessingStatus.READY, transcript="hello", model="test")
    email = f"staff-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(session, email, role=Role.STAFF, business=business.name, password=PASSWORD)
    assert crm_client.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
    url = f"/calls/{call_sid}/recordings/{recording_sid}/retranscribe"

    assert crm_client.post(url, data={"language": "zz"}).status_code == 400
    assert crm_client.post(url, data={"language": "../he"}).status_code == 400
    assert _row(recording_sid).processing_status is ProcessingStatus.READY
