"""The reconciler's Twilio part (moked/twilio_sync.py): recordings whose callback never came,
found through Twilio's REST API, and deletions retried; against a loopback Twilio, with the
stack's real transcriber workers."""

from __future__ import annotations

import datetime as dt
import email.utils

from sqlalchemy import select, update

from moked import twilio_sync
from moked.db.models import Recording, WebhookEvent
from moked.db.session import session_scope
from moked.queue import redis_client
from moked.statuses import EventSource
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, new_recording_sid
from tests.services.transcriber.audio import VOICEMAIL_TEXT, VOICEMAIL_WORDS, telephone_mp3
from tests.services.transcriber.conftest import leave_voicemail, recording, wait_for, words_in
from tests.services.transcriber.doubles import TwilioDouble


def _completed_call(stack: StackUnderTest, to: str, extra_seconds: int = 5) -> str:
    """A call that rang and ended just past the reconciler's grace; its recording callbacks
    never arrive. Recent, so it is among the newest calls the recovery looks at whatever
    other tests left behind."""
    call_sid = new_call_sid()
    grace = stack.settings.reconcile_stale_after_seconds
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=grace + extra_seconds)
    assert stack.post("/webhook/incoming_call", call_params(call_sid, to)).status_code == 200
    status = stack.post(
        "/webhook/call_status",
        call_params(
            call_sid,
            to,
            CallStatus="completed",
            CallDuration="20",
            SequenceNumber="3",
            Timestamp=email.utils.format_datetime(ended),
        ),
    )
    assert status.status_code == 200
    return call_sid


def test_recording_whose_callback_never_came_is_found_through_twilios_api(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    settings = stack.settings.model_copy(update={"twilio_api_base": twilio_api.base})
    redis = redis_client(settings.redis_url)
    call_sid = _completed_call(stack, english_business.numbers[0].e164)
    recording_sid = new_recording_sid()
    twilio_api.publish(recording_sid, telephone_mp3(VOICEMAIL_TEXT))
    twilio_api.call_recordings[call_sid] = [twilio_api.recording_resource(call_sid, recording_sid)]

    recovered = twilio_sync.recover_recordings(settings, redis)

    assert recovered == 1
    done = wait_for(recording_sid)
    assert done.processing_status.value == "ready", done.error
    assert words_in(done.transcript, VOICEMAIL_WORDS) == []
    assert done.media_url == twilio_api.recording_url(recording_sid)
    with session_scope() as session:
        sources = session.scalars(
            select(WebhookEvent.source).where(WebhookEvent.call_sid == call_sid)
        ).all()
    assert EventSource.TWILIO_API in sources
    # Asked once: the call is settled, the next pass does not ask Twilio again.
    asked = [s for s in twilio_api.seen if call_sid in s.path]
    assert len(asked) == 1
    assert twilio_sync.recover_recordings(settings, redis) == 0
    assert len([s for s in twilio_api.seen if call_sid in s.path]) == 1


def test_calls_already_checked_do_not_starve_an_older_one(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    settings = stack.settings.model_copy(update={"twilio_api_base": twilio_api.base})
    redis = redis_client(settings.redis_url)
    to = english_business.numbers[0].e164
    older = _completed_call(stack, to, extra_seconds=60)
    # More newer calls than one pass asks about, all checked already (missed calls are).
    for _ in range(twilio_sync.CALLS_PER_PASS + 5):
        redis.set(twilio_sync.CHECKED_KEY.format(_completed_call(stack, to)), "1", ex=600)
    recording_sid = new_recording_sid()
    twilio_api.publish(recording_sid, telephone_mp3(VOICEMAIL_TEXT))
    twilio_api.call_recordings[older] = [twilio_api.recording_resource(older, recording_sid)]

    assert twilio_sync.recover_recordings(settings, redis) == 1
    assert wait_for(recording_sid).processing_status.value == "ready"


def test_twilio_answering_an_error_to_a_listing_is_deferred_not_fatal(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    """A listing answered 503 raises the client's bare TwilioException: it must become a
    deferred step, not an exception that ends the reconciler."""
    settings = stack.settings.model_copy(update={"twilio_api_base": twilio_api.base})
    call_sid = _completed_call(stack, english_business.numbers[0].e164)
    twilio_api.listing_fails_with = 503
    try:
        assert twilio_sync.recover_recordings(settings, redis_client(settings.redis_url)) == 0
    finally:
        twilio_api.listing_fails_with = None
        twilio_sync._backoff_for(settings).succeeded()  # the next tests share this origin
    assert any(call_sid in s.path and s.status == 503 for s in twilio_api.seen)


def test_absent_recording_from_the_api_is_marked_absent(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    settings = stack.settings.model_copy(update={"twilio_api_base": twilio_api.base})
    call_sid = _completed_call(stack, english_business.numbers[0].e164)
    recording_sid = new_recording_sid()
    twilio_api.call_recordings[call_sid] = [
        twilio_api.recording_resource(call_sid, recording_sid, status="absent", duration=0)
    ]

    assert twilio_sync.recover_recordings(settings, redis_client(settings.redis_url)) == 0

    assert recording(recording_sid).processing_status.value == "absent"


def test_calls_with_their_callbacks_are_not_asked_about(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    settings = stack.settings.model_copy(update={"twilio_api_base": twilio_api.base})
    message = leave_voicemail(stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT))
    wait_for(message.recording_sid)

    twilio_sync.recover_recordings(settings, redis_client(settings.redis_url))

    assert not [s for s in twilio_api.seen if message.call_sid in s.path and "Calls" in s.path]


def test_deletions_the_worker_could_not_make_are_retried(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    settings = stack.settings.model_copy(
        update={"twilio_api_base": twilio_api.base, "recording_delete_from_twilio": True}
    )
    message = leave_voicemail(stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT))
    wait_for(message.recording_sid)
    assert recording(message.recording_sid).deleted_from_twilio_at is None  # the stack's
    # worker runs without RECORDING_DELETE_FROM_TWILIO; make the transcript old enough.
    with session_scope() as session:
        session.execute(
            update(Recording)
            .where(Recording.recording_sid == message.recording_sid)
            .values(processing_finished_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
        )

    # The session's database holds other tests' recordings; keep this pass to ours.
    with session_scope() as session:
        session.execute(
            update(Recording)
            .where(
                Recording.recording_sid != message.recording_sid,
                Recording.deleted_from_twilio_at.is_(None),
            )
            .values(deleted_from_twilio_at=dt.datetime.now(dt.UTC))
        )

    deleted = twilio_sync.retry_deletions(settings, redis_client(settings.redis_url))

    assert deleted >= 1
    assert message.recording_sid in twilio_api.deleted
    assert recording(message.recording_sid).deleted_from_twilio_at is not None
    assert twilio_sync.retry_deletions(settings, redis_client(settings.redis_url)) == 0 or (
        message.recording_sid not in twilio_api.deleted[1:]
    )
