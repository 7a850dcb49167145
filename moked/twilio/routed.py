"""A Twilio REST client whose every product (api, monitor, ...) honours TWILIO_API_BASE.

Twilio serves each product from its own host (api.twilio.com for numbers,
monitor.twilio.com for alerts). With TWILIO_API_BASE set, every request goes to that one
origin instead, path and query untouched, so one mock served from Twilio's OpenAPI
description answers them all. The client keeps a log of what it sent (method, URL, form)
for reports and tests. Used by `moked provision` and `moked doctor`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from moked.settings import Settings

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 15.0
"""Twilio answers in well under a second; a stuck request must not hang a deployment."""


@dataclass(frozen=True, slots=True)
class SentRequest:
    method: str
    url: str
    data: dict[str, str] = field(default_factory=dict)


class RoutingHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """twilio's HTTP client, sending every request to `api_base` when one is configured."""

    def __init__(self, api_base: str = "", timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        super().__init__(timeout=timeout, max_retries=2)
        self.api_base = api_base.rstrip("/")
        self.sent: list[SentRequest] = []

    def route(self, url: str) -> str:
        if not self.api_base:
            return url
        base = urlsplit(self.api_base)
        parts = urlsplit(url)
        path = base.path.rstrip("/") + parts.path
        return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        routed = self.route(url)
        form = {str(k): str(v) for k, v in (data or {}).items()}
        self.sent.append(SentRequest(method=method.upper(), url=routed, data=form))
        log.debug("twilio %s %s %s", method.upper(), routed, sorted(form))
        return super().request(
            method, routed, params, data, headers, auth, timeout, allow_redirects
        )


def make_routed_client(settings: Settings, http_client: RoutingHttpClient | None = None) -> Client:
    """A REST client authenticated with the account SID and auth token."""
    token = settings.require_auth_token()
    http = http_client or RoutingHttpClient(settings.twilio_api_base)
    return Client(settings.twilio_account_sid, token, http_client=http)


def sent_requests(client: Client) -> list[SentRequest]:
    http: Any = client.http_client
    return list(http.sent) if isinstance(http, RoutingHttpClient) else []
