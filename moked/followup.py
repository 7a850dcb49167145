"""A call's follow-up: the one module that changes `Call.follow_up` (and `handled_at`).

    new ──▶ needs_callback ──▶ called_back ──▶ resolved
     │            │        └──▶ no_answer ─┐      ▲
     │            │              ▲   │ try again  │
     └────────────┴──────────────┴───┴────────────┘ (resolved: staff, any time)
    resolved ──reopen──▶ needs_callback

- Staff move it (`change`): mark it for a callback, resolve it, reopen it. "Handled" in the
  CRM and the API is `resolved`: `handled_at`/`handled_by_id` are set with it and cleared
  when it is reopened.
- A callback attempt that ends moves it (`attempt_ended`): reached → called_back (and
  `first_reached_at`, the end of the time to callback), anything else → no_answer. A
  resolved call stays resolved: staff closed it.
- Every change is a `FollowUpChange` row (who, when, which attempt): the call's timeline.
- A change the machine does not allow raises `FollowUpRefused` (a ValueError staff read).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from moked.db.models import Call, FollowUpChange
from moked.statuses import CallbackStatus, FollowUp

F = FollowUp

TRANSITIONS: dict[FollowUp, frozenset[FollowUp]] = {
    F.NEW: frozenset({F.NEEDS_CALLBACK, F.CALLED_BACK, F.NO_ANSWER, F.RESOLVED}),
    F.NEEDS_CALLBACK: frozenset({F.CALLED_BACK, F.NO_ANSWER, F.RESOLVED}),
    # Another attempt that missed the caller is one more change (the timeline shows each).
    F.NO_ANSWER: frozenset({F.NEEDS_CALLBACK, F.CALLED_BACK, F.NO_ANSWER, F.RESOLVED}),
    F.CALLED_BACK: frozenset({F.NEEDS_CALLBACK, F.RESOLVED}),
    F.RESOLVED: frozenset({F.NEEDS_CALLBACK}),
}
"""Every change allowed, from → to; anything else raises `FollowUpRefused`."""

STAFF_TARGETS = (F.NEEDS_CALLBACK, F.RESOLVED)
"""What staff set by hand; called_back and no_answer come from callback attempts."""


class FollowUpRefused(ValueError):
    """A change the follow-up does not allow from where the call is; the message says why."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def lock(session: Session, call_id: int) -> Call | None:
    """The call, locked until the caller's transaction ends."""
    return session.scalar(select(Call).where(Call.id == call_id).with_for_update())


def change(
    session: Session,
    call: Call,
    to: FollowUp,
    *,
    user_id: int | None,
    at: dt.datetime | None = None,
    attempt_id: int | None = None,
) -> bool:
    """Move the (locked) call to `to`, recorded with who and when. False when it is there
    already (a double click); raises FollowUpRefused for a change not allowed."""
    at = at or utcnow()
    current = call.follow_up or F.NEW
    if current is to and to is not F.NO_ANSWER:
        return False
    if to not in TRANSITIONS[current]:
        raise FollowUpRefused(f"a call {current.value} cannot become {to.value}")
    call.follow_up = to
    if to is F.RESOLVED:
        call.handled_at = at
        call.handled_by_id = user_id
    elif current is F.RESOLVED:
        call.handled_at = None
        call.handled_by_id = None
    session.add(
        FollowUpChange(
            call_id=call.id,
            from_status=current,
            to_status=to,
            user_id=user_id,
            attempt_id=attempt_id,
            at=at,
        )
    )
    return True


def set_handled(session: Session, call: Call, handled: bool, *, user_id: int | None) -> bool:
    """The CRM's and the API's "handled": resolved, or reopened for a callback."""
    if handled:
        return change(session, call, F.RESOLVED, user_id=user_id)
    if call.follow_up is not F.RESOLVED:
        return False
    return change(session, call, F.NEEDS_CALLBACK, user_id=user_id)


def attempt_ended(
    session: Session,
    call: Call,
    outcome: CallbackStatus,
    *,
    user_id: int | None,
    at: dt.datetime,
    attempt_id: int | None,
) -> bool:
    """A callback attempt on the (locked) call ended with `outcome`. True when the call
    was reached for the first time (the time to callback ends here)."""
    first_reach = False
    if outcome is CallbackStatus.REACHED and call.first_reached_at is None:
        call.first_reached_at = at
        first_reach = True
    current = call.follow_up or F.NEW
    if current is F.RESOLVED:
        return first_reach
    target = F.CALLED_BACK if outcome is CallbackStatus.REACHED else F.NO_ANSWER
    if target in TRANSITIONS[current]:
        change(session, call, target, user_id=user_id, at=at, attempt_id=attempt_id)
    return first_reach
