"""A callback's `Calls.create` as Twilio's own OpenAPI description allows it: the request
moked.callbacks makes, sent through twilio's client to Prism (tests/deploy/twilio_mock.py),
which answers 4xx for a request the spec does not allow."""

from __future__ import annotations

import pytest
import requests

from moked import callbacks
from moked.settings import Settings
from moked.twilio.rest import TwilioApiError
from tests.deploy.twilio_mock import TwilioMock
from tests.harness import StackUnderTest


@pytest.fixture
def mock_settings(stack: StackUnderTest, twilio_mock: TwilioMock) -> Settings:
    return stack.settings.model_copy(update={"twilio_api_base": twilio_mock.base})


def test_the_spec_accepts_the_callbacks_calls_create(mock_settings: Settings) -> None:
    try:
        call_sid = callbacks.place(mock_settings, 41, "+972545550101", "+97235550100")
    except TwilioApiError as exc:  # Prism's 4xx names what the spec does not allow
        pytest.fail(f"Prism refused the request: {exc}")

    assert call_sid.startswith("CA")


def test_prism_does_refuse_a_call_the_spec_does_not_allow(
    mock_settings: Settings, twilio_mock: TwilioMock
) -> None:
    """What makes the test above able to fail: a call without To is refused."""
    account = mock_settings.twilio_account_sid
    answer = requests.post(
        f"{twilio_mock.base}/2010-04-01/Accounts/{account}/Calls.json",
        data={"From": "+97235550100", "Url": "https://moked.example/webhook/callback_connect"},
        auth=(account, mock_settings.twilio_auth_token.get_secret_value()),
        timeout=30,
    )

    assert answer.status_code in (400, 422), answer.text[:500]
