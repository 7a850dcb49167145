"""`make bench`, notifications: how much an alert adds to the transcript's own time.

A burst of MOKED_BENCH_NOTIFY_CALLS (default 20) English voicemails of 10–30 s goes
through the whole stack (nginx, webhooks, the transcriber on the embedded model, the
reconciler, the notifier) to a business with an email rule (the stack's development
mail sink, a real SMTP server) and a webhook rule (a receiver on loopback). Measured from
Twilio's `recording_status=completed` (as the stack stored it) to: the transcript stored;
the SMTP server accepting the email (the .eml file's time); the receiver accepting the
webhook. The goal: notification adds under 1 s p95 to the transcript's own time.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import secrets
import time
from pathlib import Path

from sqlalchemy import select

from moked.businesses import BusinessSpec, upsert_business
from moked.db.models import Business, Call, NotificationDelivery, Recording
from moked.db.session import session_scope
from moked.notify import rules
from moked.notify.channels.webhook import new_secret
from moked.simulator import audio
from moked.simulator.load import percentile
from moked.simulator.media_server import MediaServer
from moked.statuses import Channel, DeliveryStatus
from tests.harness import StackUnderTest, make_state_dir, start_test_stack, stop_test_stack
from tests.helpers import call_params, new_call_sid, new_recording_sid, unique_number
from tests.moked.notify.receivers import WebhookReceiver

SENTENCES = (
    "Hello, this is a customer calling about the order I placed last week.",
    "The delivery was supposed to arrive on Monday but nothing has come yet.",
    "Please call me back this afternoon, I will be at home until five o'clock.",
    "My number is the one I am calling from. Thank you very much and have a good day.",
)
TARGET_SECONDS = (10, 20, 30)


def _voicemails() -> list[audio.Voicemail]:
    """Three lengths (10, 20, 30 s), cut from the same English speech."""
    long_text = " ".join(SENTENCES * 3)
    speech = audio.speak(long_text, "en")
    return [audio.cut(speech, min(seconds, speech.seconds)) for seconds in TARGET_SECONDS]


def _stats(values: list[float]) -> str:
    if not values:
        return "– | – | –"
    ordered = sorted(values)
    return f"{percentile(ordered, 50):.2f} | {percentile(ordered, 95):.2f} | {ordered[-1]:.2f}"


def run(stack: StackUnderTest | None = None) -> str:
    calls = int(os.environ.get("MOKED_BENCH_NOTIFY_CALLS", "20"))
    own = stack is None
    if stack is None:
        stack = start_test_stack(make_state_dir("moked-bench-notify-"))
    receiver = WebhookReceiver().start()
    try:
        return _run(stack, receiver, calls)
    finally:
        receiver.stop()
        if own:
            stop_test_stack(stack)


def _business(stack: StackUnderTest, receiver: WebhookReceiver) -> str:
    number = unique_number()
    with session_scope() as session:
        business = upsert_business(
            session,
            BusinessSpec(
                name=f"Notification bench {secrets.token_hex(3)}",
                numbers=(number,),
                language="en-US",
            ),
            stack.settings.greetings_dir,
        )
        session.flush()
        for rule in (
            rules.NewRule(channel=Channel.EMAIL, target="owner@example.org"),
            rules.NewRule(channel=Channel.WEBHOOK, target=receiver.url, secret=new_secret()),
        ):
            rules.add(session, stack.settings, session.get(Business, business.id), rule)  # type: ignore[arg-type]
    return number


def _run(stack: StackUnderTest, receiver: WebhookReceiver, calls: int) -> str:
    settings = stack.settings
    to = _business(stack, receiver)
    voicemails = _voicemails()
    token = settings.twilio_auth_token.get_secret_value()
    sids: list[str] = []
    with MediaServer(settings.twilio_account_sid, token) as media:
        for index in range(calls):
            voicemail = voicemails[index % len(voicemails)]
            call_sid, recording_sid = new_call_sid(), new_recording_sid()
            media.publish(recording_sid, voicemail)
            recording = {
                "RecordingSid": recording_sid,
                "RecordingUrl": media.url_for(recording_sid),
                "RecordingDuration": str(round(voicemail.seconds)),
            }
            stack.post("/webhook/incoming_call", call_params(call_sid, to))
            stack.post(
                "/webhook/handle_recording",
                call_params(call_sid, to, CallStatus="in-progress", **recording),
            )
            stack.post(
                "/webhook/recording_status",
                call_params(call_sid, to, RecordingStatus="completed", **recording),
            )
            sids.append(call_sid)
        rows = _wait(sids, timeout=float(os.environ.get("MOKED_BENCH_NOTIFY_TIMEOUT", "900")))
    emails = _email_times(settings.mail_dir)
    hooks = {r.headers.get("webhook-id"): r.at for r in receiver.requests}
    transcription, email_lag, hook_lag, email_added, hook_added = [], [], [], [], []
    for completed, finished, _seconds, deliveries in rows.values():
        transcription.append((finished - completed).total_seconds())
        for channel, message_id in deliveries:
            if channel is Channel.EMAIL and message_id in emails:
                accepted = emails[message_id]
                email_lag.append(accepted - completed.timestamp())
                email_added.append(accepted - finished.timestamp())
            if channel is Channel.WEBHOOK and message_id in hooks:
                accepted = hooks[message_id]
                hook_lag.append(accepted - completed.timestamp())
                hook_added.append(accepted - finished.timestamp())
    lines = [
        "## Notifications",
        "",
        f"{calls} English voicemails of {'/'.join(f'{v.seconds:.0f}' for v in voicemails)} s,"
        " sent at once through nginx; the embedded Whisper base model, one transcriber"
        f" worker, the notifier; {len(email_lag)} emails (development mail sink, SMTP) and"
        f" {len(hook_lag)} webhooks (loopback receiver) arrived, each once.",
        "",
        "Seconds from `recording_status=completed`:",
        "",
        "| to | p50 | p95 | max |",
        "|---|---:|---:|---:|",
        f"| transcript stored | {_stats(transcription)} |",
        f"| email accepted by the SMTP server | {_stats(email_lag)} |",
        f"| webhook accepted by the receiver | {_stats(hook_lag)} |",
        "",
        "What the notification adds after the transcript is stored (goal: p95 under 1 s):",
        "",
        "| channel | p50 | p95 | max |",
        "|---|---:|---:|---:|",
        f"| email | {_stats(email_added)} |",
        f"| webhook | {_stats(hook_added)} |",
    ]
    if len(email_lag) != calls or len(hook_lag) != calls or len(receiver.requests) != calls:
        lines += ["", f"**Missing or duplicated:** {len(receiver.requests)} webhook requests."]
    return "\n".join(lines)


Row = tuple[dt.datetime, dt.datetime, float | None, list[tuple[Channel, str]]]


def _wait(call_sids: list[str], timeout: float) -> dict[str, Row]:
    deadline = time.monotonic() + timeout
    while True:
        rows = _read(call_sids)
        if len(rows) == len(call_sids) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def _read(call_sids: list[str]) -> dict[str, Row]:
    done: dict[str, Row] = {}
    with session_scope() as session:
        for call_sid, completed, finished, seconds in session.execute(
            select(
                Call.call_sid,
                Recording.completed_at,
                Recording.processing_finished_at,
                Recording.audio_seconds,
            )
            .join(Recording, Recording.call_id == Call.id)
            .where(Call.call_sid.in_(call_sids))
        ):
            sent = session.execute(
                select(
                    NotificationDelivery.channel,
                    NotificationDelivery.message_id,
                    NotificationDelivery.status,
                )
                .join(Call, Call.id == NotificationDelivery.call_id)
                .where(Call.call_sid == call_sid)
            ).all()
            if (
                completed
                and finished
                and len(sent) == 2
                and all(s is DeliveryStatus.SENT for _, _, s in sent)
            ):
                done[call_sid] = (completed, finished, seconds, [(c, m) for c, m, _ in sent])
    return done


def _email_times(directory: Path) -> dict[str, float]:
    """Message-ID (ours: `<msg_…@moked>`) → when the sink stored it."""
    times: dict[str, float] = {}
    for path in directory.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        message_id = str(message.get("Message-ID", "")).strip("<>").split("@", 1)[0]
        times[message_id] = path.stat().st_mtime
    return times
