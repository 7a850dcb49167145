"""Every status in Moked, as enums: Twilio's vocabularies and our own processing states."""

from __future__ import annotations

import enum


class CallStatus(enum.StrEnum):
    """Twilio's CallStatus values."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        """Position in a call's life; a status never moves to a lower rank."""
        return _CALL_RANK[self]

    @property
    def is_terminal(self) -> bool:
        return self.rank == _TERMINAL_RANK

    @classmethod
    def parse(cls, value: str | None) -> CallStatus | None:
        try:
            return cls((value or "").strip().lower())
        except ValueError:
            return None


_TERMINAL_RANK = 3
_CALL_RANK = {
    CallStatus.QUEUED: 0,
    CallStatus.RINGING: 1,
    CallStatus.IN_PROGRESS: 2,
    CallStatus.COMPLETED: _TERMINAL_RANK,
    CallStatus.BUSY: _TERMINAL_RANK,
    CallStatus.NO_ANSWER: _TERMINAL_RANK,
    CallStatus.CANCELED: _TERMINAL_RANK,
    CallStatus.FAILED: _TERMINAL_RANK,
}


class RecordingStatus(enum.StrEnum):
    """Twilio's RecordingStatus values (recordingStatusCallback)."""

    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    ABSENT = "absent"
    FAILED = "failed"

    @classmethod
    def parse(cls, value: str | None) -> RecordingStatus | None:
        try:
            return cls((value or "").strip().lower())
        except ValueError:
            return None


class ProcessingStatus(enum.StrEnum):
    """Where a recording is on its way to a transcript."""

    AWAITING_MEDIA = "awaiting_media"
    """Twilio announced the recording but has not reported it completed."""
    AWAITING_TRANSCRIPTION = "awaiting_transcription"
    DOWNLOADING = "downloading"
    TRANSCRIBING = "transcribing"
    READY = "ready"
    FAILED = "failed"
    EMPTY = "empty"
    """The recording holds no speech."""
    ABSENT = "absent"
    """Twilio made no recording (too short or silent)."""

    @property
    def is_final(self) -> bool:
        """Nothing more will happen to the recording unless staff ask for a retry."""
        return self in _FINAL_PROCESSING


_FINAL_PROCESSING = frozenset(
    {
        ProcessingStatus.READY,
        ProcessingStatus.FAILED,
        ProcessingStatus.EMPTY,
        ProcessingStatus.ABSENT,
    }
)


class JobOutcome(enum.StrEnum):
    """How one transcription job ended: the `outcome` label of moked_transcription_jobs_total.

    The alert rules and dashboards match these values; a test checks they name no other.
    """

    READY = "ready"
    EMPTY = "empty"
    FAILED = "failed"
    """Final: the recording is `failed`."""
    RETRY = "retry"
    """A transient failure; RQ runs the job again after a backoff."""
    SKIPPED = "skipped"
    """Nothing to do (already final, not completed by Twilio yet, or finished by another job)."""

    @classmethod
    def of(cls, status: ProcessingStatus) -> JobOutcome:
        """The outcome of a job that left the recording in `status` (ready, empty, failed)."""
        return cls(status.value)


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND_API = "outbound-api"
    OUTBOUND_DIAL = "outbound-dial"
    TRUNKING_ORIGINATING = "trunking-originating"
    TRUNKING_TERMINATING = "trunking-terminating"

    @classmethod
    def parse(cls, value: str | None) -> Direction:
        try:
            return cls((value or "").strip().lower())
        except ValueError:
            return cls.INBOUND


class Endpoint(enum.StrEnum):
    """The webhooks Twilio calls; the value is the path under /webhook/."""

    INCOMING_CALL = "incoming_call"
    HANDLE_RECORDING = "handle_recording"
    RECORDING_STATUS = "recording_status"
    CALL_STATUS = "call_status"
    TWILIO_ALERTS = "twilio_alerts"
    MESSAGE_STATUS = "message_status"
    """Twilio Messaging's delivery reports (SMS, WhatsApp) on alerts Moked sent."""
    CALLBACK_CONNECT = "callback_connect"
    """A callback's staff leg answered: TwiML that dials the caller (moked.callbacks)."""
    CALLBACK_DIAL = "callback_dial"
    """The `<Dial>` to the caller ended (its action): DialCallStatus, DialCallDuration."""
    CALLBACK_STATUS = "callback_status"
    """Status callbacks of a callback's staff leg (initiated, ringing, answered, completed)."""

    @property
    def path(self) -> str:
        return f"/webhook/{self.value}"

    @property
    def answers_twiml(self) -> bool:
        return self in (
            Endpoint.INCOMING_CALL,
            Endpoint.HANDLE_RECORDING,
            Endpoint.CALLBACK_CONNECT,
            Endpoint.CALLBACK_DIAL,
        )

    @property
    def is_callback(self) -> bool:
        """About a callback Moked placed (moked.callbacks), not a call to a business."""
        return self in (Endpoint.CALLBACK_CONNECT, Endpoint.CALLBACK_DIAL, Endpoint.CALLBACK_STATUS)


class EventSource(enum.StrEnum):
    """How a webhook event reached the store."""

    LIVE = "live"
    SPOOL = "spool"
    """Kept on disk while Postgres was down, replayed later."""
    NGINX_FALLBACK = "nginx_fallback"
    """Answered by nginx while the app was down, replayed from nginx's log."""
    TWILIO_API = "twilio_api"
    """Found by the reconciler through Twilio's REST API (the callback never arrived)."""


class MembershipRole(enum.StrEnum):
    """What a staff member may do in a business (memberships.role)."""

    OWNER = "owner"
    """Manages the business: its staff, greetings, numbers, tags and notification rules
    (moked.accounts.manages)."""
    MEMBER = "member"


# --- notifications (moked.notify) --------------------------------------------------------


class Channel(enum.StrEnum):
    """Where a notification rule sends alerts."""

    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    WEBHOOK = "webhook"

    @property
    def held_in_quiet_hours_by_default(self) -> bool:
        """SMS and WhatsApp wake people; email and webhooks wait in an inbox or a system."""
        return self in (Channel.SMS, Channel.WHATSAPP)


class AlertKind(enum.StrEnum):
    """What happened on a call: the `type` of a webhook event (without its `call.` prefix)."""

    MESSAGE_READY = "message_ready"
    """The caller left a voicemail (transcript final, or the wait for it ran out)."""
    MISSED = "missed"
    """The call ended and the caller left nothing."""

    @property
    def event_type(self) -> str:
        return f"call.{self.value}"


class NotifyWhen(enum.StrEnum):
    """Which calls a rule is for (`moked notify add --when`)."""

    MESSAGE = "message"
    MISSED = "missed"
    ALL = "all"

    def wants(self, kind: AlertKind) -> bool:
        if self is NotifyWhen.ALL:
            return True
        return (self is NotifyWhen.MESSAGE) == (kind is AlertKind.MESSAGE_READY)


class DeliveryStatus(enum.StrEnum):
    """One alert to one recipient (moked.notify.deliveries owns the changes)."""

    PENDING = "pending"
    """To be sent, or sent again after a transient failure (`next_attempt_at`)."""
    HELD = "held"
    """Inside the rule's quiet hours: sent in the digest when they end (`held_until`)."""
    SENT = "sent"
    """The provider accepted it (SMTP server, Twilio, the webhook receiver)."""
    FAILED = "failed"
    """A permanent failure, or transient ones for longer than the retry window."""

    @property
    def is_final(self) -> bool:
        return self in (DeliveryStatus.SENT, DeliveryStatus.FAILED)


class NotificationOutcome(enum.StrEnum):
    """The `outcome` label of moked_notifications_total: how one attempt ended."""

    SENT = "sent"
    RETRY = "retry"
    """A transient failure; another attempt follows after a backoff."""
    FAILED = "failed"
    HELD = "held"


# --- callbacks and follow-up (moked.callbacks, moked.followup) ----------------------------


class CallbackStatus(enum.StrEnum):
    """One callback attempt (callback_attempts.status; moked.callbacks owns the changes).
    The last four are its outcome."""

    REQUESTED = "requested"
    """Asked of Twilio (or about to be); nothing heard back yet."""
    RINGING = "ringing"
    """The staff member's phone is ringing."""
    CONNECTING = "connecting"
    """The staff member answered; Twilio is dialling the caller."""
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        return _CALLBACK_RANK[self]

    @property
    def is_final(self) -> bool:
        return self.rank == _CALLBACK_FINAL_RANK


_CALLBACK_FINAL_RANK = 3
_CALLBACK_RANK = {
    CallbackStatus.REQUESTED: 0,
    CallbackStatus.RINGING: 1,
    CallbackStatus.CONNECTING: 2,
    CallbackStatus.REACHED: _CALLBACK_FINAL_RANK,
    CallbackStatus.NO_ANSWER: _CALLBACK_FINAL_RANK,
    CallbackStatus.BUSY: _CALLBACK_FINAL_RANK,
    CallbackStatus.FAILED: _CALLBACK_FINAL_RANK,
}

CALLBACK_OUTCOMES = (
    CallbackStatus.REACHED,
    CallbackStatus.NO_ANSWER,
    CallbackStatus.BUSY,
    CallbackStatus.FAILED,
)
"""What staff can log by hand for an attempt made from their own phone."""


class FollowUp(enum.StrEnum):
    """Where a call is on its way back to the caller (calls.follow_up; moked.followup)."""

    NEW = "new"
    NEEDS_CALLBACK = "needs_callback"
    CALLED_BACK = "called_back"
    """A callback reached the caller."""
    NO_ANSWER = "no_answer"
    """The last callback did not reach the caller: try again."""
    RESOLVED = "resolved"
    """Done (what the CRM's "handled" was)."""

    @property
    def is_open(self) -> bool:
        return self is not FollowUp.RESOLVED


class Intent(enum.StrEnum):
    """What a caller wants, as the summary backend reads the transcript (recordings.intent;
    SUMMARY_BACKEND, issue 15)."""

    CALLBACK_REQUEST = "callback_request"
    ORDER = "order"
    COMPLAINT = "complaint"
    QUESTION = "question"
    SPAM = "spam"
    OTHER = "other"


class SummaryBackend(enum.StrEnum):
    OFF = "off"
    OPENAI = "openai"
