"""Twilio's Messaging REST API on loopback: what development and the tests send SMS and
WhatsApp alerts to instead of Twilio.

- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: HTTP basic auth with the account
  SID and auth token (401, Twilio's error 20003, otherwise); form fields To, From, Body,
  StatusCallback as Twilio takes them; To and From must be E.164 or `whatsapp:+E.164`
  (400 with Twilio's 21211 / 21212 otherwise). Answers 201 with a Message resource shaped
  like Twilio's, status `queued`.
- Then, in the background, the status callbacks Twilio would post to StatusCallback,
  form-encoded and signed (X-Twilio-Signature with the auth token): `sent`, then
  `delivered`, or `undelivered` with an ErrorCode for a recipient listed as undeliverable
  (by default a number ending in 0003 → 30003, 0005 → 30005, 0006 → 30006).
- `GET …/Messages/{Sid}.json`: the message as it is now.
- `GET /simulator/messages`: every message "sent", with its callbacks (no auth: loopback).

`TwilioApiSimulator(...).start()` for tests (`fail_next` scripts an outage); `main()` is
the development service (`scripts/run-service twilio-sim`, on TWILIO_SIM_PORT).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

from moked.settings import get_settings
from moked.twilio import segments
from moked.twilio.signature import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
ERRORS_DOC = "https://www.twilio.com/docs/errors/"
WHATSAPP_PREFIX = "whatsapp:"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
DEFAULT_UNDELIVERABLE: Mapping[str, int] = {"0003": 30003, "0005": 30005, "0006": 30006}
"""Recipients whose number ends with one of these get `undelivered` with that ErrorCode
(30003 unreachable handset, 30005 unknown handset, 30006 landline or unreachable carrier)."""
CALLBACK_TIMEOUT_SECONDS = 15.0
"""Twilio gives a status callback 15 s."""


@dataclass(frozen=True, slots=True)
class Callback:
    """One status callback the simulator posted."""

    status: str
    http_status: int | None
    """None when the request got no answer (refused, timeout)."""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "http_status": self.http_status, "error": self.error}


@dataclass(slots=True)
class Message:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None
    num_segments: int
    date_created: dt.datetime
    status: str = "queued"
    error_code: int | None = None
    date_updated: dt.datetime | None = None
    callbacks: list[Callback] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def resource(self) -> dict[str, Any]:
        """The Message resource as Twilio's API answers it."""
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": email.utils.format_datetime(self.date_created),
            "date_sent": None,
            "date_updated": email.utils.format_datetime(self.date_updated or self.date_created),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(self.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": self.uri.removesuffix(".json") + "/Media.json"},
            "to": self.to,
            "uri": self.uri,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.resource(),
            "status_callback": self.status_callback,
            "callbacks": [c.to_json() for c in self.callbacks],
        }


@dataclass(frozen=True, slots=True)
class ScriptedFailure:
    status: int
    code: int | None
    message: str


def error_body(status: int, code: int | None, message: str) -> dict[str, Any]:
    """Twilio's JSON error (what twilio's client turns into TwilioRestException)."""
    return {
        "code": code,
        "message": message,
        "more_info": f"{ERRORS_DOC}{code}" if code else None,
        "status": status,
    }


def _error(status: int, code: int | None, message: str) -> Response:
    response = jsonify(error_body(status, code, message))
    response.status_code = status
    return response


def _address_ok(value: str) -> bool:
    return bool(E164.match(value.removeprefix(WHATSAPP_PREFIX)))


class TwilioApiSimulator:
    """A threaded loopback server playing Twilio's Messaging API (see the module doc)."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        undeliverable: Mapping[str, int] = DEFAULT_UNDELIVERABLE,
        callback_delay: float = 0.05,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.undeliverable = dict(undeliverable)
        self.callback_delay = callback_delay
        """Seconds between accepting a message and each of its callbacks."""
        self.unauthorized = 0
        self._messages: dict[str, Message] = {}
        self._failures: list[ScriptedFailure] = []
        self._lock = threading.Lock()
        self._server: BaseWSGIServer = make_server(host, port, self._app(), threaded=True)
        self._thread: threading.Thread | None = None
        self._callback_threads: list[threading.Thread] = []

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def start(self) -> TwilioApiSimulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() returns at once
            name="twilio-api-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for thread in list(self._callback_threads):
            thread.join(timeout=CALLBACK_TIMEOUT_SECONDS)

    def __enter__(self) -> TwilioApiSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests script and read -------------------------------------------------------

    def fail_next(
        self, status: int, *, code: int | None = None, message: str = "", times: int = 1
    ) -> None:
        """The next `times` message requests get this answer (503: Twilio failing)."""
        with self._lock:
            self._failures += [
                ScriptedFailure(status, code, message or f"simulated HTTP {status}")
            ] * times

    def messages(self) -> list[Message]:
        with self._lock:
            return list(self._messages.values())

    def message(self, sid: str) -> Message | None:
        with self._lock:
            return self._messages.get(sid)

    def wait_for_callbacks(self, sid: str, count: int, timeout: float = 10.0) -> list[Callback]:
        """The message's callbacks once `count` have been posted (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = self._messages.get(sid)
                callbacks = list(found.callbacks) if found is not None else []
            if len(callbacks) >= count:
                return callbacks
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sid}: {len(callbacks)} of {count} callbacks posted")
            time.sleep(0.02)

    def outcome_for(self, to: str) -> tuple[str, int | None]:
        """The final status a message to `to` gets, with its ErrorCode."""
        digits = to.removeprefix(WHATSAPP_PREFIX)
        for suffix, code in self.undeliverable.items():
            if digits.endswith(suffix):
                return "undelivered", code
        return "delivered", None

    # --- the HTTP side --------------------------------------------------------------------

    def _authorized(self) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.account_sid}:{self.auth_token}".encode()
        return bool(self.auth_token) and hmac.compare_digest(decoded, expected)

    def _app(self) -> Flask:
        app = Flask(__name__)
        base = f"/{API_VERSION}/Accounts/<account_sid>"

        @app.before_request
        def authenticate() -> Response | None:
            if request.path.startswith(f"/{API_VERSION}/") and not self._authorized():
                self.unauthorized += 1
                response = _error(401, 20003, "Authenticate")
                response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
                return response
            return None

        @app.post(f"{base}/Messages.json")
        def create(account_sid: str) -> Response:
            if account_sid != self.account_sid:
                return _error(404, 20404, "The requested resource was not found")
            return self._create(account_sid)

        @app.get(f"{base}/Messages/<sid>.json")
        def fetch(account_sid: str, sid: str) -> Response:
            found = self.message(sid)
            if found is None or account_sid != found.account_sid:
                return _error(404, 20404, f"The requested resource {request.path} was not found")
            with self._lock:
                return jsonify(found.resource())

        @app.get("/simulator/messages")
        def listing() -> Response:
            to = request.args.get("to")
            with self._lock:
                items = [m.to_json() for m in self._messages.values() if not to or m.to == to]
            return jsonify({"messages": items})

        return app

    def _create(self, account_sid: str) -> Response:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return _error(failure.status, failure.code, failure.message)
        form = request.form
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        callback = form.get("StatusCallback") or None
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not from_:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        if not _address_ok(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not _address_ok(from_):
            return _error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        whatsapp = to.startswith(WHATSAPP_PREFIX)
        if whatsapp != from_.startswith(WHATSAPP_PREFIX):
            return _error(400, 63007, f"Twilio found no channel for the From address {from_}")
        if len(body) > segments.WHATSAPP_MAX_CHARACTERS:
            return _error(400, 21617, "The message body exceeds the 1600 character limit.")
        message = Message(
            sid="SM" + secrets.token_hex(16),
            account_sid=account_sid,
            to=to,
            from_=from_,
            body=body,
            status_callback=callback,
            num_segments=1 if whatsapp else segments.count(body),
            date_created=dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        with self._lock:
            self._messages[message.sid] = message
        log.info(
            "%s %s to %s from %s (%d segments): %s",
            "WhatsApp" if whatsapp else "SMS",
            message.sid,
            to,
            from_,
            message.num_segments,
            body.replace("\n", " | ")[:200],
        )
        thread = threading.Thread(
            target=self._report, args=(message.sid,), name=f"callbacks-{message.sid}", daemon=True
        )
        self._callback_threads = [t for t in self._callback_threads if t.is_alive()] + [thread]
        thread.start()
        response = jsonify(message.resource())
        response.status_code = 201
        return response

    # --- status callbacks -----------------------------------------------------------------

    def _report(self, sid: str) -> None:
        """Move the message on as a carrier would, posting each status as Twilio does."""
        found = self.message(sid)
        if found is None:
            return
        final, error_code = self.outcome_for(found.to)
        for status in ("sent", final):
            time.sleep(self.callback_delay)
            with self._lock:
                found.status = status
                found.date_updated = dt.datetime.now(dt.UTC).replace(microsecond=0)
                if status == final:
                    found.error_code = error_code
            if found.status_callback:
                result = self._post_callback(found, status, error_code if status == final else None)
                with self._lock:
                    found.callbacks.append(result)

    def _post_callback(self, message: Message, status: str, error_code: int | None) -> Callback:
        url = message.status_callback or ""
        params = {
            "AccountSid": message.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_,
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        headers = {
            SIGNATURE_HEADER: sign(self.auth_token, url, params),
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        try:
            answer = requests.post(
                url, data=params, headers=headers, timeout=CALLBACK_TIMEOUT_SECONDS
            )
        except requests.RequestException as exc:
            log.warning("status callback %s for %s got no answer: %s", status, message.sid, exc)
            return Callback(status, None, f"{type(exc).__name__}: {exc}")
        if answer.status_code >= 300:
            log.warning(
                "status callback %s for %s answered %s", status, message.sid, answer.status_code
            )
        return Callback(status, answer.status_code)


def main() -> None:
    """The development service: Twilio's Messaging API on 127.0.0.1:TWILIO_SIM_PORT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # each message is logged below
    settings = get_settings()
    simulator = TwilioApiSimulator(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        port=settings.twilio_sim_port,
    )
    log.info(
        "Twilio Messaging API simulator on %s (what was sent: %s/simulator/messages)",
        simulator.url,
        simulator.url,
    )
    simulator.serve_forever()


if __name__ == "__main__":
    main()
