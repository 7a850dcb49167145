"""Issue 13 item 11: a signed webhook sent again (Twilio's retry, or a replay by anyone who
saw it) is applied idempotently and logged once; a request that differs is logged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from moked.db.models import Call, Recording, WebhookEvent
from moked.db.session import session_scope
from moked.intake import apply_event
from moked.reconcile import parse_fallback_line
from moked.spool import Spool
from moked.statuses import EventSource
from moked.twilio.signature import SIGNATURE_HEADER
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, new_recording_sid
from tests.services.webhooks.test_resilience import twiml_verbs


def logged(call_sid: str) -> list[tuple[str, str]]:
    with session_scope() as session:
        rows = session.execute(
            select(WebhookEvent.endpoint, WebhookEvent.params["CallStatus"].as_string())
            .where(WebhookEvent.call_sid == call_sid)
            .order_by(WebhookEvent.id)
        ).all()
    return [(endpoint, status) for endpoint, status in rows]


def state(call_sid: str) -> dict[str, Any]:
    """What the webhooks decide about a call and its recording."""
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        recording = session.scalar(select(Recording).where(Recording.call_id == call.id))
        assert recording is not None
        return {
            "call": (
                call.business_id,
                call.status,
                call.started_at,
                call.answered_at,
                call.ended_at,
                call.duration_seconds,
                call.last_sequence_number,
            ),
            "recording": (
                recording.recording_sid,
                recording.media_url,
                recording.duration_seconds,
                recording.twilio_status,
            ),
            "calls": session.scalar(
                select(func.count()).select_from(Call).where(Call.call_sid == call_sid)
            ),
        }


def test_the_same_signed_request_three_times_is_logged_once(
    stack: StackUnderTest, make_business
) -> None:
    business = make_business()
    number = business.numbers[0].e164
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    sent_requests = [
        ("/webhook/incoming_call", call_params(call_sid, number)),
        (
            "/webhook/handle_recording",
            call_params(
                call_sid,
                number,
                CallStatus="in-progress",
                RecordingSid=recording_sid,
                RecordingUrl="http://127.0.0.1:9/recording",
                RecordingDuration="7",
            ),
        ),
        (
            "/webhook/call_status",
            call_params(
                call_sid,
                number,
                CallStatus="completed",
                CallDuration="11",
                SequenceNumber="2",
                Timestamp="Tue, 01 Dec 2026 10:00:11 +0000",
            ),
        ),
    ]
    for path, params in sent_requests:
        assert stack.post(path, params).status_code == 200
    first = state(call_sid)
    assert logged(call_sid) == [
        ("incoming_call", "ringing"),
        ("handle_recording", "in-progress"),
        ("call_status", "completed"),
    ]

    for _ in range(3):  # a replay of everything, twice more than Twilio would retry
        for path, params in sent_requests:
            replay = stack.post(path, params)
            assert replay.status_code == 200
            if path == "/webhook/incoming_call":
                assert twiml_verbs(replay)[:3] == ["Say", "Pause", "Record"]

    assert len(logged(call_sid)) == 3, "one row per request, however often it came"
    assert state(call_sid) == first, "and nothing about the call changed"


def test_a_request_that_differs_is_another_event(stack: StackUnderTest, make_business) -> None:
    """Twilio's callbacks of one call differ (status, sequence number, Timestamp): each is
    logged, as is a replay with a parameter changed (its signature is refused anyway)."""
    number = make_business().numbers[0].e164
    call_sid = new_call_sid()
    ringing = call_params(call_sid, number, SequenceNumber="0")

    stack.post("/webhook/call_status", ringing)
    stack.post("/webhook/call_status", ringing)
    stack.post("/webhook/call_status", {**ringing, "SequenceNumber": "1"})
    stack.post("/webhook/call_status", {**ringing, "CallStatus": "in-progress"})

    assert logged(call_sid) == [
        ("call_status", "ringing"),
        ("call_status", "ringing"),
        ("call_status", "in-progress"),
    ]


def test_nginx_and_the_spool_replay_a_request_the_app_logged_under_its_id(
    stack: StackUnderTest, make_business, tmp_path: Path
) -> None:
    """nginx answered (the app was slow) and logged a request the app had also taken: the
    reconciler's replay, and a spooled copy, are the same event and add no row."""
    number = make_business().numbers[0].e164
    call_sid = new_call_sid()
    params = call_params(call_sid, number, CallStatus="completed", CallDuration="5")
    sent = stack.post("/webhook/call_status", params)
    assert sent.status_code == 200
    body = sent.request.body
    line = json.dumps(
        {
            "id": "0123456789abcdef0123456789abcdef",
            "time": "2026-12-01T10:00:05+00:00",
            "uri": "/webhook/call_status",
            "signature": sent.request.headers[SIGNATURE_HEADER],
            "status": "504",
            "body": body.decode() if isinstance(body, bytes) else str(body),
        }
    )

    from_nginx = parse_fallback_line(line, stack.settings)
    assert from_nginx is not None and from_nginx.source is EventSource.NGINX_FALLBACK
    spool = Spool(tmp_path)
    spool.put(from_nginx)
    ((_, from_spool),) = list(spool.pending())
    with session_scope() as session:
        apply_event(session, from_nginx)
    with session_scope() as session:
        apply_event(session, from_spool)

    assert logged(call_sid) == [("call_status", "completed")]
