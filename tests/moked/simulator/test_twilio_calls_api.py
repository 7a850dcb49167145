"""The simulator's Calls API: Twilio's auth and refusals, the Call resource, and both legs
played against a real TwiML server on 127.0.0.1 (every request signed as Twilio signs)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import pytest
import requests
from flask import Flask, Response, request
from werkzeug.serving import make_server

from moked.simulator.twilio_api import TwilioApiSimulator
from moked.twilio.signature import SIGNATURE_HEADER, is_valid

ACCOUNT = "AC" + "5d" * 16
TOKEN = secrets.token_hex(16)
BUSINESS = "+97235550100"
STAFF = "+972545550101"
CALLER = "+972525550123"


class TwimlServer:
    """Answers the staff leg with `<Dial>` to `dial`; keeps every request and whether its
    signature was Twilio's."""

    def __init__(self, dial: str) -> None:
        self.requests: list[tuple[str, dict[str, str], bool]] = []
        app = Flask(__name__)

        @app.post("/<name>")
        def hook(name: str) -> Response:
            signed = is_valid(
                TOKEN, request.url, request.form, request.headers.get(SIGNATURE_HEADER)
            )
            self.requests.append((name, dict(request.form), signed))
            if name == "connect":
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?><Response>'
                    f'<Dial callerId="{BUSINESS}" action="/dial?attempt=1">{dial}</Dial>'
                    "</Response>"
                )
                return Response(body, content_type="text/xml")
            if name == "dial":
                return Response("<Response><Hangup/></Response>", content_type="text/xml")
            return Response("OK", content_type="text/plain")

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.base = f"http://127.0.0.1:{self._server.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def simulator() -> Iterator[TwilioApiSimulator]:
    with TwilioApiSimulator(ACCOUNT, TOKEN, callback_delay=0.0) as running:
        yield running


def create(simulator: TwilioApiSimulator, auth: tuple[str, str] | None = None, **form: object):  # type: ignore[no-untyped-def]
    return requests.post(
        f"{simulator.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json",
        data=form,
        auth=auth or (ACCOUNT, TOKEN),
        timeout=10,
    )


def test_calls_create_needs_twilios_auth_and_valid_numbers(
    simulator: TwilioApiSimulator,
) -> None:
    ok = {"To": STAFF, "From": BUSINESS, "Url": "http://127.0.0.1:9/connect"}
    assert create(simulator, auth=(ACCOUNT, "wrong"), **ok).status_code == 401
    assert create(simulator, **{**ok, "To": ""}).json()["code"] == 21201
    assert create(simulator, **{**ok, "From": ""}).json()["code"] == 21213
    assert create(simulator, **{**ok, "Url": ""}).json()["code"] == 21205
    assert create(simulator, **{**ok, "To": "054-555"}).json()["code"] == 21211
    assert create(simulator, **{**ok, "From": "business"}).json()["code"] == 21212
    assert simulator.calls() == []


@pytest.mark.parametrize(
    ("staff", "caller", "dial_status", "staff_statuses"),
    [
        (STAFF, CALLER, "completed", ["initiated", "ringing", "in-progress", "completed"]),
        (STAFF, "+972525550280", "busy", ["initiated", "ringing", "in-progress", "completed"]),
        ("+972545550486", CALLER, None, ["initiated", "ringing", "no-answer"]),
    ],
)
def test_both_legs_are_played_with_signed_requests(
    simulator: TwilioApiSimulator,
    staff: str,
    caller: str,
    dial_status: str | None,
    staff_statuses: list[str],
) -> None:
    server = TwimlServer(dial=caller)
    try:
        answer = create(
            simulator,
            To=staff,
            From=BUSINESS,
            Url=f"{server.base}/connect",
            StatusCallback=f"{server.base}/status?attempt=1",
            StatusCallbackEvent=["initiated", "ringing", "answered", "completed"],
        )
        assert answer.status_code == 201
        resource = answer.json()
        assert resource["sid"].startswith("CA") and resource["status"] == "queued"
        assert resource["direction"] == "outbound-api" and resource["to"] == staff
        call = simulator.wait_for_call(resource["sid"])
    finally:
        server.stop()

    assert all(signed for _, _, signed in server.requests), server.requests
    statuses = [form["CallStatus"] for name, form, _ in server.requests if name == "status"]
    assert statuses == staff_statuses
    dials = [form for name, form, _ in server.requests if name == "dial"]
    if dial_status is None:  # the staff phone never answered: no TwiML, no <Dial>
        assert not dials and not [r for r in server.requests if r[0] == "connect"]
        return
    (dial,) = dials
    assert dial["DialCallStatus"] == dial_status
    assert dial["DialCallDuration"] == ("42" if dial_status == "completed" else "0")
    assert (call.dial_number, call.dial_caller_id) == (caller, BUSINESS)
    fetched = requests.get(f"{simulator.url}/simulator/calls", params={"to": staff}, timeout=5)
    assert resource["sid"] in {c["sid"] for c in fetched.json()["calls"]}
