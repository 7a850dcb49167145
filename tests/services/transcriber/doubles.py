"""Loopback servers playing Twilio's and OpenAI's parts over real HTTP.

- `TwilioDouble`: recording media as api.twilio.com serves it (HTTP basic auth, 404 until
  ready), a call's recordings list and recording deletion, in Twilio's JSON shapes.
- `OpenAICompatibleServer`: POST /v1/audio/transcriptions (multipart, Bearer auth), answered
  by the real local Whisper model: what a self-hosted OpenAI-compatible server does.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

API = "/2010-04-01/Accounts/(?P<account>AC[0-9a-f]{32})"
MEDIA = re.compile(API + r"/Recordings/(?P<sid>RE[0-9a-f]{32})(?P<ext>\.mp3|\.wav)?$")
DELETE = re.compile(API + r"/Recordings/(?P<sid>RE[0-9a-f]{32})\.json$")
CALL_RECORDINGS = re.compile(API + r"/Calls/(?P<call>CA[0-9a-f]{32})/Recordings\.json$")
CDN = re.compile(r"^/cdn/(?P<sid>RE[0-9a-f]{32})\?signature=ok$")


@dataclass
class Media:
    body: bytes
    content_type: str = "audio/mpeg"
    not_ready: int = 0
    """How many more GETs answer 404 before the file is 'ready'."""
    redirect_host: str | None = None
    """Answer 302 to a signed CDN URL on this host (as media hosts may), served without auth."""


@dataclass
class Seen:
    method: str
    path: str
    authorized: bool
    status: int
    sent_credentials: bool = False


@dataclass
class TwilioDouble:
    account_sid: str
    auth_token: str
    media: dict[str, Media] = field(default_factory=dict)
    call_recordings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    listing_fails_with: int | None = None
    """An HTTP status to answer a call's recordings list with (Twilio down, token revoked)."""
    seen: list[Seen] = field(default_factory=list)
    base: str = ""
    _server: ThreadingHTTPServer | None = None

    def recording_uri(self, recording_sid: str) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Recordings/{recording_sid}"

    def recording_url(self, recording_sid: str) -> str:
        """What Twilio sends as RecordingUrl (no extension)."""
        return self.base + self.recording_uri(recording_sid)

    def publish(
        self,
        recording_sid: str,
        body: bytes,
        *,
        not_ready: int = 0,
        content_type: str = "audio/mpeg",
    ) -> str:
        self.media[recording_sid] = Media(body, content_type, not_ready)
        return self.recording_url(recording_sid)

    def gets_of(self, recording_sid: str) -> list[Seen]:
        return [s for s in self.seen if s.method == "GET" and recording_sid in s.path]

    def _authorized(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"

    def handle(self, method: str, path: str, auth: str | None) -> tuple[int, str, bytes]:
        authorized = self._authorized(auth)
        if method == "GET" and (match := CDN.match(path)):
            media = self.media.get(match["sid"])
            status, ctype, body = (200, media.content_type, media.body) if media else (404, "", b"")
        else:
            status, ctype, body = self._route(method, path, authorized)
        self.seen.append(Seen(method, path, authorized, status, sent_credentials=auth is not None))
        return status, ctype, body

    def _error(self, status: int, code: int, message: str) -> tuple[int, str, bytes]:
        body = {"code": code, "message": message, "status": status}
        return status, "application/json", json.dumps(body).encode()

    def _route(self, method: str, path: str, authorized: bool) -> tuple[int, str, bytes]:
        if not authorized:
            return self._error(401, 20003, "Authenticate")
        if method == "GET" and (match := MEDIA.match(path)):
            media = self.media.get(match["sid"])
            if media is None or match["sid"] in self.deleted:
                return self._error(404, 20404, "The requested resource was not found")
            if media.not_ready > 0:
                media.not_ready -= 1
                return self._error(404, 20404, "The requested resource was not found")
            if media.redirect_host:
                port = self.base.rsplit(":", 1)[1]
                location = f"http://{media.redirect_host}:{port}/cdn/{match['sid']}?signature=ok"
                return 302, "text/plain", location.encode()
            return 200, media.content_type, media.body
        if method == "DELETE" and (match := DELETE.match(path)):
            if match["sid"] not in self.media or match["sid"] in self.deleted:
                return self._error(404, 20404, "The requested resource was not found")
            self.deleted.append(match["sid"])
            return 204, "application/json", b""
        if method == "GET" and (match := CALL_RECORDINGS.match(path.split("?")[0])):
            if self.listing_fails_with is not None:
                return self._error(self.listing_fails_with, 20500, "Service unavailable")
            records = self.call_recordings.get(match["call"], [])
            page = {
                "recordings": records,
                "first_page_uri": path,
                "next_page_uri": None,
                "previous_page_uri": None,
                "page": 0,
                "page_size": 50,
                "start": 0,
                "end": max(0, len(records) - 1),
                "uri": path,
            }
            return 200, "application/json", json.dumps(page).encode()
        return self._error(404, 20404, "The requested resource was not found")

    def recording_resource(
        self, call_sid: str, recording_sid: str, status: str = "completed", duration: int = 9
    ) -> dict[str, Any]:
        """A recording as Twilio's REST API describes it."""
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "call_sid": call_sid,
            "sid": recording_sid,
            "status": status,
            "duration": str(duration),
            "channels": 1,
            "source": "RecordVerb",
            "uri": self.recording_uri(recording_sid) + ".json",
            "date_created": "Sat, 28 Nov 2026 10:00:00 +0000",
            "date_updated": "Sat, 28 Nov 2026 10:00:09 +0000",
            "start_time": "Sat, 28 Nov 2026 10:00:00 +0000",
        }

    def start(self) -> TwilioDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                status, ctype, body = double.handle(
                    self.command, self.path, self.headers.get("Authorization")
                )
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", body.decode())
                    body = b""
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _serve
            do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class Listener:
    """A loopback HTTP server an attacker points a RecordingUrl at: it notes every request
    (Host, path, Authorization) and answers `redirect_to` with a 302 when set, else 404."""

    address: str = "127.0.0.1"
    redirect_to: str | None = None
    heard: list[tuple[str, str, str | None]] = field(default_factory=list)
    port: int = 0

    def start(self) -> ThreadingHTTPServer:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                heard = (self.headers.get("Host", ""), self.path, self.headers.get("Authorization"))
                listener.heard.append(heard)
                self.send_response(302 if listener.redirect_to else 404)
                if listener.redirect_to:
                    self.send_header("Location", listener.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((self.address, 0), Handler)
        self.port = server.server_address[1]
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return server


@dataclass
class TranscriptionRequest:
    authorization: str | None
    model: str | None
    language: str | None
    filename: str | None
    size: int


class OpenAICompatibleServer:
    """POST /v1/audio/transcriptions, answered with `transcribe(path, language) -> text`, and
    POST /v1/chat/completions, answered with `chat(request body) -> the reply's content`
    (a JSON text for structured output), as OpenAI's API shapes them."""

    def __init__(
        self,
        api_key: str,
        transcribe: Callable[[Path, str], str],
        chat: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.transcribe = transcribe
        self.chat = chat
        self.chats: list[dict[str, Any]] = []
        """Every chat completion request's JSON body, in order."""
        self.requests: list[TranscriptionRequest] = []
        self.fail_with: tuple[int, str] | None = None
        """(status, message) to answer instead of transcribing."""
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._respond(request)
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return self._chat(request)
        if request.method != "POST" or request.path != "/v1/audio/transcriptions":
            return _json({"error": {"message": "not found", "type": "invalid_request_error"}}, 404)
        upload = request.files.get("file")
        body = upload.read() if upload else b""
        self.requests.append(
            TranscriptionRequest(
                authorization=request.headers.get("Authorization"),
                model=request.form.get("model"),
                language=request.form.get("language"),
                filename=upload.filename if upload else None,
                size=len(body),
            )
        )
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json({"error": {"message": "bad key", "type": "invalid_api_key"}}, 401)
        if self.fail_with is not None:
            status, message = self.fail_with
            error = {"message": message, "type": "invalid_request_error", "code": None}
            return _json({"error": error}, status)
        if upload is None or not request.form.get("model"):
            return _json({"error": {"message": "file and model are required"}}, 400)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / (Path(upload.filename or "audio").name or "audio")
            path.write_bytes(body)
            text = self.transcribe(path, request.form.get("language") or "en")
        return _json({"text": text}, 200)

    def _chat(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        self.chats.append(body)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json({"error": {"message": "bad key", "type": "invalid_api_key"}}, 401)
        if self.chat is None or not body.get("model") or not body.get("messages"):
            return _json({"error": {"message": "model and messages are required"}}, 400)
        content = self.chat(body)
        return _json(
            {
                "id": "chatcmpl-" + str(len(self.chats)),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
            200,
        )

    def start(self) -> OpenAICompatibleServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()


def _json(data: Any, status: int) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")
