"""Quiet hours in the business's zone, across midnight and daylight-saving changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from moked.notify import quiet_hours

JERUSALEM = ZoneInfo("Asia/Jerusalem")


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=JERUSALEM)


def test_parse_and_describe() -> None:
    assert quiet_hours.parse("22:00-07:00") == (dt.time(22), dt.time(7))
    assert quiet_hours.parse(" 9:30 – 17:45 ") == (dt.time(9, 30), dt.time(17, 45))
    assert quiet_hours.describe(dt.time(22), dt.time(7)) == "22:00-07:00"
    for bad in ("", "22-07", "25:00-07:00", "22:00-22:00", "22:00"):
        with pytest.raises(ValueError):
            quiet_hours.parse(bad)


@pytest.mark.parametrize(
    ("now", "ends"),
    [
        (at(2026, 12, 1, 23, 30), at(2026, 12, 2, 7)),  # before midnight: tomorrow 07:00
        (at(2026, 12, 2, 3, 0), at(2026, 12, 2, 7)),  # after midnight: today 07:00
        (at(2026, 12, 2, 7, 0), None),  # the end is outside
        (at(2026, 12, 1, 21, 59), None),
        (at(2026, 12, 1, 22, 0), at(2026, 12, 2, 7)),
    ],
)
def test_a_window_across_midnight(now: dt.datetime, ends: dt.datetime | None) -> None:
    start, end = quiet_hours.parse("22:00-07:00")
    got = quiet_hours.ends_at(now.astimezone(dt.UTC), start, end, "Asia/Jerusalem")
    assert got == (ends.astimezone(dt.UTC) if ends else None)


def test_a_window_within_a_day() -> None:
    start, end = quiet_hours.parse("12:00-14:00")
    assert quiet_hours.ends_at(at(2026, 12, 1, 13), start, end, "Asia/Jerusalem") == at(
        2026, 12, 1, 14
    )
    assert quiet_hours.ends_at(at(2026, 12, 1, 15), start, end, "Asia/Jerusalem") is None


def test_the_night_clocks_go_forward() -> None:
    # Israel, 27 March 2026: 02:00 became 03:00. 23:30 the night before ends at 07:00 IDT.
    start, end = quiet_hours.parse("22:00-07:00")
    ends = quiet_hours.ends_at(at(2026, 3, 26, 23, 30), start, end, "Asia/Jerusalem")
    assert ends is not None
    assert ends.astimezone(JERUSALEM).hour == 7
    assert ends.astimezone(JERUSALEM).utcoffset() == dt.timedelta(hours=3)


def test_no_window_holds_nothing() -> None:
    assert quiet_hours.ends_at(at(2026, 12, 1, 23), None, None, "Asia/Jerusalem") is None
