"""Property-based: whatever Twilio (or an attacker) posts, a webhook never answers 5xx.

Signed requests with random, missing and malformed parameters (bad E.164, huge values,
invalid UTF-8, repeated keys, unknown CallSids) always get 200 with the promised content
type: TwiML (text/xml) from incoming_call and handle_recording, text/plain from the
others. Without a valid signature: always 403.
"""

from __future__ import annotations

import os
import secrets
import xml.etree.ElementTree as ET
from urllib.parse import quote_from_bytes

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from moked.statuses import Endpoint
from moked.twilio.signature import SIGNATURE_HEADER, sign
from tests.harness import StackUnderTest

EXAMPLES = int(os.environ.get("MOKED_FUZZ_EXAMPLES", "20"))
"""Kept small for `make test` (two shared cores); raise it for a deeper run."""
PROMISED = {
    Endpoint.INCOMING_CALL: "text/xml",
    Endpoint.HANDLE_RECORDING: "text/xml",
    Endpoint.RECORDING_STATUS: "text/plain",
    Endpoint.CALL_STATUS: "text/plain",
    Endpoint.TWILIO_ALERTS: "text/plain",
    Endpoint.MESSAGE_STATUS: "text/plain",
    Endpoint.CALLBACK_CONNECT: "text/xml",
    Endpoint.CALLBACK_DIAL: "text/xml",
    Endpoint.CALLBACK_STATUS: "text/plain",
}
TWILIO_KEYS = (
    "CallSid",
    "AccountSid",
    "From",
    "To",
    "Caller",
    "Called",
    "CallStatus",
    "Direction",
    "ApiVersion",
    "CallerName",
    "SequenceNumber",
    "Timestamp",
    "CallDuration",
    "RecordingSid",
    "RecordingUrl",
    "RecordingStatus",
    "RecordingDuration",
    "ErrorCode",
    "Digits",
    "Payload",
    "Level",
    "Sid",
    "MessageSid",
    "MessageStatus",
    "DialCallStatus",
    "DialCallDuration",
    "MokedAttempt",
)

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
sid = st.tuples(st.sampled_from(["CA", "RE", "AC", "XX"]), st.binary(min_size=16, max_size=16)).map(
    lambda t: t[0] + t[1].hex()
)  # valid-looking SIDs Moked has never seen
e164ish = st.one_of(
    st.from_regex(r"\+?[0-9]{0,25}", fullmatch=True),
    st.sampled_from(["", "anonymous", "+", "+972", "client:alice", "sip:a@b", "0000"]),
)
number = st.integers(min_value=-(2**70), max_value=2**70).map(str)
huge = st.integers(min_value=1_000, max_value=60_000).map(lambda n: "A" * n)
value = st.one_of(text, sid, e164ish, number, huge, st.binary(max_size=40))
key = st.one_of(st.sampled_from(TWILIO_KEYS), text.filter(bool))
pairs = st.lists(st.tuples(key, value), max_size=14)


def encode(pairs: list[tuple[str, str | bytes]]) -> bytes:
    """A form body; bytes values go raw, so invalid UTF-8 reaches the server."""
    parts = []
    for k, v in pairs:
        raw = v if isinstance(v, bytes) else v.encode("utf-8")
        parts.append(
            quote_from_bytes(k.encode("utf-8"), safe="") + "=" + quote_from_bytes(raw, safe="")
        )
    return "&".join(parts).encode("ascii")


def as_server_sees(body: bytes) -> dict[str, list[str]]:
    """The form as Werkzeug decodes it (invalid UTF-8 kept percent-quoted): what is signed."""
    environ = EnvironBuilder(
        method="POST", data=body, content_type="application/x-www-form-urlencoded"
    ).get_environ()
    return {k: list(v) for k, v in Request(environ).form.lists()}


class _Multi(dict[str, list[str]]):
    def getlist(self, key: str) -> list[str]:
        return self[key]


def post(stack: StackUnderTest, endpoint: Endpoint, body: bytes, signature: str | None):
    headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return requests.post(
        stack.base + endpoint.path, data=body, headers=headers, timeout=15, allow_redirects=False
    )


def signed(stack: StackUnderTest, endpoint: Endpoint, body: bytes) -> str:
    token = stack.settings.twilio_auth_token.get_secret_value()
    return sign(token, stack.base + endpoint.path, _Multi(as_server_sees(body)))


_log_offsets: dict[str, int] = {}


def _new_log_text(stack: StackUnderTest) -> str:
    """What the webhooks service logged since the last look."""
    path = stack.layout.log_dir / "webhooks.log"
    key = str(path)
    size = path.stat().st_size if path.exists() else 0
    start = _log_offsets.get(key, size)
    if size < start:
        start = 0
    _log_offsets[key] = size
    if size == start:
        return ""
    with path.open("rb") as handle:
        handle.seek(start)
        return handle.read(size - start).decode("utf-8", "replace")


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("endpoint", list(Endpoint))
@FUZZ
@given(form=pairs)
def test_signed_garbage_never_gets_a_5xx_or_the_wrong_content_type(
    stack: StackUnderTest, endpoint: Endpoint, form
):
    body = encode(form)
    _new_log_text(stack)  # start from here

    response = post(stack, endpoint, body, signed(stack, endpoint, body))

    assert response.status_code == 200, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].split(";")[0] == PROMISED[endpoint]
    # A 200 could hide a bug the last-resort handler turned into fallback TwiML, or an
    # event spooled because applying it raised: the service's log must show neither.
    new_log = _new_log_text(stack)
    assert "Traceback" not in new_log, new_log[-3000:]
    if PROMISED[endpoint] == "text/xml":
        assert ET.fromstring(response.content).tag == "Response"


@pytest.mark.parametrize("endpoint", list(Endpoint))
@FUZZ
@given(
    form=pairs,
    signature=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9+/=]{0,40}", fullmatch=True)),
)
def test_without_a_valid_signature_always_403(
    stack: StackUnderTest, endpoint: Endpoint, form, signature
):
    body = encode(form)

    response = post(stack, endpoint, body, signature)

    assert response.status_code == 403
    assert response.headers["Content-Type"].split(";")[0] == "text/plain"


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_signed_call_for_another_url_is_403(stack: StackUnderTest, endpoint: Endpoint):
    body = encode([("CallSid", "CA" + secrets.token_hex(16))])
    wrong_url = sign(
        stack.settings.twilio_auth_token.get_secret_value(),
        "https://old-deployment.replit.app" + endpoint.path,
        _Multi(as_server_sees(body)),
    )

    assert post(stack, endpoint, body, wrong_url).status_code == 403


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_a_body_larger_than_twilio_ever_sends_is_refused_without_a_5xx(
    stack: StackUnderTest, endpoint: Endpoint
):
    body = encode([("CallSid", "CA" + "0" * 32), ("Payload", "A" * 400_000)])

    response = post(stack, endpoint, body, signed(stack, endpoint, body))

    assert response.status_code < 500
