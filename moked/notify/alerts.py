"""What an alert says: built once from a call, then worded per channel and language.

`Alert` is the one description every channel reads; `payload` is its one serializer for
machines (the webhook's JSON, docs/schemas/notification-webhook.json). Texts are
Hebrew-first: a business whose language is Hebrew gets Hebrew alerts, others English.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
from sqlalchemy.orm import Session

from moked import businesses, callers, recordings
from moked.db.models import Business, Call
from moked.phone import DEFAULT_REGION
from moked.settings import Settings
from moked.statuses import AlertKind, ProcessingStatus


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    call_sid: str
    business_id: int
    business_name: str
    language: str
    """The alert's language: "he" or "en" (from the business's language)."""
    timezone: str
    from_number: str | None
    """E.164, or None when the caller withheld the number."""
    to_number: str | None
    started_at: dt.datetime | None
    duration_seconds: int | None
    transcript: str | None
    """None while there is none (the wait for it ran out, it failed, or nothing was said)."""
    transcript_status: ProcessingStatus | None
    transcript_language: str | None
    calls_this_week: int
    """This caller's calls to this business in the last 7 days, this one included."""
    call_url: str
    """The CRM's call page (login required; never the recording itself)."""
    recording_path: Path | None
    """The local copy of the recording (email attachments), when there is one."""
    recording_bytes: int | None
    summary: str | None = None
    """One short summary of the transcript (SUMMARY_BACKEND), when there is one."""
    intent: str | None = None

    @property
    def is_hebrew(self) -> bool:
        return self.language == "he"


def language_of(business_language: str | None) -> str:
    return "he" if (business_language or "he").lower().startswith(("he", "iw")) else "en"


def build(session: Session, settings: Settings, call: Call, kind: AlertKind) -> Alert:
    """The alert about `call` (its business loaded), as of now."""
    business = call.business
    if business is None:
        raise ValueError(f"{call.call_sid} belongs to no business")
    recording = recordings.main_recording(call.recordings)
    transcript: str | None = None
    status = recording.processing_status if recording is not None else None
    if recording is not None and status is ProcessingStatus.READY:
        transcript = recording.transcript or None
    path = None
    size = None
    if recording is not None and recording.local_path:
        candidate = settings.recordings_dir / recording.local_path
        if candidate.is_file():
            path, size = candidate, candidate.stat().st_size
    return Alert(
        kind=kind,
        call_sid=call.call_sid,
        business_id=business.id,
        business_name=business.name,
        language=language_of(business.language),
        timezone=business.timezone or businesses.DEFAULT_TIMEZONE,
        from_number=callers.caller_number(call.from_number),
        to_number=call.to_number,
        started_at=call.started_at or call.created_at,
        duration_seconds=call.duration_seconds,
        transcript=transcript,
        transcript_status=status,
        transcript_language=recording.transcript_language if recording and transcript else None,
        calls_this_week=caller_calls(session, call),
        call_url=settings.public_url(f"/calls/{call.call_sid}"),
        recording_path=path,
        recording_bytes=size,
        summary=recording.summary if recording and transcript else None,
        intent=recording.intent if recording and transcript else None,
    )


def sample(settings: Settings, business: Business, now: dt.datetime) -> Alert:
    """A made-up voicemail to this business (`moked notify test`, the CRM's "send a test")."""
    hebrew = language_of(business.language) == "he"
    return Alert(
        kind=AlertKind.MESSAGE_READY,
        call_sid="CA" + "0" * 32,
        business_id=business.id,
        business_name=business.name,
        language="he" if hebrew else "en",
        timezone=business.timezone or businesses.DEFAULT_TIMEZONE,
        from_number="+972501234567",
        to_number=business.numbers[0].e164 if business.numbers else None,
        started_at=now,
        duration_seconds=12,
        transcript=(
            "זו הודעת ניסיון של מוקד: כך תיראה התראה על הודעה קולית."
            if hebrew
            else "This is a Moked test: a voicemail alert will look like this."
        ),
        transcript_status=ProcessingStatus.READY,
        transcript_language="he" if hebrew else "en",
        calls_this_week=1,
        call_url=settings.public_url("/"),
        recording_path=None,
        recording_bytes=None,
    )


def caller_calls(session: Session, call: Call) -> int:
    """Calls from this caller to this business in the week up to this one (included):
    counted once, by moked.callers (the inbox's badges are the same count)."""
    return callers.calls_this_week(session, call)


# --- words ---------------------------------------------------------------------------------

_TEXTS = {
    "he": {
        "withheld": "מספר חסוי",
        "message": "הודעה חדשה",
        "missed": "שיחה שלא נענתה",
        "from": "מאת",
        "at": "בשעה",
        "duration": "משך",
        "seconds": "שנ׳",
        "no_transcript": "התמלול עדיין לא מוכן; אפשר להאזין בעמוד השיחה.",
        "no_speech": "לא זוהה דיבור בהקלטה.",
        "failed": "התמלול נכשל; אפשר להאזין בעמוד השיחה.",
        "left_nothing": "המתקשר לא השאיר הודעה.",
        "open": "לעמוד השיחה",
        "digest": "{n} שיחות בשעות השקט",
        "nth": "שיחה מס׳ {n} השבוע מהמספר הזה",
        "summary": "תקציר",
    },
    "en": {
        "withheld": "Withheld number",
        "message": "New voicemail",
        "missed": "Missed call",
        "from": "From",
        "at": "At",
        "duration": "Duration",
        "seconds": "s",
        "no_transcript": "The transcript is not ready yet; listen on the call page.",
        "no_speech": "No speech was heard in the recording.",
        "failed": "The transcription failed; listen on the call page.",
        "left_nothing": "The caller left no message.",
        "open": "Open the call",
        "digest": "{n} calls during quiet hours",
        "nth": "{n}{suffix} call this week from this number",
        "summary": "Summary",
    },
}


def text(alert: Alert, key: str) -> str:
    return _TEXTS[alert.language][key]


def _ordinal_suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def caller(alert: Alert) -> str:
    """The caller as people read it: 054-123-4567 at home, +44 20 … abroad, or withheld."""
    if alert.from_number is None:
        return text(alert, "withheld")
    parsed = phonenumbers.parse(alert.from_number, DEFAULT_REGION)
    if phonenumbers.region_code_for_number(parsed) == DEFAULT_REGION:
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def repeat_note(alert: Alert) -> str | None:
    """ "3rd call this week from this number", or None for a first call."""
    n = alert.calls_this_week
    if n < 2:
        return None
    return text(alert, "nth").format(n=n, suffix=_ordinal_suffix(n))


def local_time(alert: Alert, fmt: str = "%d/%m/%Y %H:%M") -> str:
    """When the call came, in the business's zone (never raises on an odd stored time)."""
    return businesses.local_time(alert.started_at, alert.timezone, fmt)


def title(alert: Alert) -> str:
    """ "New voicemail" / "Missed call"."""
    return text(alert, "message" if alert.kind is AlertKind.MESSAGE_READY else "missed")


def subject(alert: Alert) -> str:
    """One line: what, from whom, for which business (email subject, SMS first line)."""
    return f"{title(alert)}: {caller(alert)} · {alert.business_name}"


def transcript_line(alert: Alert) -> str:
    """The transcript, or why there is none."""
    if alert.kind is AlertKind.MISSED:
        return text(alert, "left_nothing")
    if alert.transcript:
        return alert.transcript
    if alert.transcript_status is ProcessingStatus.EMPTY:
        return text(alert, "no_speech")
    if alert.transcript_status is ProcessingStatus.FAILED:
        return text(alert, "failed")
    return text(alert, "no_transcript")


def details(alert: Alert) -> list[str]:
    """The facts under the title, one per line: from, when, duration, repeat note."""
    lines = [f"{text(alert, 'from')}: {caller(alert)}", f"{text(alert, 'at')}: {local_time(alert)}"]
    if alert.duration_seconds is not None:
        lines.append(
            f"{text(alert, 'duration')}: {alert.duration_seconds} {text(alert, 'seconds')}"
        )
    note = repeat_note(alert)
    if note:
        lines.append(note)
    if alert.summary:
        lines.append(f"{text(alert, 'summary')}: {alert.summary}")
    return lines


def digest_title(alerts: Sequence[Alert]) -> str:
    first = alerts[0]
    return f"{text(first, 'digest').format(n=len(alerts))} · {first.business_name}"


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    try:
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError):
        return value.isoformat()


def payload(alert: Alert, timestamp: dt.datetime) -> dict[str, Any]:
    """The webhook event (docs/schemas/notification-webhook.json): the one serializer."""
    return {
        "type": alert.kind.event_type,
        "timestamp": _iso(timestamp),
        "data": {
            "call_sid": alert.call_sid,
            "business": {"id": alert.business_id, "name": alert.business_name},
            "from": alert.from_number,
            "to": alert.to_number,
            "started_at": _iso(alert.started_at),
            "duration_seconds": alert.duration_seconds,
            "transcript": alert.transcript,
            "transcript_language": alert.transcript_language,
            "summary": alert.summary,
            "intent": alert.intent,
            "call_url": alert.call_url,
        },
    }
