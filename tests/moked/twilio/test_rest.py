"""moked/twilio/rest.py: the few REST calls Moked makes, through twilio's own client,
against a loopback Twilio (no stack needed)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from moked.settings import Settings
from moked.twilio import rest
from tests.harness import make_test_settings
from tests.helpers import new_call_sid, new_recording_sid
from tests.services.transcriber.doubles import TwilioDouble


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_test_settings(Path(tmp_path_factory.mktemp("rest")))


@pytest.fixture(scope="module")
def twilio_api(settings: Settings) -> Iterator[TwilioDouble]:
    double = TwilioDouble(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
    ).start()
    yield double
    double.stop()


@pytest.fixture
def routed(settings: Settings, twilio_api: TwilioDouble) -> Settings:
    return settings.model_copy(update={"twilio_api_base": twilio_api.base})


def test_a_calls_recordings_are_listed_with_their_media_url(
    routed: Settings, twilio_api: TwilioDouble
) -> None:
    call_sid, first, second = new_call_sid(), new_recording_sid(), new_recording_sid()
    twilio_api.call_recordings[call_sid] = [
        twilio_api.recording_resource(call_sid, first, duration=12),
        twilio_api.recording_resource(call_sid, second, status="absent", duration=0),
    ]

    listed = rest.call_recordings(routed, rest.make_client(routed), call_sid)

    assert listed == [
        rest.RemoteRecording(first, call_sid, "completed", 12, twilio_api.recording_url(first)),
        rest.RemoteRecording(second, call_sid, "absent", 0, twilio_api.recording_url(second)),
    ]
    assert rest.call_recordings(routed, rest.make_client(routed), new_call_sid()) == []


@pytest.mark.parametrize("status", [401, 429, 503])
def test_an_error_answer_to_a_listing_is_a_twilio_api_error(
    routed: Settings, twilio_api: TwilioDouble, status: int
) -> None:
    """Listing pages raises a bare TwilioException for any answer but 200, not a
    TwilioRestException: it must still become TwilioApiError with the status."""
    twilio_api.listing_fails_with = status
    try:
        with pytest.raises(rest.TwilioApiError, match=str(status)):
            rest.call_recordings(routed, rest.make_client(routed), new_call_sid())
    finally:
        twilio_api.listing_fails_with = None


def test_wrong_credentials_and_no_twilio_are_twilio_api_errors(routed: Settings) -> None:
    revoked = routed.model_copy(update={"twilio_auth_token": SecretStr(secrets.token_hex(16))})
    with pytest.raises(rest.TwilioApiError, match="401"):
        rest.call_recordings(revoked, rest.make_client(revoked), new_call_sid())
    closed = routed.model_copy(update={"twilio_api_base": "http://127.0.0.1:9"})
    with pytest.raises(rest.TwilioApiError, match="unreachable"):
        rest.call_recordings(closed, rest.make_client(closed), new_call_sid())
    with pytest.raises(rest.TwilioApiError, match="unreachable"):
        rest.delete_recording(closed, rest.make_client(closed), new_recording_sid())


def test_deleting_a_recording_is_true_once_it_is_gone(
    routed: Settings, twilio_api: TwilioDouble
) -> None:
    recording_sid = new_recording_sid()
    twilio_api.publish(recording_sid, b"ID3 audio")
    client = rest.make_client(routed)

    assert rest.delete_recording(routed, client, recording_sid)
    assert twilio_api.deleted.count(recording_sid) == 1
    assert rest.delete_recording(routed, client, recording_sid)  # Twilio: 404, gone already
    assert rest.delete_recording(routed, client, new_recording_sid())  # never existed
    assert twilio_api.deleted.count(recording_sid) == 1

    revoked = routed.model_copy(update={"twilio_auth_token": SecretStr("wrong")})
    with pytest.raises(rest.TwilioApiError, match="401"):
        rest.delete_recording(revoked, rest.make_client(revoked), recording_sid)


def test_rest_is_enabled_only_with_real_looking_credentials(settings: Settings) -> None:
    assert rest.rest_enabled(settings)
    placeholder = settings.model_copy(update={"twilio_account_sid": rest.PLACEHOLDER_ACCOUNT_SID})
    assert not rest.rest_enabled(placeholder)
    assert not rest.rest_enabled(settings.model_copy(update={"twilio_auth_token": SecretStr("")}))
    assert not rest.rest_enabled(
        settings.model_copy(update={"twilio_account_sid": "XY" + "1" * 32})
    )
