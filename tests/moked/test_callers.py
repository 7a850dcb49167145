"""Callers (moked.callers): a number within a business, blocked callers rejected on the hot
path and on the locked path, repeat counts per business, spam flags, `moked caller`."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable

import jsonschema
import pytest
from sqlalchemy import select
from werkzeug.test import TestResponse

from moked import callers
from moked.calls import SCHEMA_PATH, call_loading, describe_call
from moked.cli import main
from moked.db.models import Business, Call, Caller
from moked.db.session import session_scope
from moked.notify import alerts
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, new_recording_sid, unique_caller


def a_caller() -> str:
    """A valid mobile number no other test calls from."""
    return unique_caller()


def twiml(response: TestResponse) -> ET.Element:
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/xml"
    root = ET.fromstring(response.data)
    assert root.tag == "Response"
    return root


def ring(
    twilio: TwilioClient, business: Business, caller: str, *, end: bool = False, **extra: str
) -> tuple[str, ET.Element]:
    """`incoming_call` from `caller`; with `end`, the call's completed status callback too."""
    call_sid = new_call_sid()
    params = call_params(call_sid, business.numbers[0].e164, From=caller, Caller=caller, **extra)
    root = twiml(twilio.post("/webhook/incoming_call", params))
    if end:
        done = {**params, "CallStatus": "completed", "CallDuration": "3", "SequenceNumber": "2"}
        assert twilio.post("/webhook/call_status", done).status_code == 200
    return call_sid, root


def stored(call_sid: str) -> Call:
    with session_scope() as session:
        call = session.scalar(
            select(Call).options(*call_loading()).where(Call.call_sid == call_sid)
        )
        assert call is not None
        session.expunge_all()
        return call


def described(stack: StackUnderTest, call_sid: str) -> dict[str, object]:
    with session_scope() as session:
        call = session.scalar(
            select(Call).options(*call_loading()).where(Call.call_sid == call_sid)
        )
        assert call is not None
        return describe_call(call, stack.settings.recordings_dir)


def block(business: Business, number: str) -> None:
    with session_scope() as session:
        callers.block(session, business.id, number)


def unblock(business: Business, number: str) -> None:
    with session_scope() as session:
        callers.unblock(session, business.id, number)


def the_caller(business: Business, number: str) -> Caller | None:
    with session_scope() as session:
        caller = callers.find(session, business.id, number)
        session.expunge_all()
        return caller


# --- blocking ------------------------------------------------------------------------------


def test_a_blocked_caller_is_rejected_stored_as_blocked_and_unblocking_restores_the_greeting(
    twilio: TwilioClient, make_business: Callable[..., Business]
) -> None:
    business = make_business()
    number = a_caller()
    _, first = ring(twilio, business, number)
    assert "Record" in [verb.tag for verb in first]

    block(business, number)
    call_sid, root = ring(twilio, business, number)
    assert [verb.tag for verb in root] == ["Reject"]
    assert root[0].get("reason") == "busy"
    assert root.find("Record") is None and root.find("Play") is None and root.find("Say") is None
    assert stored(call_sid).blocked is True

    # Twilio's retry of the same request (the call exists: the locked path) is rejected too.
    params = call_params(call_sid, business.numbers[0].e164, From=number, Caller=number)
    retried = twiml(twilio.post("/webhook/incoming_call", params))
    assert [verb.tag for verb in retried] == ["Reject"]

    unblock(business, number)
    call_sid, root = ring(twilio, business, number)
    verbs = [verb.tag for verb in root]
    assert "Record" in verbs and "Reject" not in verbs
    assert stored(call_sid).blocked is False


def test_a_block_is_per_business(
    twilio: TwilioClient, make_business: Callable[..., Business]
) -> None:
    blocking, other = make_business(), make_business()
    number = a_caller()
    block(blocking, number)
    _, root = ring(twilio, other, number)
    assert "Record" in [verb.tag for verb in root]
    _, root = ring(twilio, blocking, number)
    assert [verb.tag for verb in root] == ["Reject"]


def test_a_blocked_caller_whose_status_callback_came_first_is_rejected(
    twilio: TwilioClient, make_business: Callable[..., Business]
) -> None:
    business = make_business()
    number = a_caller()
    block(business, number)
    call_sid = new_call_sid()
    params = call_params(call_sid, business.numbers[0].e164, From=number, Caller=number)
    early = {**params, "CallStatus": "in-progress", "SequenceNumber": "1"}
    assert twilio.post("/webhook/call_status", early).status_code == 200
    root = twiml(twilio.post("/webhook/incoming_call", params))
    assert [verb.tag for verb in root] == ["Reject"]
    assert stored(call_sid).blocked is True


def test_a_withheld_number_is_no_caller(
    stack: StackUnderTest, twilio: TwilioClient, make_business: Callable[..., Business]
) -> None:
    business = make_business()
    call_sid, root = ring(twilio, business, "anonymous")
    assert "Record" in [verb.tag for verb in root]
    description = described(stack, call_sid)
    assert description["caller"] is None and description["blocked"] is False
    with session_scope() as session:
        assert session.scalars(select(Caller).where(Caller.business_id == business.id)).all() == []


# --- counting ------------------------------------------------------------------------------


def test_repeat_counts_are_per_business(
    stack: StackUnderTest, twilio: TwilioClient, make_business: Callable[..., Business]
) -> None:
    first, second = make_business(), make_business()
    number = a_caller()
    a1, _ = ring(twilio, first, number)
    b1, _ = ring(twilio, second, number)
    a2, _ = ring(twilio, first, number)
    a3, _ = ring(twilio, first, number)

    with session_scope() as session:
        calls = {
            c.call_sid: c
            for c in session.scalars(select(Call).where(Call.call_sid.in_([a1, a2, a3, b1])))
        }
        assert [alerts.caller_calls(session, calls[sid]) for sid in (a1, a2, a3, b1)] == [
            1,
            2,
            3,
            1,
        ]
        by_id = callers.week_counts(session, calls.values())
        assert [by_id[calls[sid].id] for sid in (a1, a2, a3, b1)] == [1, 2, 3, 1]

    caller_a = described(stack, a1)["caller"]
    caller_b = described(stack, b1)["caller"]
    assert isinstance(caller_a, dict) and isinstance(caller_b, dict)
    assert (caller_a["number"], caller_a["calls"], caller_a["blocked"]) == (number, 3, False)
    assert (caller_b["number"], caller_b["calls"]) == (number, 1)
    assert caller_a["first_seen"] is not None and caller_a["name"] is None


def test_describe_call_caller_matches_the_schema(
    stack: StackUnderTest, twilio: TwilioClient, make_business: Callable[..., Business]
) -> None:
    business = make_business()
    number = a_caller()
    ring(twilio, business, number)
    with session_scope() as session:
        caller = callers.find(session, business.id, number)
        assert caller is not None
        callers.rename(session, caller, "  דנה   כהן ")
    block(business, number)
    call_sid, _ = ring(twilio, business, number, end=True)
    description = described(stack, call_sid)
    assert description["blocked"] is True
    assert description["caller"] == {
        "number": number,
        "calls": 2,
        "first_seen": description["caller"]["first_seen"],  # type: ignore[index]
        "name": "דנה כהן",
        "blocked": True,
    }
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class(schema, format_checker=validator_class.FORMAT_CHECKER).validate(description)
    with pytest.raises(jsonschema.ValidationError):
        validator_class(schema).validate({**description, "caller": {"number": number}})


# --- spam ----------------------------------------------------------------------------------


def flag(stack: StackUnderTest) -> None:
    """The reconciler's step (the stack's reconciler runs it too, by the same rule)."""
    callers.sweep(stack.settings)


def test_many_calls_without_a_message_flag_the_caller_as_likely_spam(
    stack: StackUnderTest, twilio: TwilioClient, make_business: Callable[..., Business]
) -> None:
    business = make_business()
    number = a_caller()
    for _ in range(stack.settings.spam_calls - 1):
        ring(twilio, business, number, end=True)
    ring(twilio, business, number)  # still ringing: not counted yet
    flag(stack)
    caller = the_caller(business, number)
    assert caller is not None and caller.flagged_spam_at is None

    ring(twilio, business, number, end=True)
    flag(stack)
    caller = the_caller(business, number)
    assert caller is not None and caller.flagged_spam_at is not None
    assert caller.blocked is False, "flagged, not blocked"

    unblock(business, number)  # staff judged it: the flag goes
    flag(stack)  # and the calls they judged do not flag it again
    caller = the_caller(business, number)
    assert caller is not None and caller.flagged_spam_at is None
    for _ in range(stack.settings.spam_calls):
        ring(twilio, business, number, end=True)
    flag(stack)  # new calls do
    caller = the_caller(business, number)
    assert caller is not None and caller.flagged_spam_at is not None


def leave_message(twilio: TwilioClient, business: Business, number: str) -> None:
    """A call from `number` that leaves a message, then ends."""
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    params = call_params(call_sid, business.numbers[0].e164, From=number, Caller=number)
    twiml(twilio.post("/webhook/incoming_call", params))
    action = {**params, "RecordingSid": recording_sid, "RecordingUrl": "https://x.invalid/r"}
    assert twilio.post("/webhook/handle_recording", action).status_code == 200
    done = {**params, "CallStatus": "completed", "CallDuration": "9", "SequenceNumber": "2"}
    assert twilio.post("/webhook/call_status", done).status_code == 200


def test_callers_who_leave_messages_are_not_spam(
    stack: StackUnderTest, twilio: TwilioClient, make_business: Callable[..., Business]
) -> None:
    business = make_business()
    talker, mixed = a_caller(), a_caller()
    for _ in range(stack.settings.spam_calls + 1):
        leave_message(twilio, business, talker)
    # One message among the silent calls; left first, so that the stack's reconciler, which
    # sweeps every second by the same rule, never sees the silent calls alone.
    leave_message(twilio, business, mixed)
    for _ in range(stack.settings.spam_calls):
        ring(twilio, business, mixed, end=True)
    flag(stack)
    for number in (talker, mixed):
        caller = the_caller(business, number)
        assert caller is not None and caller.flagged_spam_at is None, number


# --- moked caller --------------------------------------------------------------------------


def test_cli_blocks_unblocks_and_lists(
    stack: StackUnderTest,
    twilio: TwilioClient,
    make_business: Callable[..., Business],
    capsys: pytest.CaptureFixture[str],
) -> None:
    business = make_business()
    number = a_caller()

    assert main(["caller", "block", "--business", business.name, "--number", number]) == 0
    assert capsys.readouterr().out.strip() == f"blocked {number} for {business.name}"
    _, root = ring(twilio, business, number)
    assert [verb.tag for verb in root] == ["Reject"]

    assert main(["caller", "list", "--business", str(business.id)]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["number"] == number and listed["blocked"] is True and listed["calls"] == 1
    assert listed["blocked_at"] is not None

    assert main(["caller", "unblock", "--business", str(business.id), "--number", number]) == 0
    assert capsys.readouterr().out.strip() == f"unblocked {number} for {business.name}"
    assert main(["caller", "list", "--business", business.name]) == 0
    assert json.loads(capsys.readouterr().out) == []
    _, root = ring(twilio, business, number)
    assert "Record" in [verb.tag for verb in root]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["caller", "block", "--business", "no such business", "--number", "+972521234567"],
            "no business 'no such business'",
        ),
        (
            ["caller", "block", "--business", "{business}", "--number", "hello"],
            "not a valid phone number: 'hello'",
        ),
        (
            ["caller", "unblock", "--business", "{business}", "--number", "{number}"],
            "{number} has never called and is not blocked",
        ),
    ],
)
def test_cli_errors_are_one_line(
    stack: StackUnderTest,
    make_business: Callable[..., Business],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    business, number = make_business(), a_caller()
    assert main([a.format(business=business.name, number=number) for a in argv]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"moked: {message.format(number=number)}\n"
    assert captured.out == ""


def test_call_show_json_gives_the_caller(
    twilio: TwilioClient,
    make_business: Callable[..., Business],
    capsys: pytest.CaptureFixture[str],
) -> None:
    business = make_business()
    number = a_caller()
    ring(twilio, business, number)
    call_sid, _ = ring(twilio, business, number)
    capsys.readouterr()
    assert main(["call", "show", call_sid, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["blocked"] is False
    caller = shown["caller"]
    assert (caller["number"], caller["calls"], caller["name"], caller["blocked"]) == (
        number,
        2,
        None,
        False,
    )


def test_call_show_prints_the_caller_on_one_line(
    twilio: TwilioClient,
    make_business: Callable[..., Business],
    capsys: pytest.CaptureFixture[str],
) -> None:
    business = make_business()
    number = a_caller()
    call_sid, _ = ring(twilio, business, number)
    block(business, number)
    capsys.readouterr()
    assert main(["call", "show", call_sid]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("caller ")]
    assert f"{number} 1 call(s) since " in line and line.endswith(" blocked")


@pytest.mark.parametrize(
    ("sent", "key"),
    [
        ("+972521234567", "+972521234567"),
        ("+972501234567", "+972501234567"),  # possible, newer than the metadata: a caller
        ("+12025550123", "+12025550123"),
        ("anonymous", None),
        ("Restricted", None),
        ("+266696687", None),  # Twilio's anonymous marker
        ("+7378742833", None),  # and its restricted one
        ("client:alice", None),
        ("+1", None),
        ("", None),
        (None, None),
    ],
)
def test_what_is_a_caller(sent: str | None, key: str | None) -> None:
    assert callers.caller_number(sent) == key
