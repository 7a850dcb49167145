"""No recording is lost when a worker is killed mid-job or Redis loses its queue."""

from __future__ import annotations

import os
import signal
import time

import pytest
from rq import Worker

from moked.queue import redis_client, transcription_queue
from tests.harness import StackUnderTest
from tests.services.transcriber.audio import (
    LONG_TEXT,
    LONG_WORDS,
    VOICEMAIL_TEXT,
    VOICEMAIL_WORDS,
    telephone_mp3,
)
from tests.services.transcriber.conftest import leave_voicemail, recording, wait_for, words_in
from tests.services.transcriber.doubles import TwilioDouble
from transcriber import media


def _worker_running(stack: StackUnderTest, job_id: str, timeout: float = 240) -> Worker:
    redis = redis_client(stack.settings.redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in Worker.all(queue=transcription_queue(redis)):
            if (
                worker.get_current_job_id() == job_id
                and recording(job_id).processing_status.value == "transcribing"
            ):
                return worker
        time.sleep(0.02)
    pytest.fail(f"no worker was seen transcribing {job_id}")


def test_worker_killed_mid_job_still_ends_ready_with_one_transcript(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    message = leave_voicemail(stack, twilio_api, english_business, telephone_mp3(LONG_TEXT))
    worker = _worker_running(stack, message.recording_sid)

    os.kill(worker.pid, signal.SIGKILL)
    done = wait_for(message.recording_sid)

    assert done.processing_status.value == "ready", done.error
    assert done.attempts == 2, "the killed attempt, then the one that finished"
    assert words_in(done.transcript, LONG_WORDS) == [], done.transcript
    assert (done.transcript or "").lower().count("furniture") == 1, done.transcript
    assert len(twilio_api.gets_of(message.recording_sid)) == 1, "the kept file was reused"
    # The pool replaced the dead worker: the next voicemail is transcribed as usual.
    after = leave_voicemail(stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT))
    assert wait_for(after.recording_sid).processing_status.value == "ready"


def test_queue_lost_after_enqueue_is_restored_by_the_reconciler(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    redis = redis_client(stack.settings.redis_url)
    stack.supervisorctl("stop", "transcriber")
    try:
        message = leave_voicemail(
            stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT)
        )
        assert message.recording_sid in transcription_queue(redis).job_ids
        redis.flushall()
        assert transcription_queue(redis).count == 0
        assert recording(message.recording_sid).processing_status.value == "awaiting_transcription"
    finally:
        stack.supervisorctl("start", "transcriber")

    done = wait_for(message.recording_sid)

    assert done.processing_status.value == "ready", done.error
    assert words_in(done.transcript, VOICEMAIL_WORDS) == []
    assert done.attempts == 1


def test_whole_transcriber_killed_mid_job_is_recovered_through_the_lease(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    """Pool and workers die at once (OOM killer, power cut): nobody saw the worker die, so
    RQ still says `started`; the lease expires and the reconciler re-queues the job."""
    message = leave_voicemail(stack, twilio_api, english_business, telephone_mp3(LONG_TEXT))
    worker = _worker_running(stack, message.recording_sid)

    os.killpg(os.getpgid(worker.pid), signal.SIGKILL)
    done = wait_for(message.recording_sid)

    assert done.processing_status.value == "ready", done.error
    assert done.attempts == 2
    assert words_in(done.transcript, LONG_WORDS) == [], done.transcript


def test_media_not_ready_for_long_is_retried_later_by_the_scheduler(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    """Twilio keeps answering 404 past the in-attempt retries: the attempt fails, the
    recording goes back to waiting, and RQ's scheduler runs the retry after its backoff."""
    tries_per_attempt = len(media.RETRY_DELAYS_SECONDS) + 1
    message = leave_voicemail(
        stack,
        twilio_api,
        english_business,
        telephone_mp3(VOICEMAIL_TEXT),
        not_ready=tries_per_attempt + 1,
    )

    done = wait_for(message.recording_sid)

    assert done.processing_status.value == "ready", done.error
    assert done.attempts == 2
    assert done.error is None
    statuses = [g.status for g in twilio_api.gets_of(message.recording_sid)]
    assert statuses == [404] * (tries_per_attempt + 1) + [200]
    assert words_in(done.transcript, VOICEMAIL_WORDS) == []
