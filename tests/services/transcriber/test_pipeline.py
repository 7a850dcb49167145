"""A voicemail from Twilio's webhook to a stored transcript, through real worker processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import requests
from rq.job import Job

from moked.queue import enqueue_transcription, fetch_job, redis_client
from moked.settings import ENV_FILE_VARIABLE
from tests.harness import StackUnderTest
from tests.services.transcriber.audio import (
    NOT_AUDIO,
    VOICEMAIL_TEXT,
    VOICEMAIL_WORDS,
    silence_mp3,
    telephone_mp3,
)
from tests.services.transcriber.conftest import leave_voicemail, recording, wait_for, words_in
from tests.services.transcriber.doubles import TwilioDouble


def test_voicemail_is_fetched_with_auth_after_404s_and_transcribed(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    message = leave_voicemail(
        stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT), not_ready=2
    )

    done = wait_for(message.recording_sid)

    assert done.processing_status.value == "ready", done.error
    assert words_in(done.transcript, VOICEMAIL_WORDS) == [], done.transcript
    assert done.transcript_language == "en"
    assert done.backend == "local"
    assert done.model == "whisper-base"
    assert done.attempts == 1
    assert done.error is None
    assert done.audio_seconds is not None and done.audio_seconds > 5
    assert done.queued_at <= done.processing_started_at <= done.processing_finished_at
    # Twilio answered 404 twice, then served the file; every request carried the credentials.
    gets = twilio_api.gets_of(message.recording_sid)
    assert [g.status for g in gets] == [404, 404, 200]
    assert all(g.authorized for g in gets)
    assert gets[-1].path.endswith(".mp3")
    # Kept privately under RECORDINGS_DIR: nginx's workers (nobody) read it through the
    # shared group, for the CRM; other local users cannot.
    assert done.local_path is not None and not done.local_path.startswith("/")
    stored = stack.settings.recordings_dir / done.local_path
    assert stored.read_bytes() == telephone_mp3(VOICEMAIL_TEXT)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o640
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o2750
    assert done.content_type == "audio/mpeg"
    assert done.size_bytes == stored.stat().st_size


def test_call_show_prints_the_transcript(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    message = leave_voicemail(stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT))
    wait_for(message.recording_sid)

    shown = subprocess.run(
        [sys.executable, "-m", "moked.cli", "call", "show", message.call_sid, "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, ENV_FILE_VARIABLE: str(stack.layout.env_file)},
    )

    data = json.loads(shown.stdout)
    assert data["processing_status"] == "ready"
    assert words_in(data["transcript"], VOICEMAIL_WORDS) == []
    assert data["recording_path"].endswith(".mp3")


def test_a_job_for_a_ready_recording_changes_nothing(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    message = leave_voicemail(stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT))
    first = wait_for(message.recording_sid)
    redis = redis_client(stack.settings.redis_url)
    fetches = len(twilio_api.gets_of(message.recording_sid))

    # Twilio retries its callback; an operator re-queues by hand: both are no-ops now.
    again = stack.post(
        "/webhook/recording_status",
        {
            "CallSid": message.call_sid,
            "AccountSid": stack.settings.twilio_account_sid,
            "RecordingSid": message.recording_sid,
            "RecordingUrl": twilio_api.recording_url(message.recording_sid),
            "RecordingStatus": "completed",
        },
    )
    assert again.status_code < 300
    assert enqueue_transcription(redis, message.recording_sid)
    job = fetch_job(redis, message.recording_sid)
    result = _wait_result(job)

    assert result["outcome"] == "skipped"
    after = recording(message.recording_sid)
    assert after.transcript == first.transcript
    assert after.attempts == first.attempts
    assert after.processing_finished_at == first.processing_finished_at
    assert len(twilio_api.gets_of(message.recording_sid)) == fetches


def test_the_model_is_loaded_once_per_worker_process(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    redis = redis_client(stack.settings.redis_url)
    results = []
    for _ in range(3):
        message = leave_voicemail(
            stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT)
        )
        wait_for(message.recording_sid)
        results.append(_wait_result(fetch_job(redis, message.recording_sid)))

    assert {r["outcome"] for r in results} == {"ready"}
    assert len({r["pid"] for r in results}) == 1, "one worker process served every job"
    assert [r["model_loads"] for r in results] == [1, 1, 1]
    metrics = requests.get(
        f"http://127.0.0.1:{stack.settings.transcriber_metrics_port}/metrics", timeout=5
    ).text
    assert 'moked_transcription_jobs_total{backend="local",outcome="ready"}' in metrics
    assert "moked_transcription_real_time_factor_bucket" in metrics
    assert "moked_transcription_lag_seconds_count" in metrics


def test_bad_file_fails_silence_is_empty_and_others_are_unaffected(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    broken = leave_voicemail(stack, twilio_api, english_business, NOT_AUDIO)
    silent = leave_voicemail(stack, twilio_api, english_business, silence_mp3())
    good = leave_voicemail(stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT))

    failed = wait_for(broken.recording_sid)
    empty = wait_for(silent.recording_sid)
    ready = wait_for(good.recording_sid)

    assert failed.processing_status.value == "failed"
    assert failed.error is not None and "not audio" in failed.error
    assert "served as audio/mpeg" in failed.error
    assert failed.transcript is None
    assert failed.local_path is None, "a file that is not audio is not kept"
    assert empty.processing_status.value == "empty", empty.transcript
    assert empty.transcript == ""
    assert empty.error is None
    assert ready.processing_status.value == "ready"
    assert words_in(ready.transcript, VOICEMAIL_WORDS) == []


def _wait_result(job: Job, timeout: float = 240) -> dict:  # type: ignore[type-arg]
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job.get_status(refresh=True)
        if status is not None and status.value in ("finished", "failed"):
            break
        time.sleep(0.1)
    result = job.return_value(refresh=True)
    assert isinstance(result, dict), (job.get_status(), job.latest_result())
    return result


def test_operator_retries_a_failed_recording_once_the_cause_is_fixed(
    stack: StackUnderTest, twilio_api: TwilioDouble, english_business
):
    message = leave_voicemail(stack, twilio_api, english_business, NOT_AUDIO)
    assert wait_for(message.recording_sid).processing_status.value == "failed"
    twilio_api.publish(message.recording_sid, telephone_mp3(VOICEMAIL_TEXT))  # fixed upstream

    retried = subprocess.run(
        [sys.executable, "-m", "moked.cli", "recording", "retry", message.recording_sid],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, ENV_FILE_VARIABLE: str(stack.layout.env_file)},
    )

    assert retried.returncode == 0, retried.stderr
    done = wait_for(message.recording_sid, ("ready", "empty"))
    assert words_in(done.transcript, VOICEMAIL_WORDS) == []
    assert done.error is None
    assert done.attempts == 1
