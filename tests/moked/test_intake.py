"""Folding Twilio events into a call: order-independent and monotonic."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy import func, select

from moked.db.models import Call, WebhookEvent
from moked.db.session import autocommit_connection, session_scope
from moked.intake import (
    CALL_COLUMNS_FROM_EVENTS,
    InboundEvent,
    apply_event,
    apply_new_call,
    event_time,
    merge_call,
    valid_sid,
)
from moked.statuses import CallStatus, Endpoint
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid

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


@pytest.mark.parametrize(
    "sent",
    [
        "Fri, 31 Dec 9999 23:59:59 +0000",
        "Fri, 31 Dec 9999 23:59:59 -1400",
        "Mon, 01 Jan 1900 00:00:00 +0000",
        "Sun, 29 Nov 2026 10:00:01 +0000",  # a day and a second after T0
        "Fri, 27 Nov 2026 09:59:59 +0000",  # a day and a second before T0
    ],
)
def test_a_timestamp_far_from_receipt_gives_way_to_the_receive_time(sent: str) -> None:
    assert event_time({"Timestamp": sent}, T0) == T0


def test_a_timestamp_near_receipt_is_kept() -> None:
    sent = "Sat, 28 Nov 2026 09:59:30 +0000"
    assert event_time({"Timestamp": sent}, T0 + dt.timedelta(hours=3)) == T0 - dt.timedelta(
        seconds=30
    )


def test_a_signed_webhook_from_year_9999_is_stored_at_its_receive_time(
    stack: StackUnderTest, make_business
) -> None:
    """As found: a signed incoming_call and call_status through nginx with Timestamp in
    year 9999 stored started_at/ended_at 9999-12-31, and every page showing the call
    answered 500. The call takes the receive time; the event log keeps what was sent."""
    business = make_business()
    call_sid = new_call_sid()
    far = "Fri, 31 Dec 9999 23:59:59 +0000"
    before = dt.datetime.now(dt.UTC)
    params = call_params(call_sid, business.numbers[0].e164, Timestamp=far)
    assert stack.post("/webhook/incoming_call", params).status_code == 200
    done = {**params, "CallStatus": "completed", "CallDuration": "12", "SequenceNumber": "3"}
    assert stack.post("/webhook/call_status", done).status_code == 200
    after = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None and call.status is CallStatus.COMPLETED
        for when in (call.started_at, call.ended_at):
            assert when is not None
            assert before - dt.timedelta(seconds=5) <= when <= after + dt.timedelta(seconds=5)
        sent = session.scalars(
            select(WebhookEvent.params).where(WebhookEvent.call_sid == call_sid)
        ).all()
        assert len(sent) == 2
        assert all(p["Timestamp"] in (far, [far]) for p in sent), sent


def test_sid_validation() -> None:
    assert valid_sid("CA" + "a1" * 16, "CA")
    assert valid_sid("RE" + "a1" * 16, "CA") is None
    assert valid_sid("CA' OR 1=1 --", "CA") is None
    assert valid_sid("CA" + "א" * 32, "CA") is None


# --- the one-statement path for a new call, against the real Postgres -------------------

_MERGED_COLUMNS = ("business_id", *CALL_COLUMNS_FROM_EVENTS)


def _incoming(call_sid: str, to: str, **extra: str) -> InboundEvent:
    return InboundEvent(
        endpoint=Endpoint.INCOMING_CALL,
        params=call_params(call_sid, to, **extra),
        received_at=T0,
    )


def _stored(call_sid: str) -> dict[str, object]:
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        return {name: getattr(call, name) for name in _MERGED_COLUMNS}


def _log_count(event_id: str) -> int:
    with session_scope() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(WebhookEvent)
                .where(WebhookEvent.event_id == event_id)
            )
            or 0
        )


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"CallStatus": "in-progress", "SequenceNumber": "3", "CallerName": "דנה & <שות'>"},
        {
            "CallStatus": "no-answer",
            "CallDuration": "0",
            "Timestamp": "Sat, 28 Nov 2026 10:00:05 +0000",
        },
        {"Direction": "outbound-api", "CallStatus": "garbage"},
        # Longer than the columns: stored cut, never refused by Postgres (and set aside).
        {"From": "+" + "9" * 100, "CallerName": "א" * 300, "AccountSid": "AC" + "f" * 100},
    ],
)
def test_new_call_statement_stores_what_apply_event_stores(
    stack: StackUnderTest, make_business, extra: dict[str, str]
) -> None:
    business = make_business()
    number = business.numbers[0].e164
    fast_sid, slow_sid = new_call_sid(), new_call_sid()

    fast_event = _incoming(fast_sid, number, **extra)
    with autocommit_connection() as connection:
        new_call = apply_new_call(connection, fast_event)
    assert new_call is not None
    assert new_call.effects.new_call and new_call.effects.call_sid == fast_sid
    assert new_call.effects.business_id == business.id
    assert (
        new_call.business is not None and new_call.business.greeting_text == business.greeting_text
    )

    with session_scope() as session:
        effects = apply_event(session, _incoming(slow_sid, number, **extra))
    assert effects.business_id == business.id and effects.new_call

    assert _stored(fast_sid) == _stored(slow_sid)
    assert _log_count(fast_event.event_id) == 1


def test_new_call_statement_leaves_an_existing_call_to_apply_event(
    stack: StackUnderTest, make_business
) -> None:
    number = make_business().numbers[0].e164
    call_sid = new_call_sid()
    # The status callback came first (wrong order): the call exists, completed.
    with session_scope() as session:
        apply_event(
            session,
            InboundEvent(
                endpoint=Endpoint.CALL_STATUS,
                params=call_params(call_sid, number, CallStatus="completed", SequenceNumber="4"),
                received_at=T0,
            ),
        )
    before = _stored(call_sid)
    late = _incoming(call_sid, number)
    with autocommit_connection() as connection:
        assert apply_new_call(connection, late) is None
    assert _stored(call_sid) == before, "the call row is not touched"
    assert _log_count(late.event_id) == 1, "the receipt is logged"
    with autocommit_connection() as connection:
        assert apply_new_call(connection, late) is None
    assert _log_count(late.event_id) == 1, "a replay of the same receipt is not logged twice"


def test_new_call_statement_keeps_an_unknown_number_unassigned(stack: StackUnderTest) -> None:
    call_sid = new_call_sid()
    with autocommit_connection() as connection:
        new_call = apply_new_call(connection, _incoming(call_sid, "+972599999999"))
    assert new_call is not None
    assert new_call.business is None and new_call.effects.business_id is None
    stored = _stored(call_sid)
    assert stored["business_id"] is None and stored["to_number"] == "+972599999999"


def test_new_call_statement_ignores_what_is_not_a_new_call(stack: StackUnderTest) -> None:
    with autocommit_connection() as connection:
        assert apply_new_call(connection, _incoming("not-a-sid", "+97235550000")) is None
        status = InboundEvent(
            endpoint=Endpoint.CALL_STATUS,
            params=call_params(new_call_sid(), "+97235550000"),
            received_at=T0,
        )
        assert apply_new_call(connection, status) is None
