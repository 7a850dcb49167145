"""Twilio's recording media, served on loopback as api.twilio.com serves it.

`GET /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}[.mp3|.wav]`:
- HTTP basic auth with AccountSid:AuthToken, else 401 (new accounts enforce it);
- 404 (Twilio's JSON error 20404) until the recording is ready: the Record action may
  arrive before the file exists, and only the `completed` status callback says it does;
- `.mp3` is audio/mpeg, `.wav` or no extension is audio/x-wav, as Twilio answers.

Recordings are kept in memory, or in a directory shared with simulators in other
processes (the load tool runs its simulated callers in its own process): a recording is
ready once `{RecordingSid}.wav` and `.mp3` exist there.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

from moked.simulator.audio import Voicemail

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>AC[0-9a-fA-F]{32})/Recordings/"
    r"(?P<sid>RE[0-9a-fA-F]{32})(?P<ext>\.mp3|\.wav)?$"
)
CONTENT_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/x-wav", "": "audio/x-wav"}


class MediaHost(Protocol):
    """Where a simulated call puts its recording and which URL Twilio would give for it."""

    def url_for(self, recording_sid: str) -> str: ...

    def publish(self, recording_sid: str, voicemail: Voicemail) -> None: ...


def recording_path(account_sid: str, recording_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Recordings/{recording_sid}"


class SharedDirectoryMedia:
    """A MediaHost for a simulator in another process than the server: files in a directory."""

    def __init__(self, directory: Path, base_url: str, account_sid: str) -> None:
        self.directory = directory
        self.base_url = base_url.rstrip("/")
        self.account_sid = account_sid

    def url_for(self, recording_sid: str) -> str:
        return self.base_url + recording_path(self.account_sid, recording_sid)

    def publish(self, recording_sid: str, voicemail: Voicemail) -> None:
        for ext, data in ((".wav", voicemail.wav), (".mp3", voicemail.mp3)):
            target = self.directory / f"{recording_sid}{ext}"
            partial = target.with_suffix(ext + ".part")
            partial.write_bytes(data)
            os.replace(partial, target)


class MediaServer:
    """A threaded HTTP server on 127.0.0.1 serving recordings the way Twilio does."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        directory: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.account_sid = account_sid
        self._credentials = f"{account_sid}:{auth_token}".encode()
        self.directory = directory
        self._ready: dict[str, Voicemail] = {}
        self._lock = threading.Lock()
        self.downloads: Counter[str] = Counter()
        """Successful downloads per RecordingSid."""
        self.not_ready_hits: Counter[str] = Counter()
        """404s answered because the recording was not ready yet."""
        self.unauthorized = 0
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- MediaHost ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url_for(self, recording_sid: str) -> str:
        return self.base_url + recording_path(self.account_sid, recording_sid)

    def publish(self, recording_sid: str, voicemail: Voicemail) -> None:
        """The recording is complete: from now on it downloads."""
        with self._lock:
            self._ready[recording_sid] = voicemail

    def shared(self) -> SharedDirectoryMedia:
        """The same recordings, published from another process through the directory."""
        if self.directory is None:
            raise ValueError("this media server has no shared directory")
        return SharedDirectoryMedia(self.directory, self.base_url, self.account_sid)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> MediaServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="moked-sim-media",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving ------------------------------------------------------------------------

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._credentials)

    def _lookup(self, recording_sid: str, ext: str) -> bytes | None:
        with self._lock:
            voicemail = self._ready.get(recording_sid)
        if voicemail is not None:
            return voicemail.mp3 if ext == ".mp3" else voicemail.wav
        if self.directory is not None:
            path = self.directory / f"{recording_sid}{ext or '.wav'}"
            try:
                return path.read_bytes()
            except OSError:
                return None
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        media = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "Twilio-Simulator"
            sys_version = ""
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                log.debug("media: " + format, *args)

            def _json(self, status: int, code: int, message: str) -> None:
                body = json.dumps({"code": code, "message": message, "status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                match = _PATH.match(self.path.split("?", 1)[0])
                if match is None:
                    self._json(404, 20404, "The requested resource was not found")
                    return
                if not media._authorized(self.headers.get("Authorization")):
                    media.unauthorized += 1
                    self._json(401, 20003, "Authenticate")
                    return
                if match["account"] != media.account_sid:
                    self._json(404, 20404, "The requested resource was not found")
                    return
                sid, ext = match["sid"], match["ext"] or ""
                data = media._lookup(sid, ext)
                if data is None:
                    with media._lock:
                        media.not_ready_hits[sid] += 1
                    self._json(404, 20404, f"The requested resource {self.path} was not found")
                    return
                if self.command == "GET":
                    with media._lock:
                        media.downloads[sid] += 1
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPES[ext])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(data)

        return Handler
