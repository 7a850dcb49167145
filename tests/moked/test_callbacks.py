"""Calling a caller back (moked.callbacks, moked.followup), driven by the simulator.

The loop: the API asks for a callback → Moked asks the simulator's `Calls.create` → the
simulator rings the staff phone, fetches `/webhook/callback_connect` (signed, through the
stack's nginx and webhooks service), plays its `<Dial>` to the caller, posts the Dial's
action and the staff leg's status callbacks → the attempt ends with its outcome.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import jsonschema
import pytest
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy import select, text

from moked import callbacks, followup
from moked.accounts import Role, add_user, create_token
from moked.calls import SCHEMA_PATH, call_loading, describe_call
from moked.db.models import Call, CallbackAttempt, FollowUpChange, User
from moked.db.session import session_scope
from moked.simulator.twilio_api import TwilioApiSimulator
from moked.statuses import CALLBACK_OUTCOMES, CallbackStatus, CallStatus, Endpoint, FollowUp
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid

STAFF_PHONE = "+972545550101"
CALLER = "+972525550123"


@pytest.fixture(scope="module")
def simulator(stack: StackUnderTest) -> Iterator[TwilioApiSimulator]:
    sim = TwilioApiSimulator(
        stack.settings.twilio_account_sid,
        stack.settings.twilio_auth_token.get_secret_value(),
        callback_delay=0.01,
    ).start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(simulator: TwilioApiSimulator) -> Iterator[TwilioApiSimulator]:
    yield simulator
    simulator.duplicate_callbacks = simulator.shuffle_callbacks = False


@pytest.fixture(scope="module")
def api_app(stack: StackUnderTest, simulator: TwilioApiSimulator) -> Flask:
    """The CRM (its API) with Twilio's REST API played by the simulator; the simulator's
    callbacks reach the stack's webhooks through nginx (PUBLIC_HOST)."""
    from crm_ui.app import create_app

    settings = stack.settings.model_copy(update={"twilio_api_base": simulator.url})
    app = create_app(settings, WTF_CSRF_ENABLED=False)
    app.testing = True
    return app


@dataclass(frozen=True)
class Staff:
    email: str
    token: str
    business_id: int
    number: str


def make_staff(make_business, phone: str | None = STAFF_PHONE) -> Staff:  # type: ignore[no-untyped-def]
    business = make_business()
    email = f"cb-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(session, email, role=Role.STAFF, business=str(business.id), phone=phone)
        token = create_token(session, email, label="callbacks")
    return Staff(email, token, business.id, business.numbers[0].e164)


def voicemail(twilio: TwilioClient, to: str, caller: str = CALLER) -> str:
    """A call to the business that ended (the caller left a message or not)."""
    call_sid = new_call_sid()
    params = call_params(call_sid, to, From=caller, Caller=caller)
    assert twilio.post(Endpoint.INCOMING_CALL.path, params).status_code == 200
    ended = {**params, "CallStatus": "completed", "CallDuration": "20", "SequenceNumber": "2"}
    assert twilio.post(Endpoint.CALL_STATUS.path, ended).status_code == 200
    return call_sid


def call_back(api_app: Flask, staff: Staff, call_sid: str) -> dict[str, object]:
    answer = api_app.test_client().post(
        f"/api/v1/calls/{call_sid}/callback",
        headers={"Authorization": f"Bearer {staff.token}"},
    )
    assert answer.status_code == 201, answer.get_data(as_text=True)
    body: dict[str, object] = answer.get_json()
    return body


def final_attempt(attempt_id: int, timeout: float = 15.0) -> CallbackAttempt:
    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            attempt = session.get(CallbackAttempt, attempt_id)
            assert attempt is not None
            if attempt.status.is_final or time.monotonic() > deadline:
                session.expunge(attempt)
                return attempt
        time.sleep(0.05)


def call_row(call_sid: str) -> Call:
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        session.expunge(call)
        return call


# --- the loop, through the simulator ------------------------------------------------------


def test_callback_reaches_the_caller_through_the_simulator(
    api_app: Flask, sim: TwilioApiSimulator, twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    staff = make_staff(make_business)
    call_sid = voicemail(twilio, staff.number)

    started = call_back(api_app, staff, call_sid)
    placed = sim.wait_for_call(str(started["call_sid"]))
    attempt = final_attempt(int(str(started["attempt_id"])))

    # Twilio was asked to ring the staff phone from the business's own number...
    assert (placed.to, placed.from_) == (STAFF_PHONE, staff.number)
    assert placed.status_events == ("initiated", "ringing", "answered", "completed")
    # ...and the answered leg's TwiML dialled the caller, showing the business's number.
    fetched = next(e for e in placed.exchanges if e.kind == "url")
    assert fetched.http_status == 200 and fetched.content_type.startswith("text/xml")
    assert (placed.dial_number, placed.dial_caller_id) == (CALLER, staff.number)
    assert all(e.http_status == 200 for e in placed.exchanges), placed.exchanges
    assert [e.params.get("CallStatus") for e in placed.exchanges if e.kind == "status"] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    # The attempt: reached, with the conversation's length and both legs' statuses.
    assert attempt.status is CallbackStatus.REACHED
    assert attempt.duration_seconds == sim.talk_seconds
    assert attempt.dial_status == "completed" and attempt.call_sid == placed.sid
    assert attempt.answered_at is not None and attempt.ended_at is not None
    call = call_row(call_sid)
    assert call.follow_up is FollowUp.CALLED_BACK and call.first_reached_at is not None


@pytest.mark.parametrize(
    ("staff_phone", "caller", "outcome"),
    [
        ("+972545550486", CALLER, CallbackStatus.NO_ANSWER),  # the staff phone rings out
        ("+972545550280", CALLER, CallbackStatus.BUSY),  # the staff phone is busy
        (STAFF_PHONE, "+972525550486", CallbackStatus.NO_ANSWER),  # the caller does not answer
        (STAFF_PHONE, "+972525550280", CallbackStatus.BUSY),  # the caller is busy
    ],
)
def test_a_leg_that_does_not_answer_or_is_busy_gives_that_outcome(
    api_app: Flask,
    sim: TwilioApiSimulator,
    twilio: TwilioClient,
    make_business,  # type: ignore[no-untyped-def]
    staff_phone: str,
    caller: str,
    outcome: CallbackStatus,
) -> None:
    staff = make_staff(make_business, phone=staff_phone)
    call_sid = voicemail(twilio, staff.number, caller=caller)

    started = call_back(api_app, staff, call_sid)
    sim.wait_for_call(str(started["call_sid"]))
    attempt = final_attempt(int(str(started["attempt_id"])))

    assert attempt.status is outcome
    assert not attempt.duration_seconds
    assert call_row(call_sid).follow_up is FollowUp.NO_ANSWER  # try again
    assert call_row(call_sid).first_reached_at is None


def test_duplicated_and_shuffled_callbacks_leave_one_reached_attempt(
    api_app: Flask, sim: TwilioApiSimulator, twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    sim.duplicate_callbacks = sim.shuffle_callbacks = True
    staff = make_staff(make_business)
    call_sid = voicemail(twilio, staff.number)

    started = call_back(api_app, staff, call_sid)
    placed = sim.wait_for_call(str(started["call_sid"]))
    attempt = final_attempt(int(str(started["attempt_id"])))

    assert len([e for e in placed.exchanges if e.kind == "status"]) == 8  # 4 events, twice
    assert attempt.status is CallbackStatus.REACHED
    assert attempt.duration_seconds == sim.talk_seconds
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        attempts = session.scalars(
            select(CallbackAttempt).where(CallbackAttempt.call_id == call.id)
        ).all()
        changes = session.scalars(
            select(FollowUpChange).where(FollowUpChange.call_id == call.id)
        ).all()
    assert len(attempts) == 1
    assert [c.to_status for c in changes] == [FollowUp.CALLED_BACK]  # counted once


# --- any order of Twilio's reports: one attempt, the same outcome --------------------------


def _reports(call_sid: str, dial: str, duration: str) -> list[tuple[Endpoint, dict[str, str]]]:
    base = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "Direction": "outbound-api"}
    return [
        (Endpoint.CALLBACK_STATUS, {**base, "CallStatus": "initiated", "SequenceNumber": "0"}),
        (Endpoint.CALLBACK_STATUS, {**base, "CallStatus": "ringing", "SequenceNumber": "1"}),
        (Endpoint.CALLBACK_STATUS, {**base, "CallStatus": "in-progress", "SequenceNumber": "2"}),
        (
            Endpoint.CALLBACK_DIAL,
            {
                **base,
                "CallStatus": "in-progress",
                "DialCallStatus": dial,
                "DialCallDuration": duration,
                "DialCallSid": "CA" + "1" * 32,
            },
        ),
        (
            Endpoint.CALLBACK_STATUS,
            {**base, "CallStatus": "completed", "CallDuration": "50", "SequenceNumber": "3"},
        ),
    ]


def _new_attempt(twilio: TwilioClient, staff: Staff) -> tuple[int, int]:
    call_sid = voicemail(twilio, staff.number)
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        user = session.scalar(select(User).where(User.email == staff.email))
        assert call is not None and user is not None
        return callbacks.request(session, call, user), call.id


@pytest.mark.parametrize(
    ("dial", "duration", "outcome"),
    [("completed", "37", CallbackStatus.REACHED), ("no-answer", "0", CallbackStatus.NO_ANSWER)],
)
def test_any_order_of_reports_gives_the_same_final_attempt(
    twilio: TwilioClient,
    make_business,  # type: ignore[no-untyped-def]
    dial: str,
    duration: str,
    outcome: CallbackStatus,
) -> None:
    staff = make_staff(make_business)
    orders = list(itertools.permutations(range(5)))
    random.Random(12).shuffle(orders)
    for order in orders[:24]:  # a sample of the 120 orders; each with a duplicate
        attempt_id, call_id = _new_attempt(twilio, staff)
        leg = "CA" + secrets.token_hex(16)
        reports = _reports(leg, dial, duration)
        for index in (*order, order[0]):
            endpoint, params = reports[index]
            answer = twilio.post(endpoint.path, params, query=f"attempt={attempt_id}")
            assert answer.status_code == 200
        attempt = final_attempt(attempt_id, timeout=0)
        assert attempt.status is outcome, order
        assert attempt.call_sid == leg
        assert attempt.duration_seconds == (int(duration) if outcome.value == "reached" else None)
        with session_scope() as session:
            changes = session.scalars(
                select(FollowUpChange).where(FollowUpChange.call_id == call_id)
            ).all()
        assert len(changes) == 1, order


def test_connect_dials_the_caller_and_a_finished_attempt_hangs_up(
    twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    staff = make_staff(make_business)
    attempt_id, _ = _new_attempt(twilio, staff)
    leg = "CA" + secrets.token_hex(16)
    params = {"CallSid": leg, "CallStatus": "in-progress", "From": staff.number, "To": STAFF_PHONE}

    answer = twilio.post(Endpoint.CALLBACK_CONNECT.path, params, query=f"attempt={attempt_id}")
    body = answer.get_data(as_text=True)
    assert answer.mimetype == "text/xml"
    assert f'<Dial action="/webhook/callback_dial?attempt={attempt_id}"' in body
    assert f'callerId="{staff.number}"' in body and f">{CALLER}</Number>" not in body
    assert f">{CALLER}</Dial>" in body

    # The staff leg is logged once, and no call row is made for it (no business's call).
    with session_scope() as session:
        assert session.scalar(select(Call).where(Call.call_sid == leg)) is None
    failed = {**params, "CallStatus": "failed"}
    twilio.post(Endpoint.CALLBACK_STATUS.path, failed, query=f"attempt={attempt_id}")
    again = twilio.post(Endpoint.CALLBACK_CONNECT.path, params, query=f"attempt={attempt_id}")
    assert "<Dial" not in again.get_data(as_text=True) and "<Hangup" in again.get_data(as_text=True)
    unknown = twilio.post(Endpoint.CALLBACK_CONNECT.path, params, query="attempt=2000000000")
    assert unknown.mimetype == "text/xml" and "<Hangup" in unknown.get_data(as_text=True)


def test_an_unsigned_callback_report_is_refused(twilio: TwilioClient) -> None:
    params = {"CallSid": "CA" + "2" * 32, "CallStatus": "completed"}
    answer = twilio.post(Endpoint.CALLBACK_STATUS.path, params, query="attempt=1", signed=False)
    assert answer.status_code == 403


# --- the state owners ----------------------------------------------------------------------


def test_transitions_only_move_forward_and_nothing_leaves_an_outcome() -> None:
    for current, targets in callbacks.TRANSITIONS.items():
        assert all(target.rank > current.rank for target in targets), current
        if current.is_final:
            assert not targets
    assert set(CALLBACK_OUTCOMES) == {s for s in CallbackStatus if s.is_final}
    for current, targets in followup.TRANSITIONS.items():
        assert current not in targets or current is FollowUp.NO_ANSWER
    assert followup.TRANSITIONS[FollowUp.RESOLVED] == {FollowUp.NEEDS_CALLBACK}


def test_an_outcome_is_counted_when_committed_never_when_rolled_back(
    twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    staff = make_staff(make_business)
    call_sid = voicemail(twilio, staff.number)

    def busy_count() -> float:
        value = REGISTRY.get_sample_value("moked_callbacks_total", {"outcome": "busy"})
        return value or 0.0

    before = busy_count()
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        callbacks.log_manual(session, call, None, CallbackStatus.BUSY)
        assert busy_count() == before  # not yet: the transaction may still fail
        session.rollback()
    assert busy_count() == before
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        callbacks.log_manual(session, call, None, CallbackStatus.BUSY)
    assert busy_count() == before + 1


def test_follow_up_changes_are_recorded_and_refused_when_not_allowed(
    twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    staff = make_staff(make_business)
    call_sid = voicemail(twilio, staff.number)
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == staff.email))
        call = followup.lock(session, call_row(call_sid).id)
        assert call is not None and user is not None
        assert call.follow_up is FollowUp.NEW
        assert followup.change(session, call, FollowUp.NEEDS_CALLBACK, user_id=user.id)
        assert not followup.change(session, call, FollowUp.NEEDS_CALLBACK, user_id=user.id)
        with pytest.raises(followup.FollowUpRefused):
            followup.change(session, call, FollowUp.NEW, user_id=user.id)
        callbacks.log_manual(session, call, user.id, CallbackStatus.NO_ANSWER)
        callbacks.log_manual(session, call, user.id, CallbackStatus.REACHED, duration_seconds=90)
        assert followup.set_handled(session, call, True, user_id=user.id)
        assert call.handled_at is not None and call.handled_by_id == user.id
        # A callback logged on a resolved call leaves it resolved.
        callbacks.log_manual(session, call, user.id, CallbackStatus.BUSY)
        assert call.follow_up is FollowUp.RESOLVED
        assert followup.set_handled(session, call, False, user_id=user.id)
        assert call.follow_up is FollowUp.NEEDS_CALLBACK and call.handled_at is None
        with pytest.raises(callbacks.CallbackRefused):
            callbacks.log_manual(session, call, user.id, CallbackStatus.RINGING)
    with session_scope() as session:
        changes = session.scalars(
            select(FollowUpChange)
            .where(FollowUpChange.call_id == call_row(call_sid).id)
            .order_by(FollowUpChange.id)
        ).all()
        assert [c.to_status for c in changes] == [
            FollowUp.NEEDS_CALLBACK,
            FollowUp.NO_ANSWER,
            FollowUp.CALLED_BACK,
            FollowUp.RESOLVED,
            FollowUp.NEEDS_CALLBACK,
        ]
        assert all(c.user_id is not None for c in changes)


def test_a_number_the_crm_offers_to_call_back_is_called_back(
    api_app: Flask, sim: TwilioApiSimulator, twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    """One rule for who can be called back (moked.callers.caller_number): a possible
    number in a range newer than phonenumbers' metadata gets the button and the call."""
    newer_range = "+972501234567"  # possible, not "valid" by phonenumbers' metadata
    staff = make_staff(make_business)
    call_sid = voicemail(twilio, staff.number, caller=newer_range)

    started = call_back(api_app, staff, call_sid)
    placed = sim.wait_for_call(str(started["call_sid"]))

    assert final_attempt(int(str(started["attempt_id"]))).status is CallbackStatus.REACHED
    assert placed.dial_number == newer_range


def test_a_callback_is_refused_without_a_staff_phone_or_with_a_withheld_caller(
    api_app: Flask, twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    no_phone = make_staff(make_business, phone=None)
    call_sid = voicemail(twilio, no_phone.number)
    answer = api_app.test_client().post(
        f"/api/v1/calls/{call_sid}/callback",
        headers={"Authorization": f"Bearer {no_phone.token}"},
    )
    assert answer.status_code == 422 and "phone" in answer.get_json()["message"]

    staff = make_staff(make_business)
    withheld = voicemail(twilio, staff.number, caller="anonymous")
    answer = api_app.test_client().post(
        f"/api/v1/calls/{withheld}/callback", headers={"Authorization": f"Bearer {staff.token}"}
    )
    assert answer.status_code == 422 and "withheld" in answer.get_json()["message"]


def test_describe_call_lists_the_attempts_and_matches_the_schema(
    api_app: Flask, twilio: TwilioClient, make_business, stack: StackUnderTest
) -> None:  # type: ignore[no-untyped-def]
    staff = make_staff(make_business)
    call_sid = voicemail(twilio, staff.number)
    logged = api_app.test_client().post(
        f"/api/v1/calls/{call_sid}/callback/log",
        json={"outcome": "reached", "duration_seconds": 75},
        headers={"Authorization": f"Bearer {staff.token}"},
    )
    assert logged.status_code == 201 and logged.get_json()["outcome"] == "reached"

    with session_scope() as session:
        call = session.scalar(
            select(Call).where(Call.call_sid == call_sid).options(*call_loading())
        )
        assert call is not None
        described = describe_call(call, stack.settings.recordings_dir)
    jsonschema.validate(described, json.loads(SCHEMA_PATH.read_text()))
    callback = described["callback"]
    assert callback["status"] == "called_back" and callback["first_reached_at"]
    assert callback["attempts"] == [
        {
            "at": callback["attempts"][0]["at"],
            "by": staff.email,
            "outcome": "reached",
            "status": "reached",
            "manual": True,
            "duration_seconds": 75,
        }
    ]
    shown = api_app.test_client().get(
        f"/api/v1/calls/{call_sid}", headers={"Authorization": f"Bearer {staff.token}"}
    )
    assert shown.get_json()["callback"] == callback


def test_staff_of_another_business_cannot_start_see_or_log_a_callback(
    api_app: Flask, sim: TwilioApiSimulator, twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    a, b = make_staff(make_business), make_staff(make_business)
    b_call = voicemail(twilio, b.number)
    placed_before = len(sim.calls())
    client = api_app.test_client()
    headers = {"Authorization": f"Bearer {a.token}"}

    assert client.post(f"/api/v1/calls/{b_call}/callback", headers=headers).status_code == 404
    logged = client.post(
        f"/api/v1/calls/{b_call}/callback/log", json={"outcome": "reached"}, headers=headers
    )
    assert logged.status_code == 404
    assert client.get(f"/api/v1/calls/{b_call}", headers=headers).status_code == 404
    assert len(sim.calls()) == placed_before  # Twilio was never asked
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == b_call))
        assert call is not None
        assert not session.scalars(
            select(CallbackAttempt).where(CallbackAttempt.call_id == call.id)
        ).all()


def test_attempts_twilio_never_finishes_are_failed_by_the_reconciler(
    twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    """The stack's reconciler runs the same step every second: whichever runs it first,
    the lost attempt ends failed, and the others are left alone."""
    staff = make_staff(make_business)
    lost, _ = _new_attempt(twilio, staff)
    talking, _ = _new_attempt(twilio, staff)
    fresh, _ = _new_attempt(twilio, staff)
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        for attempt_id, age, status in (
            (lost, dt.timedelta(minutes=11), CallStatus.RINGING),
            (talking, dt.timedelta(minutes=30), CallStatus.IN_PROGRESS),
            (fresh, dt.timedelta(minutes=1), CallStatus.RINGING),
        ):
            attempt = session.get(CallbackAttempt, attempt_id)
            assert attempt is not None
            attempt.started_at = now - age
            attempt.staff_status = status
    with session_scope() as session:
        callbacks.expire_stale(session, now)

    assert final_attempt(lost, timeout=0).status is CallbackStatus.FAILED
    assert final_attempt(lost, timeout=0).error
    assert final_attempt(talking, timeout=0).status is CallbackStatus.REQUESTED
    assert final_attempt(fresh, timeout=0).status is CallbackStatus.REQUESTED


def test_a_callback_report_answered_by_nginx_replays_to_the_same_attempt(
    stack: StackUnderTest,
) -> None:
    """nginx's fallback log keeps the URL's query: the replay names the attempt, and its
    event id is the live app's for the same request (logged once)."""
    from urllib.parse import urlencode

    from moked.intake import InboundEvent
    from moked.reconcile import parse_fallback_line
    from moked.twilio import signature

    settings = stack.settings
    params = {"CallSid": "CA" + "3" * 32, "CallStatus": "ringing", "SequenceNumber": "1"}
    path, query = Endpoint.CALLBACK_STATUS.path, "attempt=5"
    url = signature.signed_url(settings.public_base, path, query)
    signed = signature.sign(settings.twilio_auth_token.get_secret_value(), url, params)
    now = dt.datetime.now(dt.UTC)
    line = json.dumps(
        {
            "id": "r1",
            "time": now.isoformat(),
            "uri": f"{path}?{query}",
            "signature": signed,
            "status": "502",
            "body": urlencode(params),
        }
    )

    replayed = parse_fallback_line(line, settings)

    assert replayed is not None and replayed.flat[callbacks.ATTEMPT_PARAM] == "5"
    live = InboundEvent.signed(
        Endpoint.CALLBACK_STATUS,
        callbacks.with_attempt(Endpoint.CALLBACK_STATUS, dict(params), query),
        signed,
        received_at=now,
    )
    assert replayed.event_id == live.event_id


def test_app_down_nginx_hangs_the_staff_leg_up_and_the_report_is_replayed(
    stack: StackUnderTest, twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    staff = make_staff(make_business)
    attempt_id, _ = _new_attempt(twilio, staff)
    params = {
        "CallSid": "CA" + secrets.token_hex(16),
        "CallStatus": "in-progress",
        "From": staff.number,
        "To": STAFF_PHONE,
    }
    stack.supervisorctl("stop", "webhooks")
    try:
        connect = stack.post(Endpoint.CALLBACK_CONNECT.path, params, query=f"attempt={attempt_id}")
    finally:
        stack.supervisorctl("start", "webhooks")

    assert connect.status_code == 200 and connect.headers["X-Moked-Fallback"] == "nginx"
    assert connect.headers["Content-Type"].startswith("text/xml")
    assert "<Hangup" in connect.text and "<Dial" not in connect.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the reconciler replays nginx's log
        attempt = final_attempt(attempt_id, timeout=0)
        if attempt.answered_at is not None:
            break
        time.sleep(0.2)
    assert attempt.call_sid == params["CallSid"] and attempt.status is CallbackStatus.CONNECTING


def test_two_callbacks_requested_at_the_same_moment_make_one_attempt(
    twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    """Two staff (or two clicks) in the same instant: the second request waits for the
    first's transaction, then is refused; never two attempts ringing two phones."""
    staff = make_staff(make_business)
    call_sid = voicemail(twilio, staff.number)
    outcome: list[object] = []

    def second_request(pid_seen: threading.Event) -> None:
        with session_scope() as session:
            outcome.append(session.scalar(text("SELECT pg_backend_pid()")))
            pid_seen.set()
            call = session.scalar(select(Call).where(Call.call_sid == call_sid))
            user = session.scalar(select(User).where(User.email == staff.email))
            assert call is not None and user is not None
            try:
                outcome.append(callbacks.request(session, call, user))
            except callbacks.CallbackRefused as exc:
                outcome.append(exc)

    with session_scope() as first:
        call = first.scalar(select(Call).where(Call.call_sid == call_sid))
        user = first.scalar(select(User).where(User.email == staff.email))
        assert call is not None and user is not None
        first_id = callbacks.request(first, call, user)  # not committed yet
        pid_seen = threading.Event()
        thread = threading.Thread(target=second_request, args=(pid_seen,))
        thread.start()
        assert pid_seen.wait(10)
        # The second request is waiting on the call's row lock, not racing past it.
        deadline = time.monotonic() + 10
        with session_scope() as watcher:
            while True:
                waiting = watcher.scalar(
                    text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": outcome[0]},
                )
                watcher.rollback()
                if waiting == "Lock" or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        assert waiting == "Lock"
    thread.join(10)

    assert isinstance(outcome[1], callbacks.CallbackRefused), outcome
    with session_scope() as session:
        made = session.scalars(
            select(CallbackAttempt.id).join(Call).where(Call.call_sid == call_sid)
        ).all()
    assert made == [first_id]


def test_a_second_callback_while_one_is_under_way_is_refused(
    api_app: Flask, sim: TwilioApiSimulator, twilio: TwilioClient, make_business
) -> None:  # type: ignore[no-untyped-def]
    """A double click, or a colleague calling at the same time, rings nobody twice."""
    staff = make_staff(make_business)
    attempt_id, call_id = _new_attempt(twilio, staff)  # requested, Twilio not heard from
    with session_scope() as session:
        call = session.get(Call, call_id)
        assert call is not None
        call_sid = call.call_sid
    placed_before = len(sim.calls())

    again = api_app.test_client().post(
        f"/api/v1/calls/{call_sid}/callback", headers={"Authorization": f"Bearer {staff.token}"}
    )

    assert again.status_code == 422 and "under way" in again.get_json()["message"]
    assert len(sim.calls()) == placed_before
    assert final_attempt(attempt_id, timeout=0).status is CallbackStatus.REQUESTED
