"""The schema: businesses, their numbers, calls, recordings and the webhook log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    column_property,
    mapped_column,
    relationship,
    validates,
)

from moked.statuses import (
    AlertKind,
    CallbackStatus,
    CallStatus,
    Channel,
    DeliveryStatus,
    Direction,
    EventSource,
    FollowUp,
    MembershipRole,
    NotifyWhen,
    ProcessingStatus,
    RecordingStatus,
)


def _enum(cls: type[Any], name: str) -> Enum:
    # Stored as the enum's value ("in-progress"), not its Python name.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON().with_variant(JSONB(), "postgresql")}  # noqa: RUF012


class Business(Base):
    __tablename__ = "businesses"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    language: Mapped[str] = mapped_column(String(16), default="he-IL")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Jerusalem")
    greeting_file: Mapped[str | None] = mapped_column(String(255))
    """File name under the greetings directory (versioned, so Twilio's cache never lies)."""
    greeting_text: Mapped[str | None] = mapped_column(Text)
    record_max_length: Mapped[int] = mapped_column(Integer, default=30)
    record_timeout: Mapped[int] = mapped_column(Integer, default=5)
    record_finish_on_key: Mapped[str] = mapped_column(String(12), default="*")
    record_play_beep: Mapped[bool] = mapped_column(Boolean, default=True)
    record_trim: Mapped[bool] = mapped_column(Boolean, default=True)
    callback_limit_minutes: Mapped[int] = mapped_column(Integer, default=120, server_default="120")
    """A voicemail waiting longer than this for a reached callback, within business hours,
    is overdue (the CallbacksOverdue alert; migration 0008)."""
    hours_start: Mapped[dt.time] = mapped_column(default=dt.time(8), server_default="08:00")
    hours_end: Mapped[dt.time] = mapped_column(default=dt.time(18), server_default="18:00")
    work_days: Mapped[str] = mapped_column(
        String(32), default="sun,mon,tue,wed,thu", server_default="sun,mon,tue,wed,thu"
    )
    """Business hours in the business's time zone (moked.business_hours)."""
    expected_languages: Mapped[list[str] | None] = mapped_column(ARRAY(String(8)))
    """Whisper codes its callers may speak besides its own (language detection picks among
    them); None = EXPECTED_LANGUAGES (migration 0010)."""
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    numbers: Mapped[list[PhoneNumber]] = relationship(
        back_populates="business", cascade="all, delete-orphan", order_by="PhoneNumber.e164"
    )


class PhoneNumber(Base):
    __tablename__ = "phone_numbers"

    id: Mapped[int] = mapped_column(primary_key=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id", ondelete="CASCADE"))
    e164: Mapped[str] = mapped_column(String(20), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    business: Mapped[Business] = relationship(back_populates="numbers")


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), unique=True)
    business_id: Mapped[int | None] = mapped_column(
        ForeignKey("businesses.id", ondelete="SET NULL")
    )
    """None while the dialled number belongs to no business (the call is kept, unassigned)."""
    account_sid: Mapped[str | None] = mapped_column(String(64))
    from_number: Mapped[str | None] = mapped_column(String(64))
    to_number: Mapped[str | None] = mapped_column(String(64))
    caller_name: Mapped[str | None] = mapped_column(String(200))
    direction: Mapped[Direction] = mapped_column(
        _enum(Direction, "call_direction"), default=Direction.INBOUND
    )
    status: Mapped[CallStatus] = mapped_column(
        _enum(CallStatus, "call_status"), default=CallStatus.RINGING
    )
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    last_sequence_number: Mapped[int | None] = mapped_column(Integer)
    handled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When staff marked the call handled (None = open); set with `follow_up` resolved."""
    handled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    follow_up: Mapped[FollowUp] = mapped_column(
        _enum(FollowUp, "follow_up"), server_default=FollowUp.NEW.value
    )
    """Where the call is on its way back to the caller; moked.followup owns it. Only a
    server default: intake's one-statement insert (`apply_new_call`) leaves it to Postgres."""
    first_reached_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When a callback first reached the caller: the end of the time to callback."""
    blocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    """The caller was blocked when the call came: it was rejected (no greeting, no
    recording, no alert) and is kept for the record (moked.callers; migration 0009)."""
    alerts_planned_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When the call's notifications were decided (moked.notify.planner); None = not yet.
    Set once: a later transcript or a retry never alerts again."""
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    business: Mapped[Business | None] = relationship()
    recordings: Mapped[list[Recording]] = relationship(
        back_populates="call", order_by="Recording.id"
    )
    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id])
    handled_by: Mapped[User | None] = relationship(foreign_keys=[handled_by_id])
    call_tags: Mapped[list[CallTag]] = relationship(
        cascade="all, delete-orphan", order_by="CallTag.created_at"
    )
    notifications: Mapped[list[NotificationDelivery]] = relationship(
        order_by="NotificationDelivery.id", viewonly=True
    )
    """Read-only: moked.notify.deliveries is the one writer of deliveries."""
    callback_attempts: Mapped[list[CallbackAttempt]] = relationship(
        order_by="CallbackAttempt.id", viewonly=True
    )
    """Read-only: moked.callbacks is the one writer of attempts."""
    follow_up_changes: Mapped[list[FollowUpChange]] = relationship(
        order_by="FollowUpChange.id", viewonly=True
    )
    assignment_changes: Mapped[list[AssignmentChange]] = relationship(
        order_by="AssignmentChange.id", viewonly=True
    )
    caller: Mapped[Caller | None] = relationship(
        primaryjoin="and_(Call.business_id == foreign(Caller.business_id), "
        "Call.from_number == foreign(Caller.number))",
        viewonly=True,
        uselist=False,
    )
    """The number within its business (moked.callers); None when withheld or unassigned."""


def call_time(call: type[Call] = Call) -> Any:
    """When a call happened, as the CRM sorts and filters it (Twilio's time, else receipt)."""
    return func.coalesce(call.started_at, call.created_at)


# The inbox: newest first, per business (staff) and across businesses (admins).
Index("ix_calls_business_inbox", Call.business_id, call_time(), Call.id)
Index("ix_calls_inbox", call_time(), Call.id)
# A caller's calls (moked.callers): counts, repeat badges, the spam check.
Index("ix_calls_business_caller", Call.business_id, Call.from_number, call_time())
# The notification planner's scan: calls whose alerts are not decided yet.
Index(
    "ix_calls_alerts_unplanned",
    Call.created_at,
    postgresql_where=Call.alerts_planned_at.is_(None),
)


class Recording(Base):
    __tablename__ = "recordings"
    __table_args__ = (
        Index("ix_recordings_processing", "processing_status", "queued_at"),
        # pg_trgm GIN index on the transcript (migration 0002): substring search that works
        # for Hebrew, whose prefixes (ו, ה, ב, ל, מ, ש) stick to words and defeat stemming.
        Index(
            "ix_recordings_transcript_trgm",
            "transcript",
            postgresql_using="gin",
            postgresql_ops={"transcript": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64), unique=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    media_url: Mapped[str | None] = mapped_column(Text)
    """Twilio's RecordingUrl (without extension)."""
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    twilio_status: Mapped[RecordingStatus] = mapped_column(
        _enum(RecordingStatus, "recording_status"), default=RecordingStatus.IN_PROGRESS
    )
    error_code: Mapped[str | None] = mapped_column(String(16))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When Twilio reported the media completed: the start of the transcription lag."""
    local_path: Mapped[str | None] = mapped_column(Text)
    """Path relative to the recordings directory; never served publicly."""
    content_type: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    processing_status: Mapped[ProcessingStatus] = mapped_column(
        _enum(ProcessingStatus, "processing_status"), default=ProcessingStatus.AWAITING_MEDIA
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    processing_started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    processing_finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    backend: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    transcript: Mapped[str | None] = mapped_column(Text)
    transcript_language: Mapped[str | None] = mapped_column(String(16))
    low_confidence: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    """Staff should listen: the transcript came from a model known to be poor at this
    language (Hebrew on Whisper base, migration 0007)."""
    low_confidence_reason: Mapped[str | None] = mapped_column(Text)
    transcript_segments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    """[{start, end, text, avg_logprob, no_speech_prob, temperature}] in order
    (moked.transcripts; migration 0010). Always read and written whole, with the transcript:
    one column, not a table."""
    detected_language: Mapped[str | None] = mapped_column(String(16))
    """What Whisper's detector heard among the business's expected languages."""
    language_probability: Mapped[float | None] = mapped_column()
    forced_language: Mapped[str | None] = mapped_column(String(16))
    """The language staff asked the transcript to be redone in (moked.recordings.retry)."""
    summary: Mapped[str | None] = mapped_column(Text)
    """One short summary in the business's language (SUMMARY_BACKEND; migration 0011)."""
    intent: Mapped[str | None] = mapped_column(String(32))
    """What the caller wants (moked.statuses.Intent), read with the summary."""
    summary_model: Mapped[str | None] = mapped_column(String(200))
    audio_seconds: Mapped[float | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    deleted_from_twilio_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    call: Mapped[Call] = relationship(back_populates="recordings")


class WebhookEvent(Base):
    """Append-only: every webhook Twilio sent, exactly as received."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    """A digest of the signed request (`InboundEvent.signed`): Twilio's retries, replays,
    the spool's and nginx's copies of one request share it, so it is logged once."""
    endpoint: Mapped[str] = mapped_column(String(64))
    call_sid: Mapped[str | None] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column()
    source: Mapped[EventSource] = mapped_column(
        _enum(EventSource, "event_source"), default=EventSource.LIVE
    )
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    stored_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


# --- CRM: users, access, tags, notes (migration 0002) -----------------------------------


class User(Base):
    """A CRM user. admin: every business; staff: the businesses of their memberships."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    """Stored lower-case."""
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="staff")
    """'admin' or 'staff' (moked.accounts.Role)."""
    language: Mapped[str] = mapped_column(String(8), default="he")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    """E.164: the phone a callback from the CRM rings first (migration 0008)."""
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Every CRM session carries the value it began with; bumping it (sign out, a new
    password, an admin's "sign out everywhere") ends every session issued before."""
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    @validates("password_hash")
    def _new_password_ends_sessions(self, _key: str, value: str) -> str:
        # Here, not in each caller: the CRM, `moked user add --password` and any later way
        # of setting a password all sign out the sessions opened with the old one. Counted
        # in SQL so two concurrent bumps cannot collapse into one.
        if self.password_hash is not None and value != self.password_hash:
            self.session_generation = User.session_generation + 1
        return value


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "business_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    business_id: Mapped[int] = mapped_column(
        ForeignKey("businesses.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[MembershipRole] = mapped_column(
        _enum(MembershipRole, "membership_role"),
        default=MembershipRole.MEMBER,
        server_default=MembershipRole.MEMBER.value,
    )
    """An owner also manages the business in the CRM (moked.accounts.manages)."""
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    user: Mapped[User] = relationship(back_populates="memberships")
    business: Mapped[Business] = relationship()


class ApiToken(Base):
    """A bearer token for the API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    """The token's first characters, to tell tokens apart in listings."""
    label: Mapped[str | None] = mapped_column(String(200))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    user: Mapped[User] = relationship()


class Tag(Base):
    """A business's tag vocabulary."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("business_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class CallTag(Base):
    __tablename__ = "call_tags"

    call_id: Mapped[int] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(
        ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    tag: Mapped[Tag] = relationship()


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    author: Mapped[User | None] = relationship()


class LoginThrottle(Base):
    """Failed sign-ins counted per client address and per account (moked.login_throttle)."""

    __tablename__ = "login_throttle"

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    """'address' or 'account'."""
    key: Mapped[str] = mapped_column(String(254), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_failure_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


# --- notifications (migration 0005) -------------------------------------------------------


class NotificationRule(Base):
    """Who hears about a business's calls, how, and when (moked.notify.rules)."""

    __tablename__ = "notification_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    business_id: Mapped[int] = mapped_column(
        ForeignKey("businesses.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "notification_channel"))
    target: Mapped[str] = mapped_column(String(2048))
    """An email address, an E.164 number, or an https URL (webhook)."""
    secret: Mapped[str | None] = mapped_column(String(200))
    """The webhook's `whsec_…` signing secret; None for other channels."""
    when: Mapped[NotifyWhen] = mapped_column(
        _enum(NotifyWhen, "notify_when"), default=NotifyWhen.MESSAGE
    )
    quiet_start: Mapped[dt.time | None] = mapped_column()
    quiet_end: Mapped[dt.time | None] = mapped_column()
    """Quiet hours in the business's time zone (e.g. 22:00–07:00); None = none."""
    hold_in_quiet_hours: Mapped[bool] = mapped_column(Boolean, default=True)
    """Whether alerts inside quiet hours wait for the digest (SMS/WhatsApp by default)."""
    attach_audio: Mapped[bool] = mapped_column(Boolean, default=True)
    """Email: attach the recording's MP3 (within NOTIFY_ATTACHMENT_MAX_BYTES)."""
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    business: Mapped[Business] = relationship()


class NotificationDelivery(Base):
    """One alert about one call to one recipient; its status has one owner
    (moked.notify.deliveries). The unique key is what makes duplicated callbacks, retried
    jobs and the reconciler send once."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("call_id", "channel", "recipient", name="uq_delivery_call_recipient"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("notification_rules.id", ondelete="SET NULL"), index=True
    )
    """None once the rule is removed: the delivery's history stays with the call."""
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "notification_channel"))
    recipient: Mapped[str] = mapped_column(String(2048))
    kind: Mapped[AlertKind] = mapped_column(_enum(AlertKind, "alert_kind"))
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.PENDING
    )
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    """Ours, the same on every attempt: the webhook's `webhook-id`, the email's Message-ID."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    held_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    provider_id: Mapped[str | None] = mapped_column(String(200), index=True)
    """Twilio's MessageSid, the SMTP server's queue id."""
    provider_status: Mapped[str | None] = mapped_column(String(32))
    """What the provider reported later (Twilio: delivered, undelivered, read…)."""
    provider_error_code: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    trigger_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When what the alert reports happened (Twilio completed the recording, the call
    ended): the start of the notification latency the metrics measure."""
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    call: Mapped[Call] = relationship()
    rule: Mapped[NotificationRule | None] = relationship()


# --- callbacks and follow-up (migration 0008) ----------------------------------------------


class CallbackAttempt(Base):
    """One attempt to call a caller back: through Twilio (the staff member's phone rings,
    then `<Dial>` connects the caller) or logged by hand. moked.callbacks owns its state."""

    __tablename__ = "callback_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    """Dialled by staff from their own phone and logged by hand (no Twilio legs)."""
    status: Mapped[CallbackStatus] = mapped_column(
        _enum(CallbackStatus, "callback_status"), default=CallbackStatus.REQUESTED
    )
    staff_number: Mapped[str | None] = mapped_column(String(20))
    caller_id: Mapped[str | None] = mapped_column(String(20))
    """The business's number Twilio calls from (both legs)."""
    call_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The staff leg's CallSid (Calls.create)."""
    staff_status: Mapped[CallStatus | None] = mapped_column(_enum(CallStatus, "call_status"))
    dial_call_sid: Mapped[str | None] = mapped_column(String(64))
    dial_status: Mapped[str | None] = mapped_column(String(32))
    """The `<Dial>` leg's DialCallStatus (completed, busy, no-answer, failed, canceled)."""
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    """How long staff and caller talked (DialCallDuration)."""
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    call: Mapped[Call] = relationship()
    user: Mapped[User | None] = relationship()


class AssignmentChange(Base):
    """Each change of who a call is assigned to, with who changed it and when (the call's
    timeline; migration 0012). Written where the assignment changes (crm_ui.calls)."""

    __tablename__ = "assignment_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    """Who the call is assigned to from now on; None: nobody."""
    by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id])
    by: Mapped[User | None] = relationship(foreign_keys=[by_id])


class FollowUpChange(Base):
    """Each change of a call's follow-up state, with who and when (the call's timeline)."""

    __tablename__ = "follow_up_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[FollowUp | None] = mapped_column(_enum(FollowUp, "follow_up"))
    to_status: Mapped[FollowUp] = mapped_column(_enum(FollowUp, "follow_up"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    attempt_id: Mapped[int | None] = mapped_column(
        ForeignKey("callback_attempts.id", ondelete="SET NULL")
    )
    """The callback attempt that made the change, if one did."""
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    user: Mapped[User | None] = relationship()


# --- callers (migration 0009) ----------------------------------------------------------------


class Caller(Base):
    """A number within a business: the same number calling two businesses is two callers.
    A withheld number is no caller. moked.callers owns the rows."""

    __tablename__ = "callers"
    __table_args__ = (UniqueConstraint("business_id", "number", name="uq_callers_business_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(64))
    """E.164, as Twilio sent it in `From` (the same text as `calls.from_number`)."""
    name: Mapped[str | None] = mapped_column(String(200))
    """What staff call them (optional)."""
    blocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    blocked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When staff last blocked or unblocked the number (and by whom): calls before it do
    not count towards a spam flag again."""
    blocked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    flagged_spam_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When the number was flagged as likely spam (many calls, no message); not blocked."""
    first_seen: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    calls: Mapped[int] = column_property(
        select(func.count(Call.id))
        .where(Call.business_id == business_id, Call.from_number == number)
        .correlate_except(Call)
        .scalar_subquery()
    )
    """This business's calls from this number (ix_calls_business_caller), read with the row."""

    business: Mapped[Business] = relationship()
    blocked_by: Mapped[User | None] = relationship()


Index(
    "ix_callers_listed",
    Caller.business_id,
    postgresql_where=Caller.blocked.is_(True) | Caller.flagged_spam_at.is_not(None),
)
