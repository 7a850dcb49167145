"""The openai backend: the real openai client, over HTTP, against an OpenAI-compatible
server on loopback (answered by the local Whisper model), in a real worker process."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
import requests

from moked.settings import ENV_FILE_VARIABLE
from moked.stack.config import REPO_ROOT
from tests.harness import StackUnderTest, free_port
from tests.services.transcriber.audio import VOICEMAIL_TEXT, VOICEMAIL_WORDS, telephone_mp3
from tests.services.transcriber.conftest import leave_voicemail, recording, wait_for, words_in
from tests.services.transcriber.doubles import OpenAICompatibleServer, TwilioDouble

API_KEY = "sk-test-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def openai_server(stack: StackUnderTest) -> Iterator[OpenAICompatibleServer]:
    from transcriber.backends.local import LocalBackend

    local = LocalBackend.from_settings(stack.settings)
    server = OpenAICompatibleServer(
        API_KEY, lambda path, language: local.transcribe(path, language).text
    ).start()
    yield server
    server.stop()


@pytest.fixture
def openai_worker(
    stack: StackUnderTest, twilio_api: TwilioDouble, openai_server: OpenAICompatibleServer
) -> Iterator[int]:
    """The stack's own transcriber stopped; an openai-backend one in its place."""
    port = free_port()
    env = {
        **os.environ,
        ENV_FILE_VARIABLE: str(stack.layout.env_file),
        "TRANSCRIBER_BACKEND": "auto",  # a key is set, so: openai
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_MODEL": "whisper-1",
        "OPENAI_MAX_RETRIES": "1",
        "OPENAI_TIMEOUT_SECONDS": "60",
        "TRANSCRIBER_METRICS_PORT": str(port),
        "RECORDING_DELETE_FROM_TWILIO": "true",
        "TWILIO_API_BASE": twilio_api.base,
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="moked-openai-metrics-"),
    }
    stack.supervisorctl("stop", "transcriber")
    log = open(stack.layout.log_dir / "transcriber-openai.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "transcriber"], env=env, cwd=REPO_ROOT, stdout=log, stderr=log
    )
    try:
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)
        log.close()
        stack.supervisorctl("start", "transcriber")


def test_openai_backend_transcribes_through_the_openai_client(
    stack: StackUnderTest,
    twilio_api: TwilioDouble,
    english_business,
    openai_server: OpenAICompatibleServer,
    openai_worker: int,
):
    message = leave_voicemail(stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT))

    done = wait_for(message.recording_sid)

    assert done.processing_status.value == "ready", done.error
    assert done.backend == "openai"
    assert done.model == "whisper-1"
    assert words_in(done.transcript, VOICEMAIL_WORDS) == [], done.transcript
    sent = openai_server.requests[-1]
    assert sent.authorization == f"Bearer {API_KEY}"
    assert sent.model == "whisper-1"
    assert sent.language == "en", "the business's language, as Whisper's code"
    assert sent.size == len(telephone_mp3(VOICEMAIL_TEXT))
    # RECORDING_DELETE_FROM_TWILIO: Twilio's copy deleted once ours was verified and used.
    deleted = _eventually(lambda: recording(message.recording_sid).deleted_from_twilio_at)
    assert deleted is not None
    assert (
        twilio_api.deleted == [message.recording_sid] or message.recording_sid in twilio_api.deleted
    )
    assert (stack.settings.recordings_dir / str(done.local_path)).is_file()
    # The worker's metrics survive the job and are served by the service.
    text = _metrics(openai_worker)
    assert 'moked_transcription_jobs_total{backend="openai",outcome="ready"} 1.0' in text


def _eventually(probe, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (value := probe()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def _metrics(port: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_openai_refusal_fails_at_once_with_openais_reason(
    stack: StackUnderTest,
    twilio_api: TwilioDouble,
    english_business,
    openai_server: OpenAICompatibleServer,
    openai_worker: int,
):
    openai_server.fail_with = (400, "Audio file might be corrupted or unsupported")
    try:
        message = leave_voicemail(
            stack, twilio_api, english_business, telephone_mp3(VOICEMAIL_TEXT)
        )
        done = wait_for(message.recording_sid)
    finally:
        openai_server.fail_with = None

    assert done.processing_status.value == "failed"
    assert done.attempts == 1, "a refused file is not retried"
    assert done.error == "OpenAI answered 400: Audio file might be corrupted or unsupported"
    assert done.transcript is None
