"""Every line of a call's timeline is in Hebrew for a Hebrew user (crm_ui.calls.timeline_of):
a call with every kind of entry, built from the status enums, so a new status, outcome,
channel or webhook without a Hebrew label fails here."""

from __future__ import annotations

import datetime as dt
import itertools
import re

from flask import Flask

from crm_ui import callbacks as callback_page
from crm_ui import calls
from crm_ui.present import CHANNEL_NAMES, TimelineEntry
from moked.db.models import (
    AssignmentChange,
    Call,
    CallbackAttempt,
    CallTag,
    FollowUpChange,
    Note,
    NotificationDelivery,
    Recording,
    Tag,
    User,
    WebhookEvent,
)
from moked.statuses import (
    AlertKind,
    CallbackStatus,
    CallStatus,
    Channel,
    DeliveryStatus,
    Endpoint,
    FollowUp,
    ProcessingStatus,
    RecordingStatus,
)

CALL_SID = "CA" + "0" * 32
MODEL = "large-v3-turbo"
NOT_THIS_CALLS_SID = {
    # Logged under another sid, shown from their rows (callback attempts, deliveries).
    Endpoint.TWILIO_ALERTS,
    Endpoint.MESSAGE_STATUS,
    Endpoint.CALLBACK_CONNECT,
    Endpoint.CALLBACK_DIAL,
    Endpoint.CALLBACK_STATUS,
}
NOT_YET_HAPPENED = {DeliveryStatus.PENDING, DeliveryStatus.HELD}
DATA = re.compile(
    r"[\w.+-]+@[\w.-]+"  # e-mail addresses
    r"|https?://\S+"  # URLs
    r"|\b(?:CA|RE|SM)[0-9a-f]{32}\b"  # Twilio sids
    r"|" + re.escape(MODEL)  # the transcription model's name
)
"""What may stay as it is in a Hebrew timeline: data, not words."""
START = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
_clock = itertools.count()


def tick() -> dt.datetime:
    return START + dt.timedelta(seconds=next(_clock))


def event(endpoint: Endpoint, **params: str) -> WebhookEvent:
    return WebhookEvent(
        endpoint=endpoint.value, call_sid=CALL_SID, params={"CallSid": CALL_SID, **params},
        received_at=tick(),
    )  # fmt: skip


def a_call_with_everything() -> tuple[Call, list[WebhookEvent], list[Note], dict[int, User]]:
    dana = User(id=7, email="dana@alpha.test", name="דנה")
    nameless = User(id=8, email="staff@alpha.test", name=None)
    call = Call(call_sid=CALL_SID, from_number="+972501234567", to_number="+97235550100")
    events = [
        event(Endpoint.INCOMING_CALL, From="+972501234567", To="+97235550100"),
        event(Endpoint.INCOMING_CALL, From="", To="+97235550100"),
        event(Endpoint.HANDLE_RECORDING, RecordingDuration="12"),
        event(Endpoint.HANDLE_RECORDING),
        *[event(Endpoint.CALL_STATUS, CallStatus=s.value, CallDuration="14") for s in CallStatus],
        *[event(Endpoint.RECORDING_STATUS, RecordingStatus=s.value) for s in RecordingStatus],
        event(Endpoint.RECORDING_STATUS, RecordingStatus="failed", ErrorCode="13617"),
    ]
    call.recordings = [
        Recording(
            recording_sid=f"RE{i:032x}", processing_status=status, model=MODEL,
            processing_finished_at=tick(),
        )
        for i, status in enumerate(s for s in ProcessingStatus if s.is_final)
    ]  # fmt: skip
    recipients = {
        Channel.EMAIL: "owner@alpha.test",
        Channel.SMS: "+972541234567",
        Channel.WHATSAPP: "+972541234568",
        Channel.WEBHOOK: "https://hooks.alpha.test/moked",
    }
    call.notifications = [
        NotificationDelivery(
            channel=channel, recipient=recipients[channel], status=status,
            kind=AlertKind.MESSAGE_READY, sent_at=tick(), updated_at=tick(), created_at=tick(),
        )
        for channel in Channel
        for status in DeliveryStatus
    ]  # fmt: skip
    call.follow_up_changes = [
        FollowUpChange(to_status=status, user=dana, at=tick()) for status in FollowUp
    ]
    call.callback_attempts = [
        CallbackAttempt(
            status=status, manual=manual, user=nameless if manual else dana, started_at=tick(),
            ended_at=tick(), duration_seconds=65,
        )
        for status in CallbackStatus
        for manual in (False, True)
    ]  # fmt: skip
    call.call_tags = [CallTag(tag=Tag(name="לקוח חוזר"), created_by_id=7, created_at=tick())]
    call.assignment_changes = [
        AssignmentChange(assignee=nameless, by=dana, at=tick()),
        AssignmentChange(assignee=None, by=dana, at=tick()),
    ]
    notes = [Note(body="לחזור אחרי הצהריים", author=nameless, created_at=tick())]
    return call, events, notes, {7: dana, 8: nameless}


def english_left(entry: TimelineEntry) -> str:
    return " ".join(re.findall(r"[A-Za-z]+", DATA.sub("", f"{entry.title} {entry.detail}")))


def test_every_kind_of_timeline_entry_has_its_label() -> None:
    # A new webhook, final processing state or delivery state must be placed.
    assert set(Endpoint) == calls.TIMELINE_ENDPOINTS | NOT_THIS_CALLS_SID
    assert set(calls.FINISHED_TITLES) == {s for s in ProcessingStatus if s.is_final}
    assert set(calls.DELIVERY_TITLES) == set(DeliveryStatus) - NOT_YET_HAPPENED
    assert set(calls.RECORDING_TITLES) == set(RecordingStatus)
    assert set(callback_page.FOLLOW_UP_LABELS) == set(FollowUp)
    assert set(callback_page.OUTCOME_LABELS) == set(CallbackStatus)
    assert set(CHANNEL_NAMES) == set(Channel)


def test_a_hebrew_user_reads_every_timeline_entry_in_hebrew(crm_app: Flask) -> None:
    call, events, notes, users = a_call_with_everything()
    with crm_app.test_request_context("/", headers={"Cookie": "moked_lang=he"}):
        entries = calls.timeline_of(call, events, notes, users)
    english = [(e.title, e.detail) for e in entries if english_left(e)]
    assert not english, english

    titles = [e.title for e in entries]
    # Every source gave its entries, each status its own words (not the raw value).
    status_titles = {t for t in titles if t.startswith("סטטוס שיחה: ")}
    assert len(status_titles) == len(CallStatus)
    recording_titles = {e.title for e in entries if e.icon == "rec"} - {"הודעה הוקלטה"}
    assert len(recording_titles) == len(RecordingStatus)
    follow_ups = {t for t in titles if t.startswith("מעקב: ")}
    assert len(follow_ups) == len(FollowUp)
    finals = [a for a in call.callback_attempts if a.status.is_final]
    ended = [e for e in entries if e.title == "החזרה הסתיימה"]
    assert len(ended) == len(finals) and len({e.detail for e in ended}) == len(
        {a.status for a in finals}
    )
    sent = [e for e in entries if e.icon == "notify"]
    assert len(sent) == len(Channel) * len(calls.DELIVERY_TITLES)
    assert {"נוספה הערה", "נוספה תגית: לקוח חוזר"} <= set(titles)
    assert {"שויכה אל staff@alpha.test", "השיוך בוטל"} <= set(titles)
    # The same call in English is English: the Hebrew came from the translator.
    with crm_app.test_request_context("/", headers={"Cookie": "moked_lang=en"}):
        english_titles = [e.title for e in calls.timeline_of(call, events, notes, users)]
    assert "Call received" in english_titles and "Note added" in english_titles


def test_a_call_handled_before_follow_ups_existed_says_so_in_hebrew(crm_app: Flask) -> None:
    call = Call(call_sid=CALL_SID, handled_at=tick(), handled_by=User(email="old@alpha.test"))
    call.follow_up_changes = []
    call.assignment_changes = []
    call.callback_attempts = []
    call.notifications = []
    with crm_app.test_request_context("/", headers={"Cookie": "moked_lang=he"}):
        (entry,) = calls.timeline_of(call, [], [], {})
    assert entry.title == "סומנה כטופלה" and not english_left(entry)
