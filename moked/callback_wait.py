"""Time to callback: how long voicemails wait for a callback that reaches the caller.

- Reached: `calls.first_reached_at` (set by moked.callbacks); the time to callback is from
  the call's end to then, observed once per call in moked_time_to_callback_seconds
  {business} (moked.callbacks).
- Waiting: a voicemail (a recording that is not `absent`) whose follow-up is still open
  (new, needs_callback, no_answer) and that no callback has reached. Its wait is counted
  in the business's hours only (a message left on Thursday evening is not overdue on
  Saturday): `business_seconds`. The reconciler measures it every pass (`measure`):
  moked_callbacks_overdue{business} (waiting longer than businesses.callback_limit_minutes)
  and moked_callbacks_waiting_oldest_business_seconds{business}; the CallbacksOverdue
  alert reads the first.
- Business hours: `businesses.hours_start`–`hours_end` on `work_days`, in the business's
  time zone; by default 08:00–18:00 Sunday to Thursday (an Israeli working week) and a
  120-minute limit. `moked business hours` changes them.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from moked import metrics
from moked.businesses import zone as business_zone
from moked.db.models import Business, Call, Recording
from moked.db.session import settings_session
from moked.settings import Settings
from moked.statuses import FollowUp, ProcessingStatus

log = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names as `work_days` lists them, in Python's weekday() order."""
WAITING = (FollowUp.NEW, FollowUp.NEEDS_CALLBACK, FollowUp.NO_ANSWER)
LOOKBACK = dt.timedelta(days=30)
"""Voicemails older than this are not measured (they are long overdue or forgotten; the
scan stays bounded)."""
MAX_LIMIT_MINUTES = 7 * 24 * 60


class HoursError(ValueError):
    """Business hours or a limit that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Hours:
    start: dt.time
    end: dt.time
    days: frozenset[int]
    """weekday() numbers (Monday 0)."""
    zone: ZoneInfo

    @classmethod
    def of(cls, business: Business) -> Hours:
        days = parse_days(business.work_days)
        return cls(business.hours_start, business.hours_end, days, business_zone(business.timezone))


def parse_days(value: str) -> frozenset[int]:
    """'sun,mon,tue,wed,thu' (or 'sun-thu') as weekday() numbers."""
    days: set[int] = set()
    for part in (value or "").lower().replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise HoursError(f"not a day: {part!r} (use sun, mon, tue, wed, thu, fri, sat)")
        start, end = DAYS.index(first), DAYS.index(last or first)
        index = start
        while True:
            days.add(index)
            if index == end:
                break
            index = (index + 1) % 7
    return frozenset(days)


def format_days(days: frozenset[int]) -> str:
    order = (6, 0, 1, 2, 3, 4, 5)  # a week starts on Sunday here
    return ",".join(DAYS[d] for d in order if d in days)


def business_seconds(start: dt.datetime, end: dt.datetime, hours: Hours) -> float:
    """Seconds between two instants that fall inside business hours."""
    if end <= start or not hours.days or hours.end <= hours.start:
        return 0.0
    total = 0.0
    day = start.astimezone(hours.zone).date()
    last = end.astimezone(hours.zone).date()
    while day <= last:
        if day.weekday() in hours.days:
            opens = dt.datetime.combine(day, hours.start, tzinfo=hours.zone)
            closes = dt.datetime.combine(day, hours.end, tzinfo=hours.zone)
            overlap = (min(closes, end) - max(opens, start)).total_seconds()
            total += max(0.0, overlap)
        day += dt.timedelta(days=1)
    return total


@dataclass(frozen=True, slots=True)
class Waiting:
    business_id: int
    overdue: int
    oldest_seconds: float
    """Business-hours seconds the oldest waiting voicemail has waited."""


def waiting(session: Session, now: dt.datetime) -> list[Waiting]:
    """Per business, the voicemails waiting for a callback (see the module doc)."""
    left_message = exists().where(
        Recording.call_id == Call.id, Recording.processing_status != ProcessingStatus.ABSENT
    )
    since = func.coalesce(Call.ended_at, Call.started_at, Call.created_at)  # the wait's start
    rows = session.execute(
        select(Call.business_id, since)
        .where(
            Call.business_id.is_not(None),
            Call.follow_up.in_(WAITING),
            Call.first_reached_at.is_(None),
            since >= now - LOOKBACK,
            left_message,
        )
        .order_by(Call.business_id)
    ).all()
    businesses = {b.id: b for b in session.scalars(select(Business))}
    result = []
    by_business: dict[int, list[dt.datetime]] = {b: [] for b in businesses}
    for business_id, ended in rows:
        if business_id is not None:
            by_business.setdefault(business_id, []).append(ended)
    for business_id, times in by_business.items():
        business = businesses.get(business_id)
        if business is None:
            continue
        hours = Hours.of(business)
        limit = business.callback_limit_minutes * 60
        waits = [business_seconds(t, now, hours) for t in times]
        result.append(
            Waiting(business_id, sum(1 for w in waits if w > limit), max(waits, default=0.0))
        )
    return result


_measured: set[str] = set()


def measure(settings: Settings, _redis: object = None, now: dt.datetime | None = None) -> int:
    """The reconciler's step: set the gauges; the number of overdue voicemails."""
    now = now or dt.datetime.now(dt.UTC)
    with settings_session(settings) as session:
        found = waiting(session, now)
    seen = set()
    for item in found:
        label = str(item.business_id)
        seen.add(label)
        metrics.CALLBACKS_OVERDUE.labels(label).set(item.overdue)
        metrics.CALLBACKS_WAITING_OLDEST.labels(label).set(item.oldest_seconds)
    for gone in _measured - seen:  # a business removed: its series go
        metrics.CALLBACKS_OVERDUE.remove(gone)
        metrics.CALLBACKS_WAITING_OLDEST.remove(gone)
    _measured.clear()
    _measured.update(seen)
    return sum(item.overdue for item in found)


def set_hours(
    session: Session,
    business: Business,
    *,
    hours: str | None = None,
    days: str | None = None,
    limit_minutes: int | None = None,
) -> None:
    """Change a business's hours ('08:00-18:00'), days ('sun-thu') or callback limit."""
    if hours is not None:
        start_text, _, end_text = hours.replace(" ", "").partition("-")
        try:
            start, end = dt.time.fromisoformat(start_text), dt.time.fromisoformat(end_text)
        except ValueError as exc:
            raise HoursError(f"hours are HH:MM-HH:MM, not {hours!r}") from exc
        if end <= start:
            raise HoursError("business hours end after they start (no overnight hours)")
        business.hours_start, business.hours_end = start, end
    if days is not None:
        parsed = parse_days(days)
        if not parsed:
            raise HoursError("a business works on at least one day")
        business.work_days = format_days(parsed)
    if limit_minutes is not None:
        if not 1 <= limit_minutes <= MAX_LIMIT_MINUTES:
            raise HoursError(f"the callback limit is 1 to {MAX_LIMIT_MINUTES} minutes")
        business.callback_limit_minutes = limit_minutes
    session.flush()
