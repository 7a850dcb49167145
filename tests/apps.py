"""The apps in-process: Flask's test client against the test run's real Postgres and Redis.

Fast tests use these; whole-stack tests (nginx, gunicorn, workers, failures) use
`StackUnderTest` in tests/harness.py. Both play Twilio the same way: signed form posts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict
from werkzeug.test import TestResponse

from moked.settings import Settings
from moked.twilio.signature import SIGNATURE_HEADER, FormParams, sign

Params = Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]]


def _pairs(params: Params) -> list[tuple[str, str]]:
    if not isinstance(params, Mapping):
        return list(params)
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        values = [value] if isinstance(value, str) else list(value)
        pairs += [(key, v) for v in values]
    return pairs


class TwilioClient:
    """Posts to the webhooks app as Twilio does: form-encoded, signed over PUBLIC_HOST."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.client: FlaskClient = app.test_client()

    def post(
        self,
        path: str,
        params: Params,
        *,
        query: str = "",
        signed: bool = True,
        signature: str | None = None,
    ) -> TestResponse:
        pairs = _pairs(params)
        url = self.settings.public_base + path + (f"?{query}" if query else "")
        headers = {"User-Agent": "TwilioProxy/1.1"}
        if signed:
            multi: dict[str, list[str]] = {}
            for key, value in pairs:
                multi.setdefault(key, []).append(value)
            token = self.settings.twilio_auth_token.get_secret_value()
            headers[SIGNATURE_HEADER] = signature or sign(token, url, FormParams(multi))
        return self.client.post(
            path + (f"?{query}" if query else ""),
            data=MultiDict(pairs),
            headers=headers,
            content_type="application/x-www-form-urlencoded",
        )
