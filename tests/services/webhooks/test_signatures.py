"""X-Twilio-Signature on every webhook: Twilio's real scheme accepted, anything else 403."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote

import pytest
import requests

from moked.statuses import Endpoint
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, new_recording_sid

ENDPOINTS = [e.path for e in Endpoint]


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's scheme written out independently of the library under test."""
    payload = url + "".join(k + v for k, v in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def params_for(stack: StackUnderTest) -> dict[str, str]:
    return call_params(new_call_sid(), "+97235550199", RecordingSid=new_recording_sid())


@pytest.mark.parametrize("path", ENDPOINTS)
def test_missing_signature_is_403(stack: StackUnderTest, path: str) -> None:
    response = stack.post(path, params_for(stack), signed=False)
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_forged_signature_is_403(stack: StackUnderTest, path: str) -> None:
    forged = base64.b64encode(b"x" * 20).decode()
    response = stack.post(path, params_for(stack), signature=forged)
    assert response.status_code == 403


def test_signature_for_other_params_is_403(stack: StackUnderTest) -> None:
    params = params_for(stack)
    url = stack.base + Endpoint.INCOMING_CALL.path
    signature = twilio_signature(
        stack.settings.twilio_auth_token.get_secret_value(), url, list(params.items())
    )
    params["From"] = "+15550000000"  # tampered after signing
    response = stack.post(Endpoint.INCOMING_CALL.path, params, signature=signature)
    assert response.status_code == 403


def test_signature_with_wrong_token_is_403(stack: StackUnderTest) -> None:
    params = params_for(stack)
    url = stack.base + Endpoint.CALL_STATUS.path
    signature = twilio_signature("not-the-token", url, list(params.items()))
    response = stack.post(Endpoint.CALL_STATUS.path, params, signature=signature)
    assert response.status_code == 403


@pytest.mark.parametrize("path", ENDPOINTS)
def test_independently_computed_signature_is_accepted(stack: StackUnderTest, path: str) -> None:
    params = params_for(stack)
    url = stack.base + path
    signature = twilio_signature(
        stack.settings.twilio_auth_token.get_secret_value(), url, list(params.items())
    )
    response = stack.post(path, params, signature=signature)
    assert response.status_code == 200


def test_hebrew_query_string_is_signed_as_sent(stack: StackUnderTest) -> None:
    """Twilio signs the percent-encoded URL; Werkzeug's IRI (decoded Hebrew) would not match."""
    query = "business=" + quote("מוקד ירושלים") + "&lang=he"
    url = f"{stack.base}{Endpoint.INCOMING_CALL.path}?{query}"
    params = params_for(stack)
    signature = twilio_signature(
        stack.settings.twilio_auth_token.get_secret_value(), url, list(params.items())
    )
    response = stack.post(Endpoint.INCOMING_CALL.path, params, query=query, signature=signature)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")

    decoded = f"{stack.base}{Endpoint.INCOMING_CALL.path}?business=מוקד ירושלים&lang=he"
    wrong = twilio_signature(
        stack.settings.twilio_auth_token.get_secret_value(), decoded, list(params.items())
    )
    response = stack.post(Endpoint.INCOMING_CALL.path, params, query=query, signature=wrong)
    assert response.status_code == 403


def test_repeated_keys_are_signed_like_twilio(stack: StackUnderTest) -> None:
    pairs = [*params_for(stack).items(), ("Digits", "1"), ("Digits", "2")]
    url = stack.base + Endpoint.CALL_STATUS.path
    signature = twilio_signature(stack.settings.twilio_auth_token.get_secret_value(), url, pairs)
    response = stack.post(Endpoint.CALL_STATUS.path, pairs, signature=signature)
    assert response.status_code == 200


def test_get_is_not_allowed_and_never_redirects(stack: StackUnderTest) -> None:
    for path in ENDPOINTS:
        response = requests.get(stack.base + path, timeout=5, allow_redirects=False)
        assert response.status_code in (403, 405), path
        assert not 300 <= response.status_code < 400


def test_trailing_slash_does_not_redirect(stack: StackUnderTest) -> None:
    response = stack.post(Endpoint.CALL_STATUS.path + "/", params_for(stack))
    assert not 300 <= response.status_code < 400
