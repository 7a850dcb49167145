"""Time to callback: business hours, the waiting voicemails the reconciler measures, and
`moked business hours` (moked.callback_wait). Every measurement is given its `now`, so
the stack's reconciler (which measures with the real clock) cannot race these tests."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from moked import callback_wait, callbacks, followup
from moked.callback_wait import Hours, HoursError, business_seconds, parse_days
from moked.db.models import Business, Call
from moked.db.session import session_scope
from moked.statuses import CallbackStatus, FollowUp
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, recorded_call

ZONE = ZoneInfo("Asia/Jerusalem")
SUNDAY_9 = dt.datetime(2026, 11, 22, 9, 0, tzinfo=ZONE)
DEFAULT_HOURS = Hours(dt.time(8), dt.time(18), parse_days("sun-thu"), ZONE)


def test_business_seconds_count_only_business_hours() -> None:
    thursday_17 = dt.datetime(2026, 11, 26, 17, 0, tzinfo=ZONE)
    sunday_9 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=ZONE)
    # Thursday's last hour and Sunday's first: the weekend does not count.
    assert business_seconds(thursday_17, sunday_9, DEFAULT_HOURS) == 2 * 3600
    # A message left at night waits from the opening.
    night = dt.datetime(2026, 11, 23, 2, 0, tzinfo=ZONE)
    assert business_seconds(night, night.replace(hour=8, minute=30), DEFAULT_HOURS) == 1800
    assert business_seconds(sunday_9, thursday_17, DEFAULT_HOURS) == 0  # backwards


def test_days_parse_as_ranges_and_lists() -> None:
    assert parse_days("sun-thu") == {6, 0, 1, 2, 3}
    assert parse_days("fri, sat") == {4, 5}
    assert parse_days("Mon") == {0}
    with pytest.raises(HoursError):
        parse_days("sun-funday")


def _voicemail(twilio: TwilioClient, to: str, ended: dt.datetime) -> str:
    call_sid, _ = recorded_call(twilio, to)
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        call.ended_at = ended
    return call_sid


def _missed(twilio: TwilioClient, to: str, ended: dt.datetime) -> str:
    call_sid = new_call_sid()
    assert twilio.post("/webhook/incoming_call", call_params(call_sid, to)).status_code == 200
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        call.ended_at = ended
    return call_sid


def _waiting_of(business_id: int, now: dt.datetime) -> callback_wait.Waiting:
    with session_scope() as session:
        found = {w.business_id: w for w in callback_wait.waiting(session, now)}
    return found[business_id]


def test_voicemails_past_the_limit_in_business_hours_are_overdue_until_called_back(
    stack: StackUnderTest, twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    business: Business = make_business()
    with session_scope() as session:
        row = session.get(Business, business.id)
        assert row is not None
        callback_wait.set_hours(session, row, hours="08:00-18:00", days="sun-thu", limit_minutes=60)
    number = business.numbers[0].e164
    first = _voicemail(twilio, number, SUNDAY_9)
    _voicemail(twilio, number, SUNDAY_9 + dt.timedelta(minutes=50))
    _missed(twilio, number, SUNDAY_9)  # nothing to call back about: never overdue

    assert _waiting_of(business.id, SUNDAY_9 + dt.timedelta(minutes=59)).overdue == 0
    at_11 = _waiting_of(business.id, SUNDAY_9 + dt.timedelta(hours=2))
    assert at_11.overdue == 2 and at_11.oldest_seconds == 2 * 3600
    # Friday and Saturday do not count: at Sunday 09:00 the second is 9 h 10 min old only.
    friday_night = dt.datetime(2026, 11, 27, 23, 0, tzinfo=ZONE)
    assert _waiting_of(business.id, friday_night).oldest_seconds == 5 * 10 * 3600 - 3600

    # The reconciler's step sets the gauge for the business.
    callback_wait.measure(stack.settings, now=SUNDAY_9 + dt.timedelta(hours=2))
    sample = REGISTRY.get_sample_value("moked_callbacks_overdue", {"business": str(business.id)})
    assert sample == 2

    # A callback that reached the first caller, and the second call resolved: none waits.
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == first))
        assert call is not None
        callbacks.log_manual(session, call, None, CallbackStatus.REACHED, duration_seconds=30)
        second = session.scalars(
            select(Call).where(Call.business_id == business.id, Call.call_sid != first)
        ).all()
        for other in second:
            locked = followup.lock(session, other.id)
            assert locked is not None
            followup.change(session, locked, FollowUp.RESOLVED, user_id=None)
    assert _waiting_of(business.id, SUNDAY_9 + dt.timedelta(hours=3)).overdue == 0


def test_hours_are_validated(make_business) -> None:  # type: ignore[no-untyped-def]
    business: Business = make_business()
    with session_scope() as session:
        row = session.get(Business, business.id)
        assert row is not None
        assert (row.hours_start, row.hours_end, row.callback_limit_minutes) == (
            dt.time(8),
            dt.time(18),
            120,
        )
        assert parse_days(row.work_days) == {6, 0, 1, 2, 3}
        for bad in ({"hours": "18:00-08:00"}, {"hours": "8am"}, {"limit_minutes": 0}):
            with pytest.raises(HoursError):
                callback_wait.set_hours(session, row, **bad)  # type: ignore[arg-type]
        callback_wait.set_hours(session, row, days="mon-fri", limit_minutes=240)
        assert row.work_days == "mon,tue,wed,thu,fri" and row.callback_limit_minutes == 240
