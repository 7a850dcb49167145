"""How values look to staff: numbers, times in the business's zone, durations, statuses."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import phonenumbers
from markupsafe import Markup, escape

from moked import recordings, transcripts
from moked.businesses import local_time as local_time
from moked.businesses import zone as zone
from moked.db.models import Call, Recording
from moked.phone import DEFAULT_REGION, display
from moked.statuses import CallStatus, Channel, Intent, ProcessingStatus

CHANNEL_NAMES = {
    Channel.EMAIL: "E-mail",
    Channel.SMS: "SMS",
    Channel.WHATSAPP: "WhatsApp",
    Channel.WEBHOOK: "Webhook",
}
"""A notification channel as staff read it (a message id for `_`)."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a call's timeline on the call page."""

    at: dt.datetime
    icon: str
    title: str
    detail: str = ""


CALL_STATUS_LABELS = {
    CallStatus.QUEUED: "Queued",
    CallStatus.RINGING: "Ringing",
    CallStatus.IN_PROGRESS: "In progress",
    CallStatus.COMPLETED: "Completed",
    CallStatus.BUSY: "Busy",
    CallStatus.NO_ANSWER: "No answer",
    CallStatus.CANCELED: "Canceled",
    CallStatus.FAILED: "Failed",
}
CALL_STATUS_TONE = {
    CallStatus.COMPLETED: "ok",
    CallStatus.BUSY: "warn",
    CallStatus.NO_ANSWER: "warn",
    CallStatus.CANCELED: "muted",
    CallStatus.FAILED: "bad",
}
PROCESSING_LABELS = {
    ProcessingStatus.AWAITING_MEDIA: "Awaiting recording",
    ProcessingStatus.AWAITING_TRANSCRIPTION: "Awaiting transcription",
    ProcessingStatus.DOWNLOADING: "Transcribing",
    ProcessingStatus.TRANSCRIBING: "Transcribing",
    ProcessingStatus.READY: "Ready",
    ProcessingStatus.FAILED: "Transcription failed",
    ProcessingStatus.EMPTY: "Empty",
    ProcessingStatus.ABSENT: "No recording",
}
PROCESSING_TONE = {
    ProcessingStatus.READY: "ok",
    ProcessingStatus.FAILED: "bad",
    ProcessingStatus.EMPTY: "muted",
    ProcessingStatus.ABSENT: "muted",
}


FAILURE_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    # The beginnings of the messages moked.recordings and the transcriber (media.py,
    # jobs.py) store in Recording.error, and what staff are told instead: the stored text
    # names internal hosts and Twilio's account path, so only admins see it.
    (("twilio could not record",), "Twilio could not record the message."),
    (("the file is not audio",), "The file is not audio."),
    (
        ("the recording is over", "the recording is larger than"),
        "The recording is too large to transcribe.",
    ),
    (
        (
            "fetching the recording",
            "refusing",
            "media host",
            "more than",
            "twilio gave no recordingurl",
        ),
        "The recording could not be downloaded.",
    ),
)
SERVICE_FAILED = "The transcription service failed."


def failure_reason(error: str | None) -> str:
    """A plain reason (a message id for `_`) for a recording's stored error."""
    text = (error or "").strip().lower()
    for beginnings, reason in FAILURE_REASONS:
        if text.startswith(beginnings):
            return reason
    return SERVICE_FAILED


def duration(seconds: int | float | None) -> str:
    if seconds is None:
        return "–"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def phone(raw: str | None) -> str:
    """Like moked.phone.display, but also formats numbers that are merely possible (a new
    range the metadata does not know yet reads better as 050-123-4567 than +972501234567)."""
    if not raw:
        return ""
    shown = display(raw)
    if shown != raw:
        return shown
    try:
        parsed = phonenumbers.parse(raw, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return raw
    if not phonenumbers.is_possible_number(parsed):
        return raw
    same_region = parsed.country_code == phonenumbers.country_code_for_region(DEFAULT_REGION)
    style = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if same_region
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(parsed, style)


def call_time(call: Call) -> dt.datetime | None:
    return call.started_at or call.created_at


def main_recording(call: Call) -> Recording | None:
    """The recording staff listen to (`moked.recordings.main_recording`)."""
    return recordings.main_recording(call.recordings)


def snippet(text: str | None, length: int = 140) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def highlight(text: str, terms: list[str]) -> Markup:
    """`text` escaped, with every occurrence of the search words wrapped in <mark>."""
    words = sorted({t for t in terms if t}, key=len, reverse=True)
    if not words:
        return escape(text)
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    out = Markup()
    last = 0
    for match in pattern.finditer(text):
        out += escape(text[last : match.start()])
        out += Markup("<mark>{}</mark>").format(match.group(0))
        last = match.end()
    return out + escape(text[last:])


def focused_snippet(text: str | None, terms: list[str], length: int = 140) -> str:
    """A snippet around the first search word (so the match is visible), else the start."""
    if not text:
        return ""
    flat = " ".join(text.split())
    lowered = flat.lower()
    hits = [lowered.find(t.lower()) for t in terms if t and t.lower() in lowered]
    if not hits or len(flat) <= length:
        return snippet(flat, length)
    start = max(0, min(hits) - length // 3)
    piece = flat[start : start + length]
    return ("…" if start else "") + piece.rstrip() + ("…" if start + length < len(flat) else "")


# --- transcripts: segments, language, confidence (issue 15) -------------------------------

LOW_CONFIDENCE_REASONS = {
    transcripts.REASON_BASE: "Transcribed by a basic model that is weak in this language.",
    transcripts.REASON_WORDS: "The transcriber was unsure of many words.",
    transcripts.REASON_NO_SPEECH: "Most of the recording sounds like noise rather than speech.",
    transcripts.REASON_LANGUAGE: "The spoken language was hard to tell.",
}
"""Each known low-confidence reason (moked.transcripts.REASON_*) as staff read it."""
LOW_CONFIDENCE_OTHER = "The transcript may be wrong."
LANGUAGE_NAMES = {
    "he": "Hebrew",
    "en": "English",
    "ar": "Arabic",
    "ru": "Russian",
    "fr": "French",
    "es": "Spanish",
    "am": "Amharic",
    "uk": "Ukrainian",
}
"""The languages staff can ask a transcript to be redone in (and their names)."""


def low_confidence_reasons(recording: Recording | None) -> list[str]:
    """Why to listen rather than read (message ids for `_`); empty when nothing is known."""
    if recording is None or not recording.low_confidence:
        return []
    kinds = transcripts.reason_kinds(recording.low_confidence_reason)
    reasons = [LOW_CONFIDENCE_REASONS.get(kind, LOW_CONFIDENCE_OTHER) for kind in kinds]
    return list(dict.fromkeys(reasons)) or [LOW_CONFIDENCE_OTHER]


def language_name(code: str | None) -> str:
    """A message id for `_` (Hebrew, English…); an unknown code as it is."""
    return LANGUAGE_NAMES.get((code or "")[:2], code or "")


def transcript_segments(recording: Recording | None) -> list[transcripts.Segment]:
    return transcripts.segments_of(recording.transcript_segments if recording else None)


def retry_languages(recording: Recording | None) -> list[str]:
    """The languages the picker offers, the transcript's own first."""
    first = [recording.transcript_language] if recording and recording.transcript_language else []
    return list(dict.fromkeys([*first, *LANGUAGE_NAMES]))


INTENT_LABELS = {
    Intent.CALLBACK_REQUEST: ("Wants a callback", "warn"),
    Intent.ORDER: ("Order", "ok"),
    Intent.COMPLAINT: ("Complaint", "bad"),
    Intent.QUESTION: ("Question", "info"),
    Intent.SPAM: ("Spam", "muted"),
    Intent.OTHER: ("Other", "muted"),
}
"""A summary's intent (moked.statuses.Intent): its label and chip tone."""


def intent_label(value: str | None) -> tuple[str, str] | None:
    try:
        return INTENT_LABELS[Intent(value)] if value else None
    except ValueError:
        return None
