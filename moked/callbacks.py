"""Calling a caller back: the one module that changes a `CallbackAttempt`.

A callback from the CRM or the API is two legs placed by Twilio (REST `Calls.create`):
the staff member's phone rings first, from the business's own number; when they answer,
Twilio fetches `/webhook/callback_connect`, whose TwiML `<Dial callerId=business>`
rings the caller. Twilio reports the staff leg on `/webhook/callback_status` (initiated,
ringing, answered, completed) and the `<Dial>`'s end on `/webhook/callback_dial`
(DialCallStatus, DialCallDuration). Every URL names the attempt (`?attempt=ID`, inside
what Twilio signs), so a callback that beats `Calls.create`'s answer still finds it.

    requested ──▶ ringing ──▶ connecting ──▶ reached | no_answer | busy | failed
        └────────────┴─────────────┴──────────▲ (any earlier state may end)

- The status moves forward only (`TRANSITIONS`, by rank). It is computed from the facts
  Twilio reported (the staff leg's furthest CallStatus, the `<Dial>`'s status), so
  duplicated and out-of-order callbacks give one attempt with the same final outcome.
- Once final, an attempt changes no more: a late callback only fills in times.
- The outcome: the `<Dial>` completed → reached (duration: DialCallDuration); the caller
  busy / not answering → busy / no_answer; the staff phone busy / not answering → the
  same; anything else (Twilio refused, the leg failed or was cancelled) → failed. A staff
  leg that ended after answering waits for the `<Dial>`'s status.
- An attempt that ends tells the call's follow-up (`moked.followup.attempt_ended`).
- Staff who dial from their own phone log the attempt by hand (`log_manual`).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass
from urllib.parse import parse_qs

from sqlalchemy import select
from sqlalchemy.orm import Session
from twilio.base.exceptions import TwilioRestException

from moked import callers, followup, metrics
from moked.db.models import Call, CallbackAttempt, PhoneNumber, User
from moked.db.session import on_commit
from moked.phone import try_e164
from moked.settings import Settings
from moked.statuses import CALLBACK_OUTCOMES, CallbackStatus, CallStatus, Endpoint, FollowUp
from moked.twilio.rest import TwilioApiError, make_client, voice_settings

log = logging.getLogger(__name__)

RawParams = dict[str, str | list[str]]

C = CallbackStatus

TRANSITIONS: dict[CallbackStatus, frozenset[CallbackStatus]] = {
    C.REQUESTED: frozenset({C.RINGING, C.CONNECTING, *CALLBACK_OUTCOMES}),
    C.RINGING: frozenset({C.CONNECTING, *CALLBACK_OUTCOMES}),
    C.CONNECTING: frozenset(CALLBACK_OUTCOMES),
    C.REACHED: frozenset(),
    C.NO_ANSWER: frozenset(),
    C.BUSY: frozenset(),
    C.FAILED: frozenset(),
}
"""Every change allowed, from → to; nothing leaves a final state."""

STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
"""The staff leg's statusCallbackEvent."""
ATTEMPT_PARAM = "MokedAttempt"
"""The attempt's id, from the webhook URL's `attempt` query (signed by Twilio), as the
logged and spooled event keeps it."""
RING_SECONDS = 25
"""How long each leg rings before Twilio gives up (no-answer)."""
ERROR_LIMIT = 1000

_DIAL_OUTCOMES = {
    "completed": C.REACHED,
    "answered": C.REACHED,
    "busy": C.BUSY,
    "no-answer": C.NO_ANSWER,
    "failed": C.FAILED,
    "canceled": C.FAILED,
}
_STAFF_OUTCOMES = {
    CallStatus.BUSY: C.BUSY,
    CallStatus.NO_ANSWER: C.NO_ANSWER,
    CallStatus.FAILED: C.FAILED,
    CallStatus.CANCELED: C.FAILED,
}


class CallbackRefused(ValueError):
    """A callback that cannot be placed or logged as asked; the message says why."""


class InvalidTransition(RuntimeError):
    """A change the state machine does not allow: a bug in the caller."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def outcome_of(attempt: CallbackAttempt) -> CallbackStatus | None:
    return attempt.status if attempt.status.is_final else None


def _target(attempt: CallbackAttempt) -> CallbackStatus:
    """Where the facts reported so far put the attempt."""
    if attempt.dial_status:
        return _DIAL_OUTCOMES.get(attempt.dial_status, C.FAILED)
    staff = attempt.staff_status
    if staff in _STAFF_OUTCOMES:
        return _STAFF_OUTCOMES[staff]
    if staff in (CallStatus.IN_PROGRESS, CallStatus.COMPLETED) or attempt.answered_at:
        return C.CONNECTING  # answered; the <Dial>'s status says how it ended
    if staff is CallStatus.RINGING:
        return C.RINGING
    return C.REQUESTED


def _move(session: Session, attempt: CallbackAttempt, to: CallbackStatus, at: dt.datetime) -> bool:
    current = attempt.status
    if current is to or current.is_final or to.rank <= current.rank:
        return False  # duplicates, late and out-of-order reports
    if to not in TRANSITIONS[current]:
        raise InvalidTransition(f"callback {attempt.id}: {current.value} cannot become {to}")
    attempt.status = to
    if to.is_final:
        _ended(session, attempt, at)
    return True


def _ended(session: Session, attempt: CallbackAttempt, at: dt.datetime) -> None:
    """The attempt has its outcome: count it and move the call's follow-up."""
    attempt.ended_at = attempt.ended_at or at
    if attempt.status is C.REACHED and attempt.duration_seconds is None:
        attempt.duration_seconds = 0
    # Counted when the outcome is committed: a rolled-back report counts nothing.
    on_commit(session, metrics.CALLBACKS.labels(attempt.status.value).inc)
    call = followup.lock(session, attempt.call_id)
    if call is None:
        return
    first = followup.attempt_ended(
        session,
        call,
        attempt.status,
        user_id=attempt.user_id,
        at=attempt.ended_at,
        attempt_id=attempt.id,
    )
    if first and call.business_id is not None:
        since = call.ended_at or call.started_at or call.created_at
        if since is not None and call.first_reached_at is not None:
            waited = max(0.0, (call.first_reached_at - since).total_seconds())
            observe = metrics.TIME_TO_CALLBACK.labels(str(call.business_id)).observe
            on_commit(session, functools.partial(observe, waited))


# --- placing a callback -----------------------------------------------------------------


def _caller_id(session: Session, call: Call) -> str | None:
    """The business's own number: the one the caller dialled, else its first."""
    if call.business_id is None:
        return None
    numbers = session.scalars(
        select(PhoneNumber.e164).where(PhoneNumber.business_id == call.business_id)
    ).all()
    dialled = try_e164(call.to_number)
    if dialled in numbers:
        return dialled
    return numbers[0] if numbers else None


def request(session: Session, call: Call, user: User, now: dt.datetime | None = None) -> int:
    """A new attempt (requested) by `user` on `call`; its id. Raises CallbackRefused."""
    if not user.phone:
        raise CallbackRefused("add your phone number on your account page first")
    # The one rule for who can be called back, the same the CRM shows the button by.
    caller = callers.caller_number(call.from_number)
    if caller is None:
        raise CallbackRefused("the caller's number is withheld")
    caller_id = _caller_id(session, call)
    if caller_id is None:
        raise CallbackRefused("the call's business has no number to call from")
    now = now or utcnow()
    # The call's row lock makes check-then-insert one step: of two clicks (or two staff)
    # at once, the second waits here, then sees the first's attempt and is refused.
    followup.lock(session, call.id)
    going_on = session.scalar(
        select(CallbackAttempt.id).where(
            CallbackAttempt.call_id == call.id,
            CallbackAttempt.status.in_((C.REQUESTED, C.RINGING, C.CONNECTING)),
            CallbackAttempt.started_at > now - STALE_AFTER,
        )
    )
    if going_on is not None:  # a double click, or a colleague already calling
        raise CallbackRefused("a callback on this call is already under way")
    attempt = CallbackAttempt(
        call_id=call.id,
        user_id=user.id,
        manual=False,
        status=C.REQUESTED,
        staff_number=user.phone,
        caller_id=caller_id,
        started_at=now,
    )
    session.add(attempt)
    session.flush()
    return attempt.id


def webhook_url(settings: Settings, endpoint: Endpoint, attempt_id: int) -> str:
    return settings.public_url(f"{endpoint.path}?attempt={attempt_id}")


def place(settings: Settings, attempt_id: int, staff_number: str, caller_id: str) -> str:
    """Ask Twilio to ring the staff member (their leg's TwiML dials the caller); the new
    call's CallSid. In development without credentials the simulator answers. Raises
    TwilioApiError."""
    client = make_client(voice_settings(settings))
    try:
        created = client.api.v2010.accounts(settings.twilio_account_sid).calls.create(
            to=staff_number,
            from_=caller_id,
            url=webhook_url(settings, Endpoint.CALLBACK_CONNECT, attempt_id),
            method="POST",
            status_callback=webhook_url(settings, Endpoint.CALLBACK_STATUS, attempt_id),
            status_callback_method="POST",
            status_callback_event=list(STATUS_EVENTS),
            timeout=RING_SECONDS,
        )
    except TwilioRestException as exc:
        message = f"Twilio refused the call ({exc.status}, {exc.code}): {exc.msg}"
        raise TwilioApiError(message) from exc
    except OSError as exc:
        raise TwilioApiError(f"Twilio's API is unreachable: {exc}") from exc
    return str(created.sid)


def lock(session: Session, attempt_id: int) -> CallbackAttempt | None:
    return session.scalar(
        select(CallbackAttempt).where(CallbackAttempt.id == attempt_id).with_for_update()
    )


def placed(session: Session, attempt_id: int, call_sid: str) -> None:
    """Twilio took the call: remember the staff leg's CallSid."""
    attempt = lock(session, attempt_id)
    if attempt is not None and attempt.call_sid is None:
        attempt.call_sid = call_sid


def not_placed(session: Session, attempt_id: int, error: str, at: dt.datetime) -> None:
    """Twilio refused or could not be reached: the attempt failed."""
    attempt = lock(session, attempt_id)
    if attempt is None:
        return
    attempt.error = error[:ERROR_LIMIT]
    _move(session, attempt, C.FAILED, at)


@dataclass(frozen=True, slots=True)
class Started:
    attempt_id: int
    error: str | None
    """Why Twilio did not take it (the attempt is then failed)."""


def start(settings: Settings, session: Session, call: Call, user: User) -> Started:
    """Request, place and record a callback. Commits: the attempt exists before Twilio is
    asked, so callbacks that arrive before `Calls.create` answers find it. Raises
    CallbackRefused (nothing stored)."""
    attempt_id = request(session, call, user)
    attempt = session.get(CallbackAttempt, attempt_id)
    assert attempt is not None and attempt.staff_number and attempt.caller_id
    staff_number, caller_id = attempt.staff_number, attempt.caller_id
    session.commit()
    try:
        call_sid = place(settings, attempt_id, staff_number, caller_id)
    except TwilioApiError as exc:
        log.warning("callback %s not placed: %s", attempt_id, exc)
        not_placed(session, attempt_id, str(exc), utcnow())
        session.commit()
        return Started(attempt_id, str(exc))
    placed(session, attempt_id, call_sid)
    session.commit()
    return Started(attempt_id, None)


# --- Twilio's reports -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dialling:
    """What the staff leg's TwiML dials: the caller, shown the business's number."""

    caller: str
    caller_id: str
    attempt_id: int


def _int(value: str | None) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 0 <= number < 2**31 else None


def _attempt_for(session: Session, params: dict[str, str]) -> CallbackAttempt | None:
    attempt_id = _int(params.get(ATTEMPT_PARAM))
    if attempt_id is not None:
        return lock(session, attempt_id)
    call_sid = params.get("CallSid")
    if not call_sid:
        return None
    return session.scalar(
        select(CallbackAttempt).where(CallbackAttempt.call_sid == call_sid).with_for_update()
    )


def with_attempt(endpoint: Endpoint, params: RawParams, query: str) -> RawParams:
    """The parameters an event about a callback keeps: Twilio's form plus the attempt the
    signed URL names (`?attempt=ID`), so the log, the spool and nginx's fallback log
    replay it to the same attempt. Other endpoints' parameters are left as they are."""
    if not endpoint.is_callback:
        return params
    attempt = parse_qs(query).get("attempt", [""])[0]
    if _int(attempt) is None:
        return params
    return {**params, ATTEMPT_PARAM: attempt}


def reported(
    session: Session, endpoint: Endpoint, params: dict[str, str], when: dt.datetime
) -> Dialling | None:
    """Fold one of Twilio's requests about a callback into its attempt (locked in the
    caller's transaction). For `callback_connect`, what to dial (None: hang up — unknown
    attempt, or it is over)."""
    attempt = _attempt_for(session, params)
    if attempt is None:
        log.warning("%s for no known callback attempt; logged only", endpoint.value)
        return None
    call_sid = params.get("CallSid")
    if call_sid and attempt.call_sid is None:
        attempt.call_sid = call_sid[:64]
    elif call_sid and call_sid != attempt.call_sid:
        log.warning("%s: CallSid %s is not attempt %s's", endpoint.value, call_sid, attempt.id)
        return None
    status = CallStatus.parse(params.get("CallStatus"))
    if status is not None and (
        attempt.staff_status is None or status.rank > attempt.staff_status.rank
    ):
        attempt.staff_status = status
    if status is CallStatus.IN_PROGRESS or endpoint is Endpoint.CALLBACK_CONNECT:
        attempt.answered_at = min(attempt.answered_at, when) if attempt.answered_at else when
    if status is not None and status.is_terminal:
        attempt.ended_at = max(attempt.ended_at, when) if attempt.ended_at else when
    if endpoint is Endpoint.CALLBACK_DIAL:
        dial_status = (params.get("DialCallStatus") or "").strip().lower()
        if dial_status and attempt.dial_status is None:
            attempt.dial_status = dial_status[:32]
            attempt.dial_call_sid = (params.get("DialCallSid") or "")[:64] or None
            duration = _int(params.get("DialCallDuration"))
            if duration is not None and _DIAL_OUTCOMES.get(attempt.dial_status) is C.REACHED:
                attempt.duration_seconds = duration  # a talk's length, not a ring's
    was_final = attempt.status.is_final
    _move(session, attempt, _target(attempt), when)
    session.flush()
    if endpoint is not Endpoint.CALLBACK_CONNECT or was_final or attempt.status.is_final:
        return None
    call = session.get(Call, attempt.call_id)
    caller = callers.caller_number(call.from_number) if call is not None else None
    if caller is None or not attempt.caller_id:
        return None
    return Dialling(caller=caller, caller_id=attempt.caller_id, attempt_id=attempt.id)


# --- what Twilio never reported --------------------------------------------------------

STALE_AFTER = dt.timedelta(minutes=10)
"""An attempt not over this long after it was asked for (Twilio's report lost, the
`<Dial>` never run because the connect TwiML failed) is failed by the reconciler: a ring
lasts RING_SECONDS a leg, and a conversation's end is reported within seconds."""
TALK_GRACE = dt.timedelta(hours=4)
"""A staff leg still in progress (staff and caller talking) is given this long."""


def expire_stale(session: Session, now: dt.datetime | None = None) -> int:
    """The reconciler's step: fail attempts Twilio will not finish; how many."""
    now = now or utcnow()
    stale = session.scalars(
        select(CallbackAttempt)
        .where(
            CallbackAttempt.status.in_((C.REQUESTED, C.RINGING, C.CONNECTING)),
            CallbackAttempt.started_at < now - STALE_AFTER,
        )
        .with_for_update(skip_locked=True)
    ).all()
    expired = 0
    for attempt in stale:
        talking = attempt.staff_status is CallStatus.IN_PROGRESS and attempt.dial_status is None
        if talking and attempt.started_at > now - TALK_GRACE:
            continue
        attempt.error = "Twilio never reported how the call ended"
        _move(session, attempt, C.FAILED, attempt.ended_at or now)
        expired += 1
    return expired


# --- by hand ----------------------------------------------------------------------------


def log_manual(
    session: Session,
    call: Call,
    user_id: int | None,
    outcome: CallbackStatus,
    *,
    duration_seconds: int | None = None,
    at: dt.datetime | None = None,
) -> int:
    """Staff called from their own phone: the attempt, already ended with `outcome`."""
    if outcome not in CALLBACK_OUTCOMES:
        raise CallbackRefused(f"not an outcome: {outcome.value}")
    if duration_seconds is not None and not 0 <= duration_seconds < 24 * 3600:
        raise CallbackRefused("a duration is between 0 seconds and a day")
    at = at or utcnow()
    attempt = CallbackAttempt(
        call_id=call.id,
        user_id=user_id,
        manual=True,
        status=C.REQUESTED,
        started_at=at,
        duration_seconds=duration_seconds if outcome is C.REACHED else None,
    )
    session.add(attempt)
    session.flush()
    _move(session, attempt, outcome, at)
    session.flush()
    return attempt.id


def describe_attempt(attempt: CallbackAttempt) -> dict[str, object]:
    """One attempt as `describe_call` prints it (docs/schemas/call.json)."""
    outcome = outcome_of(attempt)
    return {
        "at": attempt.started_at.isoformat(),
        "by": attempt.user.email if attempt.user is not None else None,
        "outcome": outcome.value if outcome is not None else None,
        "status": attempt.status.value,
        "manual": attempt.manual,
        "duration_seconds": attempt.duration_seconds,
    }


def describe(call: Call) -> dict[str, object]:
    """`callback` in `describe_call`: the follow-up state and every attempt."""
    return {
        "status": (call.follow_up or FollowUp.NEW).value,
        "first_reached_at": call.first_reached_at.isoformat() if call.first_reached_at else None,
        "attempts": [describe_attempt(a) for a in call.callback_attempts],
    }
