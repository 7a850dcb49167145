"""webhooks/app.py in-process: Twilio's signed posts on Flask's test client, against the
test run's real Postgres and Redis (no nginx, no gunicorn: tests/apps.py).

What needs the processes (nginx's fallback, RAW_URI as gunicorn passes it, outages) is in
the whole-stack tests beside this file.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import select
from sqlalchemy.engine import make_url
from werkzeug.test import TestResponse

from moked.db.models import Call, Recording
from moked.db.session import session_scope
from moked.greetings import synthesize_mp3
from moked.queue import pending_job, redis_client, transcription_queue
from moked.settings import Settings
from moked.spool import Spool
from moked.statuses import CallStatus, Endpoint, ProcessingStatus
from moked.twilio.signature import FormParams, sign
from tests.apps import TwilioClient
from tests.harness import StackUnderTest, free_port
from tests.helpers import call_params, new_call_sid, new_recording_sid
from webhooks.app import create_app

PRIVATE_REDIS_DB = 6
"""The queue of `queued` below: a Redis database the stack's workers never read, so a job
this app queues is still there when the test looks."""


def twiml(response: TestResponse) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.mimetype == "text/xml"
    root = ET.fromstring(response.data)
    assert root.tag == "Response"
    return root


def plain(response: TestResponse, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.mimetype == "text/plain"
    return response.text


def stored_call(call_sid: str) -> Call | None:
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        if call is not None:
            session.expunge(call)
        return call


def app_with(settings: Settings) -> Flask:
    app = create_app(settings)
    app.testing = True
    return app


@pytest.fixture
def queued(stack: StackUnderTest) -> Iterator[tuple[TwilioClient, Redis]]:
    """Twilio and an app whose transcription queue is in a private Redis database."""
    url = stack.settings.redis_url.rsplit("/", 1)[0] + f"/{PRIVATE_REDIS_DB}"
    settings = stack.settings.model_copy(update={"redis_url": url})
    redis = redis_client(url)
    redis.flushdb()
    yield TwilioClient(app_with(settings), settings), redis
    redis.flushdb()


# --- what Twilio is answered ----------------------------------------------------------------


def test_a_call_to_a_business_is_greeted_and_recorded(twilio: TwilioClient, make_business) -> None:
    business = make_business(greeting_text="שלום, הגעתם למספרת הדס", language="he-IL")
    call_sid = new_call_sid()

    root = twiml(
        twilio.post("/webhook/incoming_call", call_params(call_sid, business.numbers[0].e164))
    )

    assert [verb.tag for verb in root] == ["Say", "Pause", "Record", "Say", "Hangup"]
    greeting, record = root[0], root[2]
    assert (greeting.text, greeting.get("language")) == ("שלום, הגעתם למספרת הדס", "he-IL")
    assert record.get("action") == Endpoint.HANDLE_RECORDING.path
    assert record.get("method") == "POST"
    assert record.get("recordingStatusCallback") == Endpoint.RECORDING_STATUS.path
    assert record.get("recordingStatusCallbackMethod") == "POST"
    assert record.get("recordingStatusCallbackEvent") == "completed absent"
    call = stored_call(call_sid)
    assert call is not None
    assert (call.business_id, call.status) == (business.id, CallStatus.RINGING)


def test_a_greeting_on_disk_is_played(
    twilio: TwilioClient, stack: StackUnderTest, make_business
) -> None:
    business = make_business(greeting_mp3=synthesize_mp3("shalom", "he"))

    root = twiml(
        twilio.post("/webhook/incoming_call", call_params(new_call_sid(), business.numbers[0].e164))
    )

    assert [verb.tag for verb in root][:3] == ["Play", "Pause", "Record"]
    assert root[0].text == (
        f"{stack.settings.public_base}/server/static/voice_responses/{business.greeting_file}"
    )


def test_handle_recording_thanks_the_caller_and_keeps_the_recording(
    twilio: TwilioClient, stack: StackUnderTest, make_business
) -> None:
    number = make_business().numbers[0].e164
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    media = f"https://media.example.invalid/Recordings/{recording_sid}"
    params = call_params(
        call_sid, number, CallStatus="in-progress", RecordingSid=recording_sid,
        RecordingUrl=media, RecordingDuration="7", Digits="hangup",
    )  # fmt: skip

    root = twiml(twilio.post("/webhook/handle_recording", params))

    assert [verb.tag for verb in root] == ["Say", "Hangup"]
    assert (root[0].text, root[0].get("language")) == (stack.settings.thanks_text, "he-IL")
    with session_scope() as session:
        row = session.scalar(select(Recording).where(Recording.recording_sid == recording_sid))
        assert row is not None
        assert (row.media_url, row.duration_seconds) == (media, 7)
        assert row.processing_status is ProcessingStatus.AWAITING_MEDIA  # until Twilio says


def test_call_status_is_ok_and_stored(twilio: TwilioClient, make_business) -> None:
    call_sid = new_call_sid()
    params = call_params(
        call_sid, make_business().numbers[0].e164, CallStatus="completed",
        CallDuration="12", SequenceNumber="2",
    )  # fmt: skip

    assert plain(twilio.post("/webhook/call_status", params), 200) == "OK"

    call = stored_call(call_sid)
    assert call is not None
    assert (call.status, call.duration_seconds) == (CallStatus.COMPLETED, 12)
    assert call.ended_at is not None


def test_a_completed_recording_is_queued_once(
    queued: tuple[TwilioClient, Redis], make_business
) -> None:
    twilio, redis = queued
    number = make_business().numbers[0].e164
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    completed = call_params(
        call_sid, number, CallStatus="completed", RecordingStatus="completed",
        RecordingSid=recording_sid, RecordingDuration="7",
        RecordingUrl=f"https://media.example.invalid/Recordings/{recording_sid}",
    )  # fmt: skip

    assert plain(twilio.post("/webhook/recording_status", completed), 200) == "OK"
    job = pending_job(redis, recording_sid)
    assert job is not None and job.id == recording_sid
    # Twilio's retry, and a second delivery that differs (another Timestamp): one job.
    assert plain(twilio.post("/webhook/recording_status", completed), 200) == "OK"
    again = {**completed, "Timestamp": "Sat, 28 Nov 2026 10:00:12 +0000"}
    assert plain(twilio.post("/webhook/recording_status", again), 200) == "OK"
    assert transcription_queue(redis).job_ids == [recording_sid]
    with session_scope() as session:
        row = session.scalar(select(Recording).where(Recording.recording_sid == recording_sid))
        assert row is not None
        assert row.processing_status is ProcessingStatus.AWAITING_TRANSCRIPTION
        assert row.queued_at is not None


# --- what is refused ------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_unsigned_or_wrongly_signed_is_403_and_changes_nothing(
    twilio: TwilioClient, endpoint: Endpoint
) -> None:
    call_sid = new_call_sid()
    params = call_params(call_sid, "+97235550000")
    token = twilio.settings.twilio_auth_token.get_secret_value()
    url = twilio.settings.public_base + endpoint.path
    signed = sign(token, url, FormParams({k: [v] for k, v in params.items()}))

    for response in (
        twilio.post(endpoint.path, params, signed=False),
        twilio.post(endpoint.path, params, signature=base64.b64encode(b"x" * 20).decode()),
        twilio.post(endpoint.path, {**params, "From": "+972509999999"}, signature=signed),
        twilio.post(endpoint.path, params, query="x=1", signature=signed),
    ):
        assert plain(response, 403).startswith("Forbidden")
    assert stored_call(call_sid) is None


@pytest.mark.parametrize("path", ["/webhook/nope", "/webhook/incoming_call/extra", "/webhook"])
def test_an_unknown_endpoint_is_a_text_404(twilio: TwilioClient, path: str) -> None:
    signed = twilio.post(path, call_params(new_call_sid(), "+97235550000"))
    assert plain(signed, 404)


# --- the probes -----------------------------------------------------------------------------


def test_ping_is_constant_twiml_without_a_signature(webhooks_app: Flask) -> None:
    client = webhooks_app.test_client()
    for response in (client.get("/webhook/ping"), client.post("/webhook/ping")):
        assert len(twiml(response)) == 0


def test_healthz_and_readyz(webhooks_app: Flask) -> None:
    client = webhooks_app.test_client()
    assert plain(client.get("/healthz"), 200) == "ok"
    assert plain(client.get("/readyz"), 200) == "ready"


def _closed_port(url: str) -> str:
    return make_url(url).set(port=free_port()).render_as_string(hide_password=False)


@pytest.mark.parametrize("away", ["postgres", "redis"])
def test_the_app_uses_the_settings_it_was_created_with(
    stack: StackUnderTest, webhooks_app: Flask, tmp_path: Path, away: str
) -> None:
    """create_app(settings) reads that database and that Redis, not the process's own:
    pointed at a closed port, its /readyz says which is away while the stack's app is ready."""
    settings = stack.settings
    if away == "postgres":
        broken = settings.model_copy(
            update={"database_url": _closed_port(settings.database_url), "spool_dir": tmp_path}
        )
    else:
        host, db = settings.redis_url.rsplit(":", 1)[0], settings.redis_url.rsplit("/", 1)[1]
        broken = settings.model_copy(update={"redis_url": f"{host}:{free_port()}/{db}"})
    app = app_with(broken)

    answer = plain(app.test_client().get("/readyz"), 503)

    assert answer.startswith("not ready: ") and away in answer
    assert ("postgres" in answer, "redis" in answer) == (away == "postgres", away == "redis")
    assert plain(webhooks_app.test_client().get("/readyz"), 200) == "ready"
    if away == "postgres":
        # Postgres away: the caller is still greeted and recorded; the event waits on disk.
        call_sid = new_call_sid()
        twilio = TwilioClient(app, broken)
        root = twiml(twilio.post("/webhook/incoming_call", call_params(call_sid, "+97235550001")))
        assert [verb.tag for verb in root][:3] == ["Say", "Pause", "Record"]
        ((_, spooled),) = list(Spool(tmp_path).pending())
        assert spooled.flat["CallSid"] == call_sid
        assert stored_call(call_sid) is None
