"""Twilio's REST API, through the official client: the few calls Moked makes.

`TWILIO_API_BASE` replaces Twilio's origin (a loopback mock in tests); empty = Twilio's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from moked.settings import Settings
from moked.twilio.routed import RoutingHttpClient, make_routed_client

log = logging.getLogger(__name__)

TWILIO_API_ORIGIN = "https://api.twilio.com"
REST_TIMEOUT_SECONDS = 10.0
PLACEHOLDER_ACCOUNT_SID = "AC" + "0" * 32


class TwilioApiError(RuntimeError):
    """Twilio's API could not be reached or refused the request; the message says why."""


@dataclass(frozen=True, slots=True)
class RemoteRecording:
    sid: str
    call_sid: str
    status: str
    duration_seconds: int | None
    media_url: str
    """The recording's URL without extension, as Twilio's RecordingUrl parameter gives it."""


def rest_enabled(settings: Settings) -> bool:
    """True when real-looking credentials are configured (not the development placeholder)."""
    return bool(settings.twilio_auth_token.get_secret_value()) and (
        settings.twilio_account_sid.startswith("AC")
        and settings.twilio_account_sid != PLACEHOLDER_ACCOUNT_SID
    )


def simulator_base(settings: Settings) -> str:
    """The built-in simulator's Twilio REST API (moked.simulator.twilio_api)."""
    return f"http://127.0.0.1:{settings.twilio_sim_port}"


def uses_simulator(settings: Settings) -> bool:
    """Development without real credentials: messages go to the simulator, not Twilio."""
    return (
        not settings.is_production and not settings.twilio_api_base and not rest_enabled(settings)
    )


def messaging_settings(settings: Settings) -> Settings:
    """The settings SMS and WhatsApp alerts are sent with. An explicit TWILIO_API_BASE
    wins (tests point it at a mock); in development without real credentials the
    simulator plays Twilio, so `make up` shows what would have been sent. Only the
    Messaging channel uses this: the reconciler never asks the simulator for recordings."""
    if not uses_simulator(settings):
        return settings
    return settings.model_copy(update={"twilio_api_base": simulator_base(settings)})


def voice_settings(settings: Settings) -> Settings:
    """The settings callbacks (`Calls.create`, moked.callbacks) are placed with: like
    `messaging_settings`, the simulator plays Twilio in development without credentials,
    so the whole callback loop runs offline under `make up`."""
    return messaging_settings(settings)


def api_origin(settings: Settings) -> str:
    return (settings.twilio_api_base or TWILIO_API_ORIGIN).rstrip("/")


def make_client(settings: Settings) -> Client:
    """The one Twilio client factory: every product's host routed to TWILIO_API_BASE if set."""
    return make_routed_client(
        settings, RoutingHttpClient(settings.twilio_api_base, timeout=REST_TIMEOUT_SECONDS)
    )


def _media_url(settings: Settings, uri: str | None, sid: str) -> str:
    if uri:
        return api_origin(settings) + uri.removesuffix(".json")
    account = settings.twilio_account_sid
    return f"{api_origin(settings)}/2010-04-01/Accounts/{account}/Recordings/{sid}"


def call_recordings(settings: Settings, client: Client, call_sid: str) -> list[RemoteRecording]:
    """Every recording Twilio holds for the call."""
    try:
        records = (
            client.api.v2010.accounts(settings.twilio_account_sid)
            .calls(call_sid)
            .recordings.list(limit=20)
        )
    except TwilioRestException as exc:
        if exc.status == 404:
            return []
        raise TwilioApiError(
            f"Twilio answered {exc.status} listing recordings of {call_sid}"
        ) from exc
    except TwilioException as exc:
        # Listing pages raises a bare TwilioException("Unable to fetch page", response) for
        # any answer but 200 (401, 429, 5xx), not a TwilioRestException.
        response = exc.args[1] if len(exc.args) > 1 else None
        status = getattr(response, "status_code", "?")
        raise TwilioApiError(f"Twilio answered {status} listing recordings of {call_sid}") from exc
    except OSError as exc:  # requests' ConnectionError and timeouts are OSErrors
        raise TwilioApiError(f"Twilio's API is unreachable: {exc}") from exc
    result = []
    for record in records:
        sid = str(record.sid or "")
        if not sid:
            continue
        duration = record.duration
        result.append(
            RemoteRecording(
                sid=sid,
                call_sid=str(record.call_sid or call_sid),
                status=str(record.status or ""),
                duration_seconds=int(duration) if duration not in (None, "") else None,
                media_url=_media_url(settings, record.uri, sid),
            )
        )
    return result


def delete_recording(settings: Settings, client: Client, recording_sid: str) -> bool:
    """Delete the recording's media from Twilio. True when gone (deleted now or before)."""
    try:
        client.api.v2010.accounts(settings.twilio_account_sid).recordings(recording_sid).delete()
    except TwilioRestException as exc:
        if exc.status == 404:
            return True
        raise TwilioApiError(f"Twilio answered {exc.status} deleting {recording_sid}") from exc
    except OSError as exc:
        raise TwilioApiError(f"Twilio's API is unreachable: {exc}") from exc
    return True
