"""SMS and WhatsApp alerts as Twilio's own OpenAPI description allows them: the channel's
request, sent through twilio's client to Prism (tests/deploy/twilio_mock.py), which
answers 4xx for a request the spec does not allow."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from moked.db.models import Business
from moked.notify import alerts
from moked.notify.channels import DeliveryFailed, Envelope, twilio_messages
from moked.settings import Settings
from moked.statuses import Channel, Endpoint
from tests.deploy.twilio_mock import TwilioMock
from tests.harness import StackUnderTest


@pytest.fixture
def mock_settings(stack: StackUnderTest, twilio_mock: TwilioMock) -> Settings:
    return stack.settings.model_copy(update={"twilio_api_base": twilio_mock.base})


def envelope(settings: Settings, channel: Channel) -> Envelope:
    now = dt.datetime.now(dt.UTC)
    business = Business(name="מספרת דנה", language="he", timezone="Asia/Jerusalem")
    return Envelope(
        channel=channel,
        recipient="+972541234567",
        alerts=(alerts.sample(settings, business, now),),
        message_id="msg_prism",
        attempt=1,
        sent_at=now,
        sender="+97235550100",
        status_callback=settings.public_url(Endpoint.MESSAGE_STATUS.path),
    )


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.WHATSAPP])
def test_the_spec_accepts_the_channels_request(mock_settings: Settings, channel: Channel) -> None:
    try:
        receipt = twilio_messages.send(mock_settings, envelope(mock_settings, channel))
    except DeliveryFailed as exc:  # Prism's 4xx names what the spec does not allow
        pytest.fail(f"Prism refused the request: {exc.reason}")

    assert receipt.provider_id and receipt.provider_id.startswith(("SM", "MM"))


def test_prism_does_refuse_a_request_the_spec_does_not_allow(
    mock_settings: Settings, twilio_mock: TwilioMock
) -> None:
    """What makes the test above able to fail: a message without To is refused."""
    account = mock_settings.twilio_account_sid
    answer = requests.post(
        f"{twilio_mock.base}/2010-04-01/Accounts/{account}/Messages.json",
        data={"From": "+97235550100", "Body": "שלום"},
        auth=(account, mock_settings.twilio_auth_token.get_secret_value()),
        timeout=30,
    )

    assert answer.status_code in (400, 422), answer.text[:500]
