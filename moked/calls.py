"""A call as the outside world reads it: one description for the CLI, the API and alerts.

`moked call show --json`, `GET /api/v1/calls[/<CallSid>]` and (next) the notification
payloads all print `describe_call`; its shape is documented once, as a JSON Schema, in
docs/schemas/call.json (a test validates every printer's output against it).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy.orm import selectinload
from sqlalchemy.orm.interfaces import LoaderOption

from moked import callbacks, callers, transcripts
from moked.db.models import Call, CallbackAttempt, CallTag, NotificationDelivery
from moked.recordings import main_recording

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "call.json"
"""The JSON Schema of `describe_call` (in the repository, not in the images)."""


def call_loading() -> list[LoaderOption]:
    """What `describe_call` reads, loaded up front (one query each, not one per call)."""
    return [
        selectinload(Call.recordings),
        selectinload(Call.business),
        selectinload(Call.call_tags).selectinload(CallTag.tag),
        selectinload(Call.assignee),
        selectinload(Call.notifications),
        selectinload(Call.callback_attempts).selectinload(CallbackAttempt.user),
        selectinload(Call.caller),
    ]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def describe_call(call: Call, recordings_dir: Path) -> dict[str, Any]:
    """The call, its main recording (`moked.recordings.main_recording`) and staff's work."""
    recording = main_recording(call.recordings)
    business = call.business
    return {
        "call_sid": call.call_sid,
        "business_id": call.business_id,
        "business": {"id": business.id, "name": business.name} if business else None,
        "from": call.from_number,
        "to": call.to_number,
        "direction": call.direction.value if call.direction else None,
        "status": call.status.value if call.status else None,
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
        "duration_seconds": call.duration_seconds,
        "recordings": len(call.recordings),
        "recording_sid": recording.recording_sid if recording else None,
        "recording_path": (
            str(recordings_dir / recording.local_path)
            if recording is not None and recording.local_path
            else None
        ),
        "recording_duration_seconds": recording.duration_seconds if recording else None,
        "processing_status": recording.processing_status.value if recording else None,
        "transcript": recording.transcript if recording else None,
        "transcript_language": recording.transcript_language if recording else None,
        "transcript_low_confidence": recording.low_confidence_reason if recording else None,
        "transcript_segments": transcripts.public(recording.transcript_segments)
        if recording
        else [],
        "transcript_detected_language": recording.detected_language if recording else None,
        "transcript_language_probability": recording.language_probability if recording else None,
        "transcript_forced_language": recording.forced_language if recording else None,
        "summary": recording.summary if recording else None,
        "intent": recording.intent if recording else None,
        "transcription_error": recording.error if recording else None,
        "tags": [call_tag.tag.name for call_tag in call.call_tags],
        "handled": call.handled_at is not None,
        "handled_at": _iso(call.handled_at),
        "assignee": call.assignee.email if call.assignee else None,
        "notifications": [describe_delivery(d) for d in call.notifications],
        "callback": callbacks.describe(call),
        "blocked": call.blocked,
        "caller": callers.describe(call.caller) if call.caller is not None else None,
    }


def describe_delivery(delivery: NotificationDelivery) -> dict[str, Any]:
    """One alert sent (or to be sent) about the call; `error` is the last attempt's."""
    return {
        "channel": delivery.channel.value,
        "recipient": delivery.recipient,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "sent_at": _iso(delivery.sent_at),
        "provider_status": delivery.provider_status,
        "provider_error_code": delivery.provider_error_code,
        "error": delivery.last_error,
    }
