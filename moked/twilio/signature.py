"""X-Twilio-Signature, checked against the URL Twilio called, not the one Flask rebuilds.

Behind nginx Flask sees http://127.0.0.1:8000/..., and Werkzeug's `request.url` is an IRI
(percent-escapes decoded to Hebrew), either of which breaks the HMAC. The URL Twilio signed
is PUBLIC_HOST + the raw path + the raw query string, exactly as sent on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"


class FormParams(dict[str, list[str]]):
    """Form parameters with every value kept, and the getlist() twilio's validator uses,
    so a name sent twice is signed with both values, as Twilio does."""

    def getlist(self, key: str) -> list[str]:
        return self[key]


def signed_url(public_base: str, raw_path: str, raw_query: str = "") -> str:
    """The URL as Twilio called it: origin from PUBLIC_HOST, path and query untouched."""
    url = public_base.rstrip("/") + raw_path
    return f"{url}?{raw_query}" if raw_query else url


def is_valid(
    auth_token: str,
    url: str,
    params: Mapping[str, str | Sequence[str]],
    signature: str | None,
) -> bool:
    """True when `signature` is Twilio's for this URL and these POST parameters."""
    if not signature or not auth_token:
        return False
    # The mapping is passed as is: a MultiDict keeps repeated keys, which Twilio signs too.
    return bool(RequestValidator(auth_token).validate(url, params, signature))


def sign(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """Compute the signature as Twilio does (the simulator and tests play Twilio's part)."""
    return str(RequestValidator(auth_token).compute_signature(url, params))
