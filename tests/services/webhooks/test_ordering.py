"""Twilio retries, duplicates and reorders callbacks: one call, one recording, one job."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

from redis import Redis
from sqlalchemy import func, select

from moked.db.models import Call, Recording
from moked.db.session import session_scope
from moked.queue import TRANSCRIPTION_QUEUE, transcription_job_id
from moked.statuses import CallStatus, ProcessingStatus
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, new_recording_sid


def callback_sequence(
    call_sid: str, recording_sid: str, to: str
) -> list[tuple[str, dict[str, str]]]:
    """What Twilio sends for one voicemail, in the order it is generated."""
    media = f"http://127.0.0.1:9/2010-04-01/Accounts/AC1/Recordings/{recording_sid}"
    base = call_params(call_sid, to)
    recording = {"RecordingSid": recording_sid, "RecordingUrl": media, "RecordingDuration": "9"}
    return [
        (
            "/webhook/call_status",
            {
                **base,
                "CallStatus": "ringing",
                "SequenceNumber": "0",
                "Timestamp": "Sat, 28 Nov 2026 10:00:00 +0000",
            },
        ),
        ("/webhook/incoming_call", base),
        (
            "/webhook/call_status",
            {
                **base,
                "CallStatus": "in-progress",
                "SequenceNumber": "1",
                "Timestamp": "Sat, 28 Nov 2026 10:00:01 +0000",
            },
        ),
        ("/webhook/handle_recording", {**base, "CallStatus": "in-progress", **recording}),
        (
            "/webhook/recording_status",
            {
                **base,
                **recording,
                "RecordingStatus": "completed",
                "RecordingChannels": "1",
                "RecordingSource": "RecordVerb",
                "Timestamp": "Sat, 28 Nov 2026 10:00:15 +0000",
            },
        ),
        (
            "/webhook/call_status",
            {
                **base,
                "CallStatus": "completed",
                "CallDuration": "16",
                "SequenceNumber": "2",
                "Timestamp": "Sat, 28 Nov 2026 10:00:16 +0000",
            },
        ),
    ]


def final_state(call_sid: str) -> tuple[int, int, Call | None, Recording | None]:
    with session_scope() as session:
        calls = session.scalar(
            select(func.count()).select_from(Call).where(Call.call_sid == call_sid)
        )
        recordings = session.scalar(
            select(func.count()).select_from(Recording).join(Call).where(Call.call_sid == call_sid)
        )
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        recording = session.scalar(select(Recording).join(Call).where(Call.call_sid == call_sid))
    return int(calls or 0), int(recordings or 0), call, recording


def redis(stack: StackUnderTest) -> Redis:
    return Redis.from_url(stack.settings.redis_url)


def test_shuffled_and_duplicated_callbacks_leave_one_of_each(
    stack: StackUnderTest, make_business
) -> None:
    business = make_business()
    rng = random.Random(20261128)
    for _ in range(3):
        call_sid, recording_sid = new_call_sid(), new_recording_sid()
        sequence = callback_sequence(call_sid, recording_sid, business.numbers[0].e164)
        deliveries = sequence + rng.sample(sequence, k=4)  # retries and duplicates
        rng.shuffle(deliveries)

        for path, params in deliveries:
            response = stack.post(path, params)
            assert response.status_code == 200, (path, response.text)

        calls, recordings, call, recording = final_state(call_sid)
        assert (calls, recordings) == (1, 1)
        assert call is not None and recording is not None
        assert call.status is CallStatus.COMPLETED
        assert call.duration_seconds == 16
        assert call.business_id == business.id
        assert call.answered_at is not None and call.ended_at is not None
        assert call.last_sequence_number == 2
        assert recording.processing_status is not ProcessingStatus.AWAITING_MEDIA
        assert recording.media_url and recording.media_url.endswith(recording_sid)
        queued = redis(stack).lrange(f"rq:queue:{TRANSCRIPTION_QUEUE}", 0, -1)
        assert queued.count(transcription_job_id(recording_sid).encode()) <= 1
        assert redis(stack).exists(f"rq:job:{transcription_job_id(recording_sid)}")


def test_late_ringing_never_moves_a_completed_call_back(
    stack: StackUnderTest, make_business
) -> None:
    business = make_business()
    call_sid = new_call_sid()
    base = call_params(call_sid, business.numbers[0].e164)
    stack.post("/webhook/call_status", {**base, "CallStatus": "completed", "SequenceNumber": "3"})
    stack.post("/webhook/call_status", {**base, "CallStatus": "in-progress", "SequenceNumber": "1"})
    stack.post("/webhook/incoming_call", base)

    _, _, call, _ = final_state(call_sid)
    assert call is not None
    assert call.status is CallStatus.COMPLETED


def test_absent_recording_is_recorded_not_queued(stack: StackUnderTest, make_business) -> None:
    business = make_business()
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    base = call_params(call_sid, business.numbers[0].e164)
    stack.post("/webhook/incoming_call", base)
    stack.post(
        "/webhook/recording_status",
        {
            **base,
            "RecordingSid": recording_sid,
            "RecordingStatus": "absent",
            "ErrorCode": "16102",
            "RecordingDuration": "0",
        },
    )

    _, recordings, _, recording = final_state(call_sid)
    assert recordings == 1
    assert recording is not None
    assert recording.processing_status is ProcessingStatus.ABSENT
    assert recording.error_code == "16102"
    assert not redis(stack).exists(f"rq:job:{recording_sid}")


def test_callbacks_racing_each_other_leave_one_of_each(
    stack: StackUnderTest, make_business
) -> None:
    """Twilio's retries overlap the first attempt: the same callbacks arrive at once, on
    different gunicorn workers, racing the one-statement insert of a new call."""
    business = make_business()
    number = business.numbers[0].e164
    sids = [(new_call_sid(), new_recording_sid()) for _ in range(6)]
    deliveries = [
        delivery
        for call_sid, recording_sid in sids
        for delivery in callback_sequence(call_sid, recording_sid, number) * 2
    ]
    deliveries += [
        ("/webhook/incoming_call", call_params(call_sid, number)) for call_sid, _ in sids
    ]
    random.Random(20261129).shuffle(deliveries)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda d: (d[0], stack.post(*d)), deliveries))

    for path, response in responses:
        assert response.status_code == 200, (path, response.text)
        expected = (
            "text/xml" if path.endswith(("incoming_call", "handle_recording")) else "text/plain"
        )
        assert response.headers["Content-Type"].startswith(expected), path
    greetings = {r.text for path, r in responses if path.endswith("incoming_call")}
    assert len(greetings) == 1, "every caller of the number hears the same answer"
    for call_sid, recording_sid in sids:
        calls, recordings, call, recording = final_state(call_sid)
        assert (calls, recordings) == (1, 1), call_sid
        assert call is not None and recording is not None
        assert call.status is CallStatus.COMPLETED
        assert call.business_id == business.id
        assert call.last_sequence_number == 2 and call.duration_seconds == 16
        assert recording.processing_status is not ProcessingStatus.AWAITING_MEDIA
        queued = redis(stack).lrange(f"rq:queue:{TRANSCRIPTION_QUEUE}", 0, -1)
        assert queued.count(transcription_job_id(recording_sid).encode()) <= 1
