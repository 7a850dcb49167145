"""Folding Twilio events into a call: order-independent and monotonic."""

from __future__ import annotations

import datetime as dt
import itertools

from moked.db.models import Call
from moked.intake import event_time, merge_call, valid_sid
from moked.statuses import CallStatus

T0 = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)

EVENTS = [
    ({"CallStatus": "ringing", "SequenceNumber": "0"}, T0),
    ({"CallStatus": "in-progress", "SequenceNumber": "1"}, T0 + dt.timedelta(seconds=2)),
    (
        {"CallStatus": "completed", "SequenceNumber": "2", "CallDuration": "30"},
        T0 + dt.timedelta(seconds=32),
    ),
]


def fresh_call() -> Call:
    return Call(call_sid="CA" + "0" * 32, status=CallStatus.QUEUED)


def test_every_order_ends_in_the_same_state() -> None:
    outcomes = set()
    for order in itertools.permutations(EVENTS):
        call = fresh_call()
        for params, when in order:
            merge_call(call, {"From": "+972501111111", **params}, when, None)
        outcomes.add(
            (
                call.status,
                call.duration_seconds,
                call.started_at,
                call.answered_at,
                call.ended_at,
                call.last_sequence_number,
            )
        )
    assert outcomes == {
        (
            CallStatus.COMPLETED,
            30,
            T0,
            T0 + dt.timedelta(seconds=2),
            T0 + dt.timedelta(seconds=32),
            2,
        )
    }


def test_terminal_status_is_never_replaced() -> None:
    call = fresh_call()
    merge_call(call, {"CallStatus": "busy", "SequenceNumber": "1"}, T0, None)
    merge_call(call, {"CallStatus": "completed", "SequenceNumber": "5"}, T0, None)
    merge_call(call, {"CallStatus": "ringing", "SequenceNumber": "9"}, T0, None)
    assert call.status is CallStatus.BUSY


def test_unknown_status_and_garbage_are_ignored() -> None:
    call = fresh_call()
    merge_call(
        call, {"CallStatus": "exploded", "SequenceNumber": "x", "CallDuration": "-4"}, T0, None
    )
    assert call.status is CallStatus.QUEUED
    assert call.duration_seconds is None


def test_timestamp_parsing() -> None:
    assert event_time({"Timestamp": "Sat, 28 Nov 2026 10:00:00 +0000"}, T0 + dt.timedelta(1)) == T0
    assert event_time({"Timestamp": "yesterday"}, T0) == T0
    assert event_time({}, T0) == T0


def test_sid_validation() -> None:
    assert valid_sid("CA" + "a1" * 16, "CA")
    assert valid_sid("RE" + "a1" * 16, "CA") is None
    assert valid_sid("CA' OR 1=1 --", "CA") is None
    assert valid_sid("CA" + "א" * 32, "CA") is None
