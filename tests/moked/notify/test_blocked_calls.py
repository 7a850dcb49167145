"""A blocked caller's call alerts nobody: the planner decides it once, with no delivery.
On a database of its own (the test stack's reconciler would plan these calls first)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import select

from moked import callers
from moked.db.models import Business, Call, NotificationDelivery
from moked.notify import planner, rules
from moked.statuses import Channel, NotifyWhen
from tests.helpers import call_params, new_call_sid, unique_caller
from tests.moked.notify.conftest import Isolated


def a_caller() -> str:
    return unique_caller()


def missed_call(isolated: Isolated, business: Business, number: str) -> tuple[str, str]:
    """A call from `number` that ended without a message; returns (CallSid, its TwiML)."""
    call_sid = new_call_sid()
    params = call_params(call_sid, business.numbers[0].e164, From=number, Caller=number)
    answer = isolated.twilio.post("/webhook/incoming_call", params)
    assert answer.status_code == 200 and answer.mimetype == "text/xml"
    done = {**params, "CallStatus": "busy", "CallDuration": "0", "SequenceNumber": "2"}
    assert isolated.twilio.post("/webhook/call_status", done).status_code == 200
    return call_sid, answer.get_data(as_text=True)


def test_the_planner_sends_nothing_for_a_blocked_call(
    isolated: Isolated, isolated_business: Callable[..., Business]
) -> None:
    business = isolated_business()
    with isolated.session() as session:
        row = session.get(Business, business.id)
        assert row is not None
        rule = rules.NewRule(channel=Channel.EMAIL, target="owner@example.com", when=NotifyWhen.ALL)
        rules.add(session, isolated.settings, row, rule)
    blocked, allowed = a_caller(), a_caller()
    with isolated.session() as session:
        callers.block(session, business.id, blocked)

    blocked_sid, blocked_twiml = missed_call(isolated, business, blocked)
    allowed_sid, allowed_twiml = missed_call(isolated, business, allowed)
    assert "<Reject" in blocked_twiml and "<Record" not in blocked_twiml
    assert "<Record" in allowed_twiml

    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)  # past the missed-call grace
    with isolated.session() as session:
        assert planner.plan_call(session, isolated.settings, blocked_sid, later) == []
        assert len(planner.plan_call(session, isolated.settings, allowed_sid, later)) == 1
    with isolated.session() as session:
        call = session.scalar(select(Call).where(Call.call_sid == blocked_sid))
        assert call is not None and call.blocked and call.alerts_planned_at is not None
        assert (
            session.scalars(
                select(NotificationDelivery).where(NotificationDelivery.call_id == call.id)
            ).all()
            == []
        )
        # Decided: the reconciler's sweep does not come back to it.
        assert blocked_sid not in planner.unplanned_calls(session, isolated.settings, later)
