"""Sign-in throttling that slows guessing without locking the real user out.

Two counters of failed sign-ins, rows of `login_throttle`: one per client address and one
per account. Past a number of free failures each further failure blocks for twice as long
as the one before (1 s, 2 s, 4 s … at most MAX_DELAY):

- an address that keeps failing is blocked, whatever account it tries;
- an account that keeps failing is blocked only for addresses that have failed themselves:
  its owner, signing in from an address with no failures, still gets in while guesses
  come from elsewhere; a spread attack gets one guess per fresh address.

Counting is atomic: each attempt locks both rows (INSERT … ON CONFLICT, SELECT … FOR
UPDATE, in one order so attempts cannot deadlock), decides, and books itself as a failure
before the password is checked. Parallel guesses therefore queue on the lock and each sees
the failures of those before it; a right password then takes its own booking back.

Postgres and not Redis: sign-in needs Postgres anyway (the user's row), so throttling adds
no second service whose outage would either lock everyone out or switch throttling off.
Counters are forgotten FORGET_AFTER after their last failure.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from sqlalchemy import case, delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from moked.db.models import LoginThrottle

FREE_ADDRESS_FAILURES = 10
"""An office behind one address shares this; its people mistype too."""
FREE_ACCOUNT_FAILURES = 5
MAX_DELAY = dt.timedelta(minutes=15)
FORGET_AFTER = dt.timedelta(hours=1)


class Scope(enum.StrEnum):
    ACCOUNT = "account"
    ADDRESS = "address"


@dataclass(frozen=True, slots=True)
class _Booking:
    scope: Scope
    key: str
    blocked_until: dt.datetime | None
    """The block this attempt set, if any: a success takes back only its own."""
    previous_block: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """The verdict on one sign-in attempt, before its password is checked."""

    allowed: bool
    retry_at: dt.datetime | None = None
    """When refused: when this address may try again."""
    bookings: tuple[_Booking, ...] = ()

    def retry_after(self, now: dt.datetime | None = None) -> int:
        """Whole seconds until retry_at (at least 1)."""
        if self.retry_at is None:
            return 1
        seconds = (self.retry_at - (now or dt.datetime.now(dt.UTC))).total_seconds()
        return max(1, int(seconds + 0.999))


def delay_after(failures: int, free: int) -> dt.timedelta:
    """How long the n-th failure blocks: nothing for the free ones, then doubling."""
    if failures < free:
        return dt.timedelta(0)
    exponent = min(failures - free, 20)  # 2**20 s is far past MAX_DELAY already
    return min(dt.timedelta(seconds=2**exponent), MAX_DELAY)


def begin(
    session: Session, *, address: str, account: str, now: dt.datetime | None = None
) -> Attempt:
    """Decide on an attempt from `address` for `account`; if allowed, book it as a failure.

    Commits: the rows stay locked only for these few statements, not while the password
    hash is computed.
    """
    now = now or dt.datetime.now(dt.UTC)
    keys = sorted([(Scope.ACCOUNT.value, account), (Scope.ADDRESS.value, address)])
    session.execute(
        insert(LoginThrottle)
        .values([{"scope": s, "key": k, "failures": 0, "last_failure_at": now} for s, k in keys])
        .on_conflict_do_nothing()
    )
    rows = session.scalars(
        select(LoginThrottle)
        .where(tuple_(LoginThrottle.scope, LoginThrottle.key).in_(keys))
        .order_by(LoginThrottle.scope, LoginThrottle.key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    by_scope = {Scope(row.scope): row for row in rows}
    for row in rows:
        if row.last_failure_at < now - FORGET_AFTER:
            row.failures, row.blocked_until = 0, None
    at_address, at_account = by_scope[Scope.ADDRESS], by_scope[Scope.ACCOUNT]

    refused_until: dt.datetime | None = None
    if at_address.blocked_until is not None and at_address.blocked_until > now:
        refused_until = at_address.blocked_until
    elif (
        at_account.blocked_until is not None
        and at_account.blocked_until > now
        and at_address.failures > 0
    ):
        refused_until = at_account.blocked_until
    if refused_until is not None:
        # A refused attempt checks no password, so it is not counted.
        session.commit()
        return Attempt(allowed=False, retry_at=refused_until)

    bookings = []
    for row, free in (
        (at_account, FREE_ACCOUNT_FAILURES),
        (at_address, FREE_ADDRESS_FAILURES),
    ):
        previous = row.blocked_until
        row.failures += 1
        row.last_failure_at = now
        delay = delay_after(row.failures, free)
        block = max(now + delay, previous or now) if delay else None
        if block is not None:
            row.blocked_until = block
        bookings.append(_Booking(Scope(row.scope), row.key, block, previous_block=previous))
    session.commit()
    _forget_stale(session, now)
    return Attempt(allowed=True, bookings=tuple(bookings))


def _forget_stale(session: Session, now: dt.datetime) -> None:
    """Keep the table small. Alone in its transaction and skipping locked rows, so it never
    waits on an attempt under way (and can never deadlock with one)."""
    stale = (
        select(LoginThrottle.scope, LoginThrottle.key)
        .where(LoginThrottle.last_failure_at < now - FORGET_AFTER)
        .with_for_update(skip_locked=True)
    )
    session.execute(
        delete(LoginThrottle).where(tuple_(LoginThrottle.scope, LoginThrottle.key).in_(stale))
    )
    session.commit()


def succeeded(session: Session, attempt: Attempt) -> None:
    """The password was right: take back this attempt's booking (not other failures).

    A success does not clear the counters: an attacker with an account of their own must
    not wipe their address's failures by signing in to it between guesses.
    """
    for booking in attempt.bookings:
        row = (LoginThrottle.scope == booking.scope.value) & (LoginThrottle.key == booking.key)
        session.execute(
            update(LoginThrottle)
            .where(row)
            .values(
                failures=func.greatest(LoginThrottle.failures - 1, 0),
                # Only the block this attempt set; a later failure's block stays.
                blocked_until=case(
                    (
                        LoginThrottle.blocked_until == booking.blocked_until,
                        booking.previous_block,
                    ),
                    else_=LoginThrottle.blocked_until,
                )
                if booking.blocked_until is not None
                else LoginThrottle.blocked_until,
            )
        )
    session.commit()
