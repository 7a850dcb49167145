"""Quiet hours: whether a moment falls inside a rule's window, and when the window ends.

Windows are wall-clock times in the business's zone and may wrap midnight (22:00–07:00).
Daylight-saving days are handled by zoneinfo: the end is the first moment at or after the
wall-clock end time on the right day.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

WINDOW = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*[-–]\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def parse(text: str) -> tuple[dt.time, dt.time]:
    """ "22:00-07:00" → (22:00, 07:00). Raises ValueError with a readable reason."""
    match = WINDOW.match(text or "")
    if not match:
        raise ValueError(f"quiet hours must look like 22:00-07:00, got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = dt.time(h1, m1), dt.time(h2, m2)
    if start == end:
        raise ValueError("quiet hours must start and end at different times")
    return start, end


def describe(start: dt.time | None, end: dt.time | None) -> str:
    if start is None or end is None:
        return ""
    return f"{start:%H:%M}-{end:%H:%M}"


def _inside(local: dt.time, start: dt.time, end: dt.time) -> bool:
    if start < end:
        return start <= local < end
    return local >= start or local < end


def ends_at(
    now: dt.datetime, start: dt.time | None, end: dt.time | None, timezone: str
) -> dt.datetime | None:
    """When the quiet hours `now` falls in end (UTC); None when `now` is outside them."""
    if start is None or end is None:
        return None
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    if not _inside(local.time().replace(tzinfo=None), start, end):
        return None
    day = local.date()
    if local.time().replace(tzinfo=None) >= end:
        day += dt.timedelta(days=1)  # before midnight in a window that wraps it
    ending = dt.datetime.combine(day, end, tzinfo=zone)
    # A wall-clock time skipped by a DST change normalises forward, never into the past.
    return max(ending.astimezone(dt.UTC), now.astimezone(dt.UTC))
