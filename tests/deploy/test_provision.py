"""`moked provision` against Twilio's own OpenAPI description (Prism validates requests)."""

from __future__ import annotations

import pytest
from twilio.base.exceptions import TwilioRestException

from moked import cli
from moked.provision import (
    NumberStatus,
    Target,
    TwilioNumber,
    TwilioNumbersApi,
    database_numbers,
    format_report,
    plan,
    provision,
)
from moked.settings import Settings, get_settings
from moked.twilio.routed import make_routed_client, sent_requests
from tests.deploy.twilio_mock import (
    EXAMPLE_BUSINESS,
    EXAMPLE_NUMBER,
    EXAMPLE_NUMBER_SID,
    TwilioMock,
)
from tests.harness import StackUnderTest

BUSINESS = EXAMPLE_BUSINESS


@pytest.fixture
def mock_settings(stack: StackUnderTest, twilio_mock: TwilioMock) -> Settings:
    return stack.settings.model_copy(update={"twilio_api_base": twilio_mock.base})


def test_target_is_the_public_host(mock_settings: Settings) -> None:
    target = Target.for_settings(mock_settings)
    base = mock_settings.public_base
    assert target.voice_url == base + "/webhook/incoming_call"
    assert target.status_callback == base + "/webhook/call_status"
    assert target.voice_fallback_url == base + "/twiml/fallback/incoming_call"
    assert {target.voice_method, target.status_callback_method} == {"POST"}
    assert target.voice_fallback_method == "POST"


def test_dry_run_lists_and_changes_nothing(mock_settings: Settings, example_business) -> None:  # type: ignore[no-untyped-def]
    client = make_routed_client(mock_settings)
    owned = database_numbers(BUSINESS)
    assert owned == [(BUSINESS, EXAMPLE_NUMBER)]

    report = provision(mock_settings, TwilioNumbersApi(client), owned)

    sent = sent_requests(client)
    assert sent and {r.method for r in sent} == {"GET"}, "a dry run only reads"
    assert all(r.url.startswith(mock_settings.twilio_api_base) for r in sent)
    assert "/IncomingPhoneNumbers.json" in sent[0].url
    (entry,) = report.numbers
    assert entry.status == NumberStatus.UPDATE
    assert entry.sid == EXAMPLE_NUMBER_SID
    assert entry.changes["voice_url"] == ["", mock_settings.public_url("/webhook/incoming_call")]
    assert not report.applied and not report.ok
    text = format_report(report)
    assert "dry run" in text and "would change" in text and EXAMPLE_NUMBER in text


def test_apply_sends_a_request_twilio_spec_accepts(
    mock_settings: Settings, example_business
) -> None:  # type: ignore[no-untyped-def]
    client = make_routed_client(mock_settings)
    report = provision(
        mock_settings, TwilioNumbersApi(client), database_numbers(BUSINESS), do_apply=True
    )
    # Prism answers 422 to any request its OpenAPI document does not allow, and the
    # client raises on it: reaching here means Twilio's spec accepted every update.
    (entry,) = report.numbers
    assert entry.status == NumberStatus.UPDATED and report.applied
    posts = [r for r in sent_requests(client) if r.method == "POST"]
    assert len(posts) == 1
    assert posts[0].url.endswith(f"/IncomingPhoneNumbers/{EXAMPLE_NUMBER_SID}.json")
    assert posts[0].data == {
        "VoiceUrl": mock_settings.public_url("/webhook/incoming_call"),
        "VoiceMethod": "POST",
        "StatusCallback": mock_settings.public_url("/webhook/call_status"),
        "StatusCallbackMethod": "POST",
        "VoiceFallbackUrl": mock_settings.public_url("/twiml/fallback/incoming_call"),
        "VoiceFallbackMethod": "POST",
    }


def test_the_mock_really_validates(mock_settings: Settings) -> None:
    """The other tests lean on this: a request outside Twilio's spec is refused."""
    client = make_routed_client(mock_settings)
    with pytest.raises(TwilioRestException) as refused:
        TwilioNumbersApi(client).update_number(EXAMPLE_NUMBER_SID, {"voice_method": "BOGUS"})
    assert refused.value.status == 422


def test_numbers_of_no_business_are_listed(mock_settings: Settings) -> None:
    report = plan(mock_settings, TwilioNumbersApi(make_routed_client(mock_settings)), [])
    (entry,) = report.numbers
    assert entry.phone_number == EXAMPLE_NUMBER and entry.business is None
    assert entry.status == NumberStatus.UNUSED  # the example has no voice URL


def test_a_number_of_a_business_missing_from_the_account(mock_settings: Settings) -> None:
    api = TwilioNumbersApi(make_routed_client(mock_settings))
    report = plan(mock_settings, api, [("Elsewhere Ltd", "+97235550199")], include_unowned=False)
    (entry,) = report.numbers
    assert entry.status == NumberStatus.MISSING and not report.ok
    assert "not a number of Twilio account" in entry.problems[0]


class FakeNumbers:
    def __init__(self, numbers: list[TwilioNumber]) -> None:
        self.numbers = numbers
        self.updates: list[tuple[str, dict[str, str]]] = []

    def list_numbers(self) -> list[TwilioNumber]:
        return self.numbers

    def update_number(self, sid: str, values: dict[str, str]) -> TwilioNumber:
        self.updates.append((sid, values))
        return self.numbers[0]


def test_old_deployment_hosts_are_named(mock_settings: Settings) -> None:
    old = "https://moked-old.replit.app"
    target = Target.for_settings(mock_settings)
    numbers = [
        TwilioNumber(
            sid="PN" + "1" * 32,
            phone_number="+97235550101",
            voice_url=old + "/webhook/incoming_call",
            voice_method="POST",
            voice_application_sid="AP" + "2" * 32,
        ),
        TwilioNumber(sid="PN" + "3" * 32, phone_number="+97235550102", **target.as_dict()),
        TwilioNumber(sid="PN" + "4" * 32, phone_number="+97235550103", voice_url=old + "/voice"),
    ]
    fake = FakeNumbers(numbers)
    owned = [("A", "+97235550101"), ("B", "+97235550102")]
    report = provision(mock_settings, fake, owned, do_apply=True)

    by_number = {n.phone_number: n for n in report.numbers}
    assert by_number["+97235550101"].status == NumberStatus.UPDATED
    assert by_number["+97235550101"].other_hosts == ["https://moked-old.replit.app"]
    assert by_number["+97235550102"].status == NumberStatus.OK
    assert by_number["+97235550103"].status == NumberStatus.ELSEWHERE
    ((sid, values),) = fake.updates
    assert sid == "PN" + "1" * 32
    assert values["voice_application_sid"] == ""  # an application would override the URLs
    assert values["voice_url"] == target.voice_url
    text = format_report(report)
    assert "points at another host: https://moked-old.replit.app" in text
    assert "2 number(s) point at another host" in text


def test_cli_dry_run(
    mock_settings: Settings,
    example_business,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TWILIO_API_BASE", mock_settings.twilio_api_base)
    get_settings.cache_clear()
    try:
        assert cli.main(["provision", "--business", BUSINESS]) == 0
    finally:
        monkeypatch.delenv("TWILIO_API_BASE")
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "UPDATE" in out and EXAMPLE_NUMBER in out and "--apply" in out
