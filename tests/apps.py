"""The apps in-process: Flask's test client against the test run's real Postgres and Redis.

Fast tests use these; whole-stack tests (nginx, gunicorn, workers, failures) use
`StackUnderTest` in tests/harness.py. Both play Twilio the same way: signed form posts.
"""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict
from werkzeug.test import TestResponse

from moked.settings import Settings
from tests.harness import FormInput, twilio_form


class TwilioClient:
    """Posts to the webhooks app as Twilio does: form-encoded, signed over PUBLIC_HOST."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.client: FlaskClient = app.test_client()

    def post(
        self,
        path: str,
        params: FormInput,
        *,
        query: str = "",
        signed: bool = True,
        signature: str | None = None,
    ) -> TestResponse:
        _url, pairs, headers = twilio_form(
            self.settings, path, params, query=query, signed=signed, signature=signature
        )
        return self.client.post(
            path + (f"?{query}" if query else ""),
            data=MultiDict(pairs),
            headers=headers,
            content_type="application/x-www-form-urlencoded",
        )
