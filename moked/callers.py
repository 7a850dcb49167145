"""Callers: a number within a business, who staff may name, block, or see flagged as spam.

The same number calling two businesses is two callers; a withheld number is none. The row
is made by the call that first comes from the number (`intake.apply_new_call` in its one
statement, `seen` on the other paths), which also reads whether the caller is blocked: a
blocked caller's call is stored with `calls.blocked` and answered with `<Reject>`.

Counting a caller's calls lives here once: `calls_this_week` (alerts' "3rd call this
week") and `week_counts` (the inbox's badges) are the same SQL expression, `_week_count`.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable
from typing import Any

import phonenumbers
from redis import Redis
from sqlalchemy import exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, aliased

from moked.db.models import Call, Caller, Recording, call_time
from moked.db.session import settings_session
from moked.phone import to_e164
from moked.settings import Settings
from moked.statuses import CallStatus

WEEK = dt.timedelta(days=7)
""""3rd call this week": calls from the same number to the same business in this window."""
DEFAULT_SPAM_CALLS = 5
DEFAULT_SPAM_MINUTES = 10.0


class CallerError(ValueError):
    """A one-line reason a caller cannot be changed (the CLI prints it, the CRM flashes it)."""


_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
WITHHELD_MARKERS = frozenset({"+266696687", "+7378742833", "+8656696", "+86282452253", "+2562533"})
"""What Twilio puts in `From` for an anonymous, restricted, unknown or unavailable caller."""


@functools.lru_cache(maxsize=4096)
def caller_number(raw: str | None) -> str | None:
    """The number as a caller's key: `From` as sent when it is E.164 and a possible number
    (a range newer than phonenumbers' metadata is still a caller who can be blocked); None
    when withheld ("anonymous", Twilio's markers, "client:…") or not a phone at all."""
    if not raw or raw in WITHHELD_MARKERS or not _E164.fullmatch(raw):
        return None
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return None
    return raw if phonenumbers.is_possible_number(parsed) else None


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# --- counting ------------------------------------------------------------------------------


def _week_count(call: Any) -> Any:
    """Calls from `call`'s number to its business in the week up to it, it included."""
    other = aliased(Call)
    at = call_time(call)
    return (
        select(func.count(other.id))
        .where(
            other.business_id == call.business_id,
            other.from_number == call.from_number,
            call_time(other) > at - WEEK,
            call_time(other) <= at,
        )
        .correlate(call)
        .scalar_subquery()
    )


def calls_this_week(session: Session, call: Call) -> int:
    """This call's place among its caller's calls this week (1 when withheld or the first)."""
    if call.id is None or call.business_id is None or caller_number(call.from_number) is None:
        return 1
    count = session.scalar(select(_week_count(Call)).where(Call.id == call.id))
    return max(1, count or 1)


def week_counts(session: Session, calls: Iterable[Call]) -> dict[int, int]:
    """`calls_this_week` of many calls in one query (the inbox's page): id → count."""
    ids = [c.id for c in calls if c.business_id is not None and caller_number(c.from_number)]
    if not ids:
        return {}
    rows = session.execute(select(Call.id, _week_count(Call)).where(Call.id.in_(ids)))
    return {call_id: max(1, count or 1) for call_id, count in rows}


# --- the rows ------------------------------------------------------------------------------


def seen(session: Session, business_id: int, number: str, when: dt.datetime) -> bool:
    """The number called the business: make its caller if it is new. True when blocked.
    (The hot path does the same inside `intake.apply_new_call`'s statement.)"""
    session.execute(
        insert(Caller)
        .values(business_id=business_id, number=number, first_seen=when)
        .on_conflict_do_nothing(index_elements=["business_id", "number"])
    )
    return bool(
        session.scalar(
            select(Caller.blocked).where(Caller.business_id == business_id, Caller.number == number)
        )
    )


def find(session: Session, business_id: int, number: str) -> Caller | None:
    return session.scalar(
        select(Caller).where(Caller.business_id == business_id, Caller.number == number)
    )


def _valid_number(raw: str) -> str:
    """A number staff typed (054-…, +972…), as the caller's key."""
    try:
        return to_e164(raw)
    except ValueError as exc:
        number = caller_number(raw.strip())
        if number is None:
            raise CallerError(f"not a valid phone number: {raw[:40]!r}") from exc
        return number


def ensure(session: Session, business_id: int, number: str, now: dt.datetime) -> Caller:
    """The caller's row, made if missing, locked for the caller's transaction."""
    session.execute(
        insert(Caller)
        .values(business_id=business_id, number=number, first_seen=now)
        .on_conflict_do_nothing(index_elements=["business_id", "number"])
    )
    caller = session.scalar(
        select(Caller)
        .where(Caller.business_id == business_id, Caller.number == number)
        .with_for_update()
    )
    assert caller is not None
    return caller


def block(
    session: Session,
    business_id: int,
    number: str,
    *,
    user_id: int | None = None,
    now: dt.datetime | None = None,
) -> Caller:
    """Block the number for the business (a number that never called may be blocked too):
    its calls are rejected, recorded as blocked, and alert nobody."""
    now = now or dt.datetime.now(dt.UTC)
    caller = ensure(session, business_id, _valid_number(number), now)
    if not caller.blocked:
        caller.blocked = True
        caller.blocked_at = now
        caller.blocked_by_id = user_id
    session.flush()
    return caller


def unblock(
    session: Session,
    business_id: int,
    number: str,
    *,
    user_id: int | None = None,
    now: dt.datetime | None = None,
) -> Caller:
    """Let the number through again; its spam flag goes too (staff have judged it), and
    only calls after now count towards flagging it again (`blocked_at` says when)."""
    caller = find(session, business_id, _valid_number(number))
    if caller is None:
        raise CallerError(f"{number} has never called and is not blocked")
    caller.blocked = False
    caller.blocked_at = now or dt.datetime.now(dt.UTC)
    caller.blocked_by_id = user_id
    caller.flagged_spam_at = None
    session.flush()
    return caller


MAX_NAME = 200


def rename(session: Session, caller: Caller, name: str | None) -> Caller:
    """The name staff give the caller; empty removes it."""
    cleaned = " ".join((name or "").split())
    if len(cleaned) > MAX_NAME:
        raise CallerError(f"a caller's name is at most {MAX_NAME} characters")
    caller.name = cleaned or None
    session.flush()
    return caller


def listed(session: Session, business_id: int) -> list[Caller]:
    """The business's blocked and flagged callers, most recently blocked or flagged first."""
    newest = func.greatest(
        func.coalesce(Caller.blocked_at, Caller.first_seen),
        func.coalesce(Caller.flagged_spam_at, Caller.first_seen),
    )
    return list(
        session.scalars(
            select(Caller)
            .where(
                Caller.business_id == business_id,
                Caller.blocked.is_(True) | Caller.flagged_spam_at.is_not(None),
            )
            .order_by(newest.desc(), Caller.id.desc())
        )
    )


def calls_of(session: Session, caller: Caller, limit: int = 50) -> list[Call]:
    """The caller's calls, newest first (the call page's list)."""
    return list(
        session.scalars(
            select(Call)
            .where(Call.business_id == caller.business_id, Call.from_number == caller.number)
            .order_by(call_time().desc(), Call.id.desc())
            .limit(limit)
        )
    )


# --- spam ----------------------------------------------------------------------------------


def flag_spam(
    session: Session,
    now: dt.datetime,
    *,
    calls: int = DEFAULT_SPAM_CALLS,
    minutes: float = DEFAULT_SPAM_MINUTES,
) -> int:
    """Flag as likely spam every caller that made `calls` or more calls that ended in the
    last `minutes` and left a message on none of them (no recording). Flagged is not
    blocked: staff decide. Calls before staff last unblocked the caller or said "not spam"
    (`blocked_at`) do not count again. One statement over the window's calls (the
    reconciler's step); returns how many callers it flagged."""
    since = now - dt.timedelta(minutes=minutes)
    with_message = exists().where(Recording.call_id == Call.id)
    ended = [status for status in CallStatus if status.is_terminal]
    busy = (
        select(Caller.id)
        .join(
            Call,
            (Call.business_id == Caller.business_id) & (Call.from_number == Caller.number),
        )
        .where(
            call_time() > since,
            call_time() <= now,
            call_time() > func.coalesce(Caller.blocked_at, since),
            Call.status.in_(ended),
            Call.blocked.is_(False),
            Caller.flagged_spam_at.is_(None),
            Caller.blocked.is_(False),
        )
        .group_by(Caller.id)
        .having(func.count(Call.id).filter(~with_message) >= calls)
        .having(func.count(Call.id).filter(with_message) == 0)
    )
    flagged = session.execute(
        update(Caller)
        .where(Caller.id.in_(busy), Caller.flagged_spam_at.is_(None))
        .values(flagged_spam_at=now)
        .returning(Caller.id)
        .execution_options(synchronize_session=False)
    ).all()
    return len(flagged)


def sweep(settings: Settings, redis: Redis | None = None) -> int:
    """The reconciler's step: `flag_spam` with SPAM_CALLS and SPAM_MINUTES."""
    with settings_session(settings) as session:
        return flag_spam(
            session,
            dt.datetime.now(dt.UTC),
            calls=settings.spam_calls,
            minutes=settings.spam_minutes,
        )


# --- description ---------------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def describe(caller: Caller) -> dict[str, Any]:
    """`caller` of `describe_call` (docs/schemas/call.json) and `moked caller list`."""
    return {
        "number": caller.number,
        "calls": caller.calls,
        "first_seen": _iso(_aware(caller.first_seen)),
        "name": caller.name,
        "blocked": caller.blocked,
    }


def to_dict(caller: Caller) -> dict[str, Any]:
    """A caller in `moked caller list`: `describe` and when it was blocked or flagged."""
    return {
        **describe(caller),
        "business_id": caller.business_id,
        "blocked_at": _iso(caller.blocked_at) if caller.blocked else None,
        "flagged_spam_at": _iso(caller.flagged_spam_at),
    }
