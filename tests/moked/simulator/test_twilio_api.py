"""The Messaging API simulator: Twilio's auth, request and answer shapes, and the signed
status callbacks it posts to a real receiver on 127.0.0.1."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import requests
from twilio.request_validator import RequestValidator

from moked.simulator.twilio_api import TwilioApiSimulator
from moked.stack.config import StackLayout, program_sections
from tests.harness import make_test_settings
from tests.moked.notify.receivers import WebhookReceiver

ACCOUNT = "AC" + "7c" * 16
TOKEN = secrets.token_hex(16)
FROM = "+97235550100"
TO = "+972541234567"


@pytest.fixture
def simulator() -> Iterator[TwilioApiSimulator]:
    with TwilioApiSimulator(ACCOUNT, TOKEN, callback_delay=0.0) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver().start()
    yield running
    running.stop()


def messages_url(simulator: TwilioApiSimulator, account: str = ACCOUNT) -> str:
    return f"{simulator.url}/2010-04-01/Accounts/{account}/Messages.json"


def create(
    simulator: TwilioApiSimulator, *, auth: tuple[str, str] | None = (ACCOUNT, TOKEN), **form: str
) -> requests.Response:
    data = {"To": TO, "From": FROM, "Body": "שלום"} | form
    return requests.post(messages_url(simulator), data=data, auth=auth, timeout=10)


def test_refuses_requests_without_the_accounts_credentials(simulator: TwilioApiSimulator) -> None:
    for auth in (None, (ACCOUNT, "wrong-token"), ("AC" + "0" * 32, TOKEN)):
        answer = create(simulator, auth=auth)
        assert answer.status_code == 401
        assert answer.json()["code"] == 20003
        assert "Basic" in answer.headers["WWW-Authenticate"]
    assert simulator.messages() == []
    assert simulator.unauthorized == 3


def test_answers_201_with_a_message_resource_shaped_like_twilios(
    simulator: TwilioApiSimulator,
) -> None:
    answer = create(simulator, Body="a" * 200)

    assert answer.status_code == 201
    message = answer.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", message["sid"])
    assert message["account_sid"] == ACCOUNT
    assert (message["to"], message["from"], message["body"]) == (TO, FROM, "a" * 200)
    assert message["status"] == "queued"
    assert message["direction"] == "outbound-api"
    assert message["num_segments"] == "2"
    assert message["api_version"] == "2010-04-01"
    assert message["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{message['sid']}.json"
    assert message["date_created"].endswith("+0000")


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"To": "054-123"}, 21211),
        ({"To": "whatsapp:0541234567"}, 21211),
        ({"From": "Moked"}, 21212),
        ({"To": ""}, 21604),
        ({"Body": ""}, 21602),
        ({"Body": "x" * 1601}, 21617),
    ],
)
def test_refuses_what_twilio_refuses_with_its_error_codes(
    simulator: TwilioApiSimulator, form: dict[str, str], code: int
) -> None:
    data = {"To": TO, "From": FROM, "Body": "שלום"} | form
    answer = requests.post(messages_url(simulator), data=data, auth=(ACCOUNT, TOKEN), timeout=10)

    assert answer.status_code == 400
    assert answer.json()["code"] == code
    assert answer.json()["status"] == 400
    assert simulator.messages() == []


def test_a_scripted_outage_answers_then_recovers(simulator: TwilioApiSimulator) -> None:
    simulator.fail_next(503, times=2)

    assert [create(simulator).status_code for _ in range(3)] == [503, 503, 201]


def callbacks_of(receiver: WebhookReceiver) -> list[dict[str, str]]:
    return [dict(parse_qsl(r.body.decode())) for r in receiver.requests]


def test_posts_signed_status_callbacks_sent_then_delivered(
    simulator: TwilioApiSimulator, receiver: WebhookReceiver
) -> None:
    sid = create(simulator, StatusCallback=receiver.url).json()["sid"]

    reported = simulator.wait_for_callbacks(sid, 2)

    assert [(c.status, c.http_status) for c in reported] == [("sent", 200), ("delivered", 200)]
    validator = RequestValidator(TOKEN)
    for request in receiver.requests:
        params = dict(parse_qsl(request.body.decode()))
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert validator.validate(receiver.url, params, request.headers["x-twilio-signature"])
        assert not RequestValidator("another-token").validate(
            receiver.url, params, request.headers["x-twilio-signature"]
        )
    sent, delivered = callbacks_of(receiver)
    assert sent == {
        "AccountSid": ACCOUNT,
        "ApiVersion": "2010-04-01",
        "From": FROM,
        "MessageSid": sid,
        "MessageStatus": "sent",
        "SmsSid": sid,
        "SmsStatus": "sent",
        "To": TO,
    }
    assert delivered["MessageStatus"] == "delivered"
    assert "ErrorCode" not in delivered
    fetched = requests.get(
        messages_url(simulator).removesuffix(".json") + f"/{sid}.json",
        auth=(ACCOUNT, TOKEN),
        timeout=10,
    )
    assert fetched.json()["status"] == "delivered"


def test_an_undeliverable_recipient_gets_undelivered_with_its_error_code(
    simulator: TwilioApiSimulator, receiver: WebhookReceiver
) -> None:
    to = "whatsapp:+972541230003"
    sid = create(simulator, To=to, From="whatsapp:" + FROM, StatusCallback=receiver.url).json()[
        "sid"
    ]

    simulator.wait_for_callbacks(sid, 2)

    sent, last = callbacks_of(receiver)
    assert (sent["MessageStatus"], last["MessageStatus"]) == ("sent", "undelivered")
    assert last["ErrorCode"] == "30003"
    assert last["To"] == to
    message = simulator.message(sid)
    assert message is not None and message.error_code == 30003


def test_lists_what_was_sent_for_people_and_tests(simulator: TwilioApiSimulator) -> None:
    first = create(simulator).json()["sid"]
    create(simulator, To="+972541239999")

    listing = requests.get(f"{simulator.url}/simulator/messages", timeout=10).json()
    only = requests.get(f"{simulator.url}/simulator/messages", params={"to": TO}, timeout=10).json()

    assert [m["to"] for m in listing["messages"]] == [TO, "+972541239999"]
    assert [m["sid"] for m in only["messages"]] == [first]
    assert (
        requests.get(
            messages_url(simulator).removesuffix(".json") + "/SM" + "0" * 32 + ".json",
            auth=(ACCOUNT, TOKEN),
            timeout=10,
        ).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("overrides", "runs"),
    [
        ({"twilio_account_sid": "AC" + "0" * 32, "twilio_api_base": ""}, True),
        ({"twilio_api_base": ""}, False),  # real-looking credentials: Twilio itself
        (
            {"twilio_account_sid": "AC" + "0" * 32, "twilio_api_base": "http://127.0.0.1:4010"},
            False,
        ),
    ],
)
def test_make_up_runs_the_simulator_only_without_twilio(
    tmp_path: Path, overrides: dict[str, object], runs: bool
) -> None:
    layout = StackLayout(settings=make_test_settings(tmp_path, **overrides), state_dir=tmp_path)

    names = re.findall(r"^\[program:([^\]]+)\]", "\n".join(program_sections(layout)), re.M)

    assert ("twilio-sim" in names) is runs
    if runs:
        section = next(s for s in program_sections(layout) if "[program:twilio-sim]" in s)
        assert "run-service twilio-sim" in section
