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

Voice (`Calls.create`, what a callback from the CRM asks): `POST …/Calls.json` with To,
From, Url, Method, StatusCallback, StatusCallbackEvent, Timeout answers 201 with a Call
resource (status `queued`), then plays both legs as Twilio would: status callbacks for the
called phone (initiated, ringing, then answered, or busy / no-answer), the Url's TwiML
fetched with a signed POST once it answers, a `<Dial>` in it rings its number and posts
its `action` (DialCallStatus, DialCallSid, DialCallDuration), and `completed`. Every phone
answers but those ending in 0486 (no-answer) or 0280 (busy) (`no_answer` / `busy`).
`GET /simulator/calls`: every call placed, with each request made and its answer.

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
import random
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin
from xml.etree import ElementTree

import requests
from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

from moked.settings import get_settings
from moked.simulator.params import CallIdentity
from moked.twilio import segments
from moked.twilio.signature import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
ERRORS_DOC = "https://www.twilio.com/docs/errors/"
WHATSAPP_PREFIX = "whatsapp:"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
DEFAULT_NO_ANSWER = ("0486",)
DEFAULT_BUSY = ("0280",)
"""Phones (legs or `<Dial>` numbers) ending with these do not answer / are busy."""
TALK_SECONDS = 42
"""How long a connected `<Dial>` lasts (simulated time: nothing waits for it)."""
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
class Exchange:
    """One request the simulator made about a call (a callback or a TwiML fetch)."""

    kind: str
    """status, url (the TwiML), dial_action."""
    url: str
    params: dict[str, str]
    http_status: int | None
    content_type: str | None = None
    body: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "params": self.params,
            "http_status": self.http_status,
            "content_type": self.content_type,
            "body": self.body,
            "error": self.error,
        }


@dataclass(slots=True)
class OutboundCall:
    """A call placed through `Calls.create`, and what its legs did."""

    sid: str
    account_sid: str
    to: str
    from_: str
    url: str
    method: str
    status_callback: str | None
    status_events: tuple[str, ...]
    timeout: int
    date_created: dt.datetime
    status: str = "queued"
    duration: int | None = None
    dial_number: str | None = None
    dial_caller_id: str | None = None
    dial_status: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    done: bool = False

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}.json"

    def resource(self) -> dict[str, Any]:
        """The Call resource as Twilio's API answers it."""
        base = self.uri.removesuffix(".json")
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": email.utils.format_datetime(self.date_created),
            "date_updated": email.utils.format_datetime(self.date_created),
            "direction": "outbound-api",
            "duration": str(self.duration) if self.duration is not None else None,
            "end_time": None,
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": None,
            "status": self.status,
            "subresource_uris": {
                "notifications": f"{base}/Notifications.json",
                "recordings": f"{base}/Recordings.json",
                "payments": f"{base}/Payments.json",
                "events": f"{base}/Events.json",
                "siprec": f"{base}/Siprec.json",
                "streams": f"{base}/Streams.json",
                "user_defined_message_subscriptions": (
                    f"{base}/UserDefinedMessageSubscriptions.json"
                ),
                "user_defined_messages": f"{base}/UserDefinedMessages.json",
            },
            "to": self.to,
            "to_formatted": self.to,
            "trunk_sid": None,
            "uri": self.uri,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.resource(),
            "url": self.url,
            "status_callback": self.status_callback,
            "dial": {
                "number": self.dial_number,
                "caller_id": self.dial_caller_id,
                "status": self.dial_status,
            },
            "exchanges": [e.to_json() for e in self.exchanges],
            "done": self.done,
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
        no_answer: tuple[str, ...] = DEFAULT_NO_ANSWER,
        busy: tuple[str, ...] = DEFAULT_BUSY,
        talk_seconds: int = TALK_SECONDS,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.undeliverable = dict(undeliverable)
        self.callback_delay = callback_delay
        """Seconds between accepting a message and each of its callbacks."""
        self.unauthorized = 0
        self._messages: dict[str, Message] = {}
        self._calls: dict[str, OutboundCall] = {}
        self.no_answer = tuple(no_answer)
        self.busy = tuple(busy)
        self.talk_seconds = talk_seconds
        self.duplicate_callbacks = False
        """Post every status callback twice (Twilio retries), as a test may ask."""
        self.shuffle_callbacks = False
        """Hold a call's status callbacks to its end and post them in random order."""
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

    def calls(self) -> list[OutboundCall]:
        with self._lock:
            return list(self._calls.values())

    def call(self, sid: str) -> OutboundCall | None:
        with self._lock:
            return self._calls.get(sid)

    def wait_for_call(self, sid: str, timeout: float = 15.0) -> OutboundCall:
        """The call once both legs are over (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.call(sid)
            if found is not None and found.done:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sid}: still {found.status if found else 'unknown'}")
            time.sleep(0.02)

    def answer_for(self, number: str) -> str:
        """How a phone answers: in-progress (answers), busy or no-answer."""
        if number.endswith(self.busy):
            return "busy"
        if number.endswith(self.no_answer):
            return "no-answer"
        return "in-progress"

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

        @app.post(f"{base}/Calls.json")
        def create_call(account_sid: str) -> Response:
            if account_sid != self.account_sid:
                return _error(404, 20404, "The requested resource was not found")
            return self._create_call(account_sid)

        @app.get(f"{base}/Calls/<sid>.json")
        def fetch_call(account_sid: str, sid: str) -> Response:
            found = self.call(sid)
            if found is None or account_sid != found.account_sid:
                return _error(404, 20404, f"The requested resource {request.path} was not found")
            with self._lock:
                return jsonify(found.resource())

        @app.get("/simulator/calls")
        def call_listing() -> Response:
            to = request.args.get("to")
            with self._lock:
                items = [c.to_json() for c in self._calls.values() if not to or c.to == to]
            return jsonify({"calls": items})

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

    # --- voice: Calls.create and both legs ------------------------------------------------

    def _create_call(self, account_sid: str) -> Response:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return _error(failure.status, failure.code, failure.message)
        form = request.form
        to, from_, url = form.get("To", ""), form.get("From", ""), form.get("Url", "")
        if not to:
            return _error(400, 21201, "No 'To' number is specified")
        if not from_:
            return _error(400, 21213, "No 'From' number is specified")
        if not url and not form.get("Twiml") and not form.get("ApplicationSid"):
            return _error(400, 21205, "Url parameter is required.")
        if not E164.match(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not E164.match(from_):
            return _error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        if not url.startswith(("http://", "https://")):
            return _error(400, 21205, f"Url is not a valid URL: {url}")
        events = tuple(
            e.strip().lower()
            for value in form.getlist("StatusCallbackEvent")
            for e in value.split()
        )
        timeout = form.get("Timeout", "60")
        call = OutboundCall(
            sid="CA" + secrets.token_hex(16),
            account_sid=account_sid,
            to=to,
            from_=from_,
            url=url,
            method=(form.get("Method") or "POST").upper(),
            status_callback=form.get("StatusCallback") or None,
            status_events=events or ("completed",),
            timeout=int(timeout) if timeout.isdigit() else 60,
            date_created=dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        with self._lock:
            self._calls[call.sid] = call
        log.info("call %s to %s from %s (TwiML: %s)", call.sid, to, from_, url)
        response = jsonify(call.resource())  # as accepted: queued, before any leg moves
        response.status_code = 201
        thread = threading.Thread(
            target=self._play_call, args=(call,), name=f"call-{call.sid}", daemon=True
        )
        self._callback_threads = [t for t in self._callback_threads if t.is_alive()] + [thread]
        thread.start()
        return response

    def _signed_post(self, url: str, params: dict[str, str]) -> requests.Response:
        headers = {
            SIGNATURE_HEADER: sign(self.auth_token, url, params),
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        return requests.post(url, data=params, headers=headers, timeout=CALLBACK_TIMEOUT_SECONDS)

    def _exchange(
        self, call: OutboundCall, kind: str, url: str, params: dict[str, str]
    ) -> Exchange:
        try:
            answer = self._signed_post(url, params)
        except requests.RequestException as exc:
            log.warning("%s %s for %s got no answer: %s", kind, url, call.sid, exc)
            result = Exchange(kind, url, params, None, error=f"{type(exc).__name__}: {exc}")
        else:
            result = Exchange(
                kind,
                url,
                params,
                answer.status_code,
                answer.headers.get("Content-Type"),
                answer.text[:4000],
            )
        with self._lock:
            call.exchanges.append(result)
        return result

    def _play_call(self, call: OutboundCall) -> None:
        """Both legs, as Twilio plays them; status callbacks as statusCallbackEvent asks."""
        identity = CallIdentity(
            call.sid, call.account_sid, call.from_, call.to, None, "outbound-api"
        )
        clock = dt.datetime.now(dt.UTC)
        held: list[dict[str, str]] = []
        sequence = 0

        def status(call_status: str, event: str, duration: int | None = None) -> None:
            nonlocal sequence
            with self._lock:
                call.status = call_status
            if call.status_callback is None or event not in call.status_events:
                return
            params = identity.status_callback(call_status, sequence, clock, duration)
            params["CallbackSource"] = "call-progress-events"
            sequence += 1
            copies = 2 if self.duplicate_callbacks else 1
            for _ in range(copies):
                if self.shuffle_callbacks:
                    held.append(params)
                else:
                    self._exchange(call, "status", call.status_callback, params)

        try:
            time.sleep(self.callback_delay)
            status("initiated", "initiated")
            answer = self.answer_for(call.to)
            status("ringing", "ringing")
            clock += dt.timedelta(seconds=4)
            if answer != "in-progress":
                status(answer, "completed", 0)
                return
            status("in-progress", "answered")
            talked = self._run_twiml(call, identity)
            clock += dt.timedelta(seconds=talked + 2)
            with self._lock:
                call.duration = talked + 2
            status("completed", "completed", talked + 2)
        finally:
            if held:
                random.shuffle(held)
                for params in held:
                    self._exchange(call, "status", call.status_callback or "", params)
            with self._lock:
                call.done = True

    def _run_twiml(self, call: OutboundCall, identity: CallIdentity) -> int:
        """Fetch the answered leg's TwiML and play its `<Dial>`; seconds talked."""
        fetched = self._exchange(call, "url", call.url, identity.base("in-progress"))
        if fetched.http_status != 200 or not fetched.body:
            return 0
        try:
            root = ElementTree.fromstring(fetched.body)  # noqa: S314 (Moked's own TwiML)
        except ElementTree.ParseError:
            log.warning("call %s: TwiML is not XML (12100)", call.sid)
            return 0
        dial = root.find("Dial")
        if dial is None:
            return 0
        number_element = dial.find("Number")
        text = number_element.text if number_element is not None else dial.text
        number = (text or "").strip()
        answer = self.answer_for(number)
        dial_status = {"in-progress": "completed"}.get(answer, answer)
        talked = self.talk_seconds if answer == "in-progress" else 0
        with self._lock:
            call.dial_number = number
            call.dial_caller_id = dial.get("callerId")
            call.dial_status = dial_status
        action = dial.get("action")
        if action:
            params = identity.base("in-progress")
            params.update(
                {
                    "DialCallSid": "CA" + secrets.token_hex(16),
                    "DialCallStatus": dial_status,
                    "DialCallDuration": str(talked),
                    "DialBridged": "true" if talked else "false",
                }
            )
            self._exchange(call, "dial_action", urljoin(call.url, action), params)
        return talked

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
        "Twilio Messaging and Calls API simulator on %s (what was sent: %s/simulator/messages,"
        " calls placed: %s/simulator/calls)",
        simulator.url,
        simulator.url,
        simulator.url,
    )
    simulator.serve_forever()


if __name__ == "__main__":
    main()
