"""Applying Twilio's webhook events to Postgres, idempotently and in any order.

The webhooks service calls `apply_event` on every request; the reconciler calls the same
function to replay events that were kept on disk while Postgres was down, or answered by
nginx while the app was down. Every write is an upsert keyed on Twilio's SIDs, so retries,
duplicates and replays never create a second row, and a status never moves backwards.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Row,
    Select,
    String,
    bindparam,
    false,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from moked import callbacks, callers, recordings
from moked.db.models import (
    Business,
    Call,
    Caller,
    NotificationDelivery,
    PhoneNumber,
    Recording,
    WebhookEvent,
)
from moked.notify import deliveries
from moked.phone import try_e164
from moked.statuses import (
    CallStatus,
    Direction,
    Endpoint,
    EventSource,
    RecordingStatus,
)

log = logging.getLogger(__name__)

Params = dict[str, str]
RawParams = dict[str, str | list[str]]

MAX_FIELD_LENGTH = 2000
"""Twilio's values are short; anything longer is cut before it reaches a column."""


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One webhook request as received: what the log keeps and the replay applies."""

    endpoint: Endpoint
    params: RawParams
    received_at: dt.datetime
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    source: EventSource = EventSource.LIVE

    @classmethod
    def signed(
        cls,
        endpoint: Endpoint,
        params: RawParams,
        signature: str,
        received_at: dt.datetime,
        source: EventSource = EventSource.LIVE,
    ) -> InboundEvent:
        """A request Twilio signed, its id a digest of the endpoint, the signature and the
        parameters: the same request sent again (Twilio's retry, a replay by anyone who
        saw it, nginx's copy of one the app also took) gets the same id, so the log's
        ON CONFLICT (event_id) keeps one row. Any difference (another status, another
        sequence number or Timestamp) is another request and is logged."""
        canonical = json.dumps(
            [endpoint.value, signature, params], sort_keys=True, separators=(",", ":")
        )
        event_id = hashlib.sha256(canonical.encode()).hexdigest()
        return cls(endpoint, params, received_at, event_id=event_id, source=source)

    @property
    def flat(self) -> Params:
        """First value of each parameter, as Twilio sends each name once."""
        return {k: (v[0] if isinstance(v, list) and v else v or "") for k, v in self.params.items()}  # type: ignore[misc]

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "endpoint": self.endpoint.value,
            "params": self.params,
            "received_at": self.received_at.isoformat(),
            "source": self.source.value,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: EventSource | None = None) -> InboundEvent:
        return cls(
            endpoint=Endpoint(data["endpoint"]),
            params=data["params"],
            received_at=dt.datetime.fromisoformat(data["received_at"]),
            event_id=data["event_id"],
            source=source or EventSource(data.get("source", EventSource.LIVE)),
        )


@dataclass(slots=True)
class Effects:
    """What the caller must do once the transaction has committed."""

    call_sid: str | None = None
    business_id: int | None = None
    enqueue_recording_sid: str | None = None
    new_call: bool = False
    blocked: bool = False
    """The call comes from a caller its business blocked: reject it (moked.callers)."""
    dialling: callbacks.Dialling | None = None
    """A callback's staff leg answered: whom its TwiML dials (moked.callbacks)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _clip(value: str | None, column: Any = None) -> str | None:
    """The value without NULs, cut to its column's length (`Call.from_number`…): Twilio's
    values fit, garbage must not make Postgres refuse — and so set aside — the event."""
    if value is None:
        return None
    value = value.replace("\x00", "")
    length = getattr(getattr(column, "type", None), "length", None) or MAX_FIELD_LENGTH
    return value[:length] if value else None


def _int(value: str | None) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 0 <= number < 2**31 else None


MAX_CLOCK_SKEW = dt.timedelta(days=1)
"""How far Twilio's `Timestamp` may be from when we received the event. Twilio's clock is
seconds away; anything further (year 9999, year 1) is a hostile or broken value that
would be stored and then break every page that shows or converts it."""


def event_time(params: Params, fallback: dt.datetime) -> dt.datetime:
    """Twilio's `Timestamp` (RFC 2822) when present and sane — within MAX_CLOCK_SKEW of
    `fallback`, the receipt time — else `fallback`. The event log keeps what was sent."""
    raw = params.get("Timestamp")
    if raw:
        try:
            parsed = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            try:
                if abs(parsed - fallback) <= MAX_CLOCK_SKEW:
                    return parsed
            except (OverflowError, TypeError):  # e.g. a naive fallback, or out of range
                pass
    return fallback


def valid_sid(value: str | None, prefix: str) -> str | None:
    """A Twilio SID of the expected kind (CA…, RE…), or None."""
    value = (value or "").strip()
    if len(value) == 34 and value.startswith(prefix) and value[2:].isalnum() and value.isascii():
        return value
    return None


def find_business(session: Session, to_number: str | None) -> Business | None:
    e164 = try_e164(to_number)
    if e164 is None:
        return None
    return session.scalar(
        select(Business).join(PhoneNumber).where(PhoneNumber.e164 == e164).limit(1)
    )


def _jsonb_safe(params: RawParams) -> RawParams:
    """Postgres JSONB cannot hold NUL; Twilio never sends one, garbage may."""

    def clean(value: str) -> str:
        return value.replace("\x00", "\ufffd")

    return {
        clean(key): [clean(v) for v in value] if isinstance(value, list) else clean(value)
        for key, value in params.items()
    }


def _log_values(event: InboundEvent) -> dict[str, Any]:
    call_sid = _clip(event.flat.get("CallSid"), WebhookEvent.call_sid)
    return {
        "event_id": event.event_id,
        "endpoint": event.endpoint.value,
        "call_sid": call_sid,
        "params": _jsonb_safe(event.params),
        "source": event.source,
        "received_at": event.received_at,
    }


def log_event(session: Session, event: InboundEvent) -> bool:
    """Append the event to the webhook log; False when this receipt was logged before."""
    stmt = (
        insert(WebhookEvent)
        .values(_log_values(event))
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(WebhookEvent.id)
    )
    return session.scalar(stmt) is not None


def _locked_call(session: Session, call_sid: str) -> Call:
    session.execute(
        insert(Call).values(call_sid=call_sid).on_conflict_do_nothing(index_elements=["call_sid"])
    )
    call = session.scalar(select(Call).where(Call.call_sid == call_sid).with_for_update())
    assert call is not None
    return call


def merge_call(call: Call, params: Params, when: dt.datetime, business: Business | None) -> None:
    """Fold one event into the call. Order-independent: fields only fill or move forward."""
    call.account_sid = call.account_sid or _clip(params.get("AccountSid"), Call.account_sid)
    call.from_number = call.from_number or _clip(
        params.get("From") or params.get("Caller"), Call.from_number
    )
    call.to_number = call.to_number or _clip(
        params.get("To") or params.get("Called"), Call.to_number
    )
    call.caller_name = call.caller_name or _clip(params.get("CallerName"), Call.caller_name)
    if params.get("Direction"):
        call.direction = Direction.parse(params.get("Direction"))
    if call.business_id is None and business is not None:
        call.business_id = business.id
    if call.started_at is None or when < call.started_at:
        call.started_at = when

    status = CallStatus.parse(params.get("CallStatus"))
    sequence = _int(params.get("SequenceNumber"))
    if status is not None:
        current = call.status
        advances = current is None or status.rank > current.rank
        same_rank_newer = (
            current is not None
            and status.rank == current.rank
            and not current.is_terminal
            and sequence is not None
            and (call.last_sequence_number is None or sequence > call.last_sequence_number)
        )
        if advances or same_rank_newer:
            call.status = status
        if status is CallStatus.IN_PROGRESS and call.answered_at is None:
            call.answered_at = when
        if status.is_terminal:
            call.ended_at = max(call.ended_at, when) if call.ended_at else when
    if sequence is not None:
        call.last_sequence_number = max(call.last_sequence_number or 0, sequence)
    duration = _int(params.get("CallDuration"))
    if duration is not None:
        call.duration_seconds = duration


def _locked_recording(session: Session, recording_sid: str, call: Call) -> Recording:
    session.execute(
        insert(Recording)
        .values(recording_sid=recording_sid, call_id=call.id)
        .on_conflict_do_nothing(index_elements=["recording_sid"])
    )
    recording = session.scalar(
        select(Recording).where(Recording.recording_sid == recording_sid).with_for_update()
    )
    assert recording is not None
    return recording


def merge_recording(
    recording: Recording, params: Params, when: dt.datetime, *, is_status_callback: bool
) -> bool:
    """Fold a Record action or recording status callback in; True when it must be queued."""
    media_url = _clip(params.get("RecordingUrl"))
    if media_url and not recording.media_url:
        recording.media_url = media_url
    duration = _int(params.get("RecordingDuration"))
    if duration is not None:
        recording.duration_seconds = duration
    if not is_status_callback:
        return False

    status = RecordingStatus.parse(params.get("RecordingStatus"))
    if status is None:
        return False
    error_code = _clip(params.get("ErrorCode"), Recording.error_code)
    return recordings.media_reported(recording, status, when, error_code)


def _message_reported(session: Session, params: Params) -> None:
    """A delivery report on an alert sent by SMS or WhatsApp: recorded on its delivery."""
    raw_sid = params.get("MessageSid") or params.get("SmsSid")
    message_sid = valid_sid(raw_sid, "SM") or valid_sid(raw_sid, "MM")  # MM: media messages
    if message_sid is None:
        log.warning("message_status without a valid MessageSid; logged only")
        return
    status = _clip(params.get("MessageStatus") or params.get("SmsStatus")) or ""
    error_code = _clip(params.get("ErrorCode"), NotificationDelivery.provider_error_code)
    if not deliveries.provider_reported(
        session, provider_id=message_sid, status=status, error_code=error_code
    ):
        log.info("message status %s on %s changed nothing", status or "-", message_sid)


def apply_event(session: Session, event: InboundEvent) -> Effects:
    """Log the event and fold it into calls and recordings, in the caller's transaction."""
    log_event(session, event)
    params = event.flat
    effects = Effects()
    if event.endpoint is Endpoint.TWILIO_ALERTS:
        return effects
    if event.endpoint is Endpoint.MESSAGE_STATUS:
        _message_reported(session, params)
        return effects
    if event.endpoint.is_callback:  # the legs of a callback are no business's calls
        when = event_time(params, event.received_at)
        effects.dialling = callbacks.reported(session, event.endpoint, params, when)
        return effects
    call_sid = valid_sid(params.get("CallSid"), "CA")
    if call_sid is None:
        log.warning("%s without a valid CallSid; logged only", event.endpoint.value)
        return effects
    when = event_time(params, event.received_at)
    call = _locked_call(session, call_sid)
    business = None
    if call.business_id is None:
        business = find_business(session, params.get("To") or params.get("Called"))
    effects.new_call = call.from_number is None and event.endpoint is Endpoint.INCOMING_CALL
    merge_call(call, params, when, business)
    effects.call_sid = call_sid
    effects.business_id = call.business_id
    _caller_seen(session, call, business is not None, when)
    effects.blocked = call.blocked

    if event.endpoint in (Endpoint.HANDLE_RECORDING, Endpoint.RECORDING_STATUS):
        recording_sid = valid_sid(params.get("RecordingSid"), "RE")
        if recording_sid is not None:
            recording = _locked_recording(session, recording_sid, call)
            must_queue = merge_recording(
                recording,
                params,
                when,
                is_status_callback=event.endpoint is Endpoint.RECORDING_STATUS,
            )
            if must_queue:
                effects.enqueue_recording_sid = recording_sid
    session.flush()
    return effects


def _caller_seen(session: Session, call: Call, assigned_now: bool, when: dt.datetime) -> None:
    """The caller of a call that just found its business is made and its block read, as
    `apply_new_call` does in its statement (moked.callers). A call keeps what was decided
    then: Twilio's retry of its `incoming_call` gets the same answer."""
    number = callers.caller_number(call.from_number)
    if assigned_now and call.business_id is not None and number is not None:
        call.blocked = callers.seen(session, call.business_id, number, call.started_at or when)


CALL_COLUMNS_FROM_EVENTS = (  # what `merge_call` fills from Twilio's parameters
    "account_sid",
    "from_number",
    "to_number",
    "caller_name",
    "direction",
    "status",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_seconds",
    "last_sequence_number",
)


@functools.cache
def _new_call_statement() -> Select[Any]:
    """Built once: log the event, insert the call, find the business — one statement.

    Every value is a bound parameter, so SQLAlchemy compiles it once per process.
    """
    business = (
        select(
            Business.id,
            Business.language,
            Business.greeting_file,
            Business.greeting_text,
            Business.record_max_length,
            Business.record_timeout,
            Business.record_finish_on_key,
            Business.record_play_beep,
            Business.record_trim,
        )
        .join(PhoneNumber)
        .where(PhoneNumber.e164 == bindparam("e164"))
        .limit(1)
        .cte("business")
    )
    logged = (
        insert(WebhookEvent)
        .values(
            {
                name: bindparam(f"log_{name}")
                for name in ("event_id", "endpoint", "call_sid", "params", "source", "received_at")
            }
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(WebhookEvent.id)
        .cte("logged")
    )
    # The caller: made if new (no write when known), and whether its business blocked it.
    number = bindparam("caller_number", type_=String)
    known = (
        select(Caller.blocked)
        .where(Caller.business_id == select(business.c.id).scalar_subquery())
        .where(Caller.number == number)
        .cte("known")
    )
    new_caller = (
        insert(Caller)
        .from_select(
            ["business_id", "number", "first_seen"],
            select(
                business.c.id, number, bindparam("caller_seen", type_=DateTime(timezone=True))
            ).where(number.is_not(None)),
            include_defaults=False,  # the columns' server defaults
        )
        .on_conflict_do_nothing(index_elements=["business_id", "number"])
        .returning(Caller.id)
        .cte("new_caller")
    )
    blocked = func.coalesce(select(known.c.blocked).scalar_subquery(), false())
    inserted = (
        insert(Call)
        .values(
            {
                **{name: bindparam(name) for name in ("call_sid", *CALL_COLUMNS_FROM_EVENTS)},
                "business_id": select(business.c.id).scalar_subquery(),
                "blocked": blocked,
            }
        )
        .on_conflict_do_nothing(index_elements=["call_sid"])
        .returning(Call.id)
        .cte("inserted")
    )
    one_row = select(literal(1).label("one")).subquery()
    return select(
        select(inserted.c.id).scalar_subquery().label("new_call_id"),
        select(logged.c.id).scalar_subquery().label("log_id"),
        select(new_caller.c.id).scalar_subquery().label("new_caller_id"),
        blocked.label("blocked"),
        business,
    ).select_from(one_row.outerjoin(business, true()))


@dataclass(frozen=True, slots=True)
class NewCall:
    """A first `incoming_call` stored in one statement, with the business that was dialled."""

    effects: Effects
    business: Row[Any] | None
    """The business's greeting fields (see `answers.BusinessGreeting`), or None: unassigned."""


def apply_new_call(connection: Connection, event: InboundEvent) -> NewCall | None:
    """The hot path of `incoming_call`: log it, insert the call and find its business in one
    round trip (one statement, so atomic even in autocommit).

    The row is what `merge_call` makes of the event on an empty call, so the result is the
    same as `apply_event`'s. Returns None, having changed nothing but the (idempotent) log,
    when the call already exists (a retry, or a status callback that came first): the caller
    then applies the event with `apply_event`, which merges under a row lock.
    """
    params = event.flat
    call_sid = valid_sid(params.get("CallSid"), "CA")
    if event.endpoint is not Endpoint.INCOMING_CALL or call_sid is None:
        return None
    call = Call(call_sid=call_sid)
    merge_call(call, params, event_time(params, event.received_at), None)
    values: dict[str, Any] = {name: getattr(call, name) for name in CALL_COLUMNS_FROM_EVENTS}
    values["call_sid"] = call_sid
    values["direction"] = values["direction"] or Direction.INBOUND
    values["status"] = values["status"] or CallStatus.RINGING
    values["e164"] = try_e164(params.get("To") or params.get("Called")) or ""
    values["caller_number"] = callers.caller_number(call.from_number)
    values["caller_seen"] = call.started_at
    values.update({f"log_{name}": value for name, value in _log_values(event).items()})
    row = connection.execute(_new_call_statement(), values).one()
    if row.new_call_id is None:
        return None
    effects = Effects(call_sid=call_sid, business_id=row.id, new_call=True, blocked=row.blocked)
    return NewCall(effects=effects, business=row if row.id is not None else None)
