"""The development mail sink: an SMTP server on loopback that keeps every message it is
given as an .eml file under MAIL_DIR, so `make up` sends real email nowhere.

It serves SMTP_URL's host and port when that is a plain `smtp://` loopback address (the
default, 127.0.0.1:8025); `moked stack up` runs it only then, and never in production.
Each message is written to a hidden temporary name and renamed, so a reader never sees
half a file; the reply to DATA is `250 OK: queued as <id>`, the file's stem.
Tests use `MailSink` directly, on a free port.

aiosmtpd is a development dependency: it is imported only when a sink starts.
"""

from __future__ import annotations

import email.policy
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Mapping
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from moked.settings import ConfigurationError, Settings, get_settings
from moked.stack.layout import is_loopback

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s mail-sink[%(process)d] %(name)s: %(message)s"
SUFFIX = ".eml"


def sink_address(settings: Settings) -> tuple[str, int] | None:
    """Where the development sink listens: SMTP_URL's host and port when it is a plain
    smtp:// loopback address outside production; None when mail goes to a real server."""
    if settings.is_production:
        return None
    parts = urlsplit(settings.smtp_url)
    try:
        port = parts.port or 25
    except ValueError:
        return None
    if parts.scheme.lower() != "smtp" or not is_loopback(parts.hostname):
        return None
    return str(parts.hostname), port


class _Store:
    """aiosmtpd's handler: each message becomes one 0600 .eml file in `directory`."""

    def __init__(self, directory: Path, refuse: Mapping[str, str]) -> None:
        self.directory = directory
        self.refuse = {address.lower(): reply for address, reply in refuse.items()}
        self.data_reply: str | None = None

    async def handle_RCPT(  # aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.refuse.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        if self.data_reply is not None and not self.data_reply.startswith("2"):
            return self.data_reply
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        # Return-Path and Delivered-To, as a mailbox would: who it was sent from and to.
        trace = [f"Return-Path: <{envelope.mail_from or ''}>"]
        trace += [f"Delivered-To: {rcpt}" for rcpt in envelope.rcpt_tos]
        data = ("\r\n".join(trace) + "\r\n").encode("utf-8") + bytes(content)
        stem = store(self.directory, data)
        log.info("stored %s%s from %s to %s", stem, SUFFIX, envelope.mail_from, envelope.rcpt_tos)
        return self.data_reply or f"250 OK: queued as {stem}"


def store(directory: Path, data: bytes) -> str:
    """Write one message atomically (0600); its file stem is its id."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stem = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)
    temporary = directory / f".{stem}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, directory / f"{stem}{SUFFIX}")
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return stem


def read_messages(directory: Path) -> list[EmailMessage]:
    """Every stored message, oldest first (the stems sort by time)."""
    parser = BytesParser(_class=EmailMessage, policy=email.policy.default)
    messages: list[EmailMessage] = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        parsed = parser.parsebytes(path.read_bytes())
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
    return messages


class MailSink:
    """An SMTP server on loopback storing what it receives under `directory`.

    `port=0` picks a free port (read `.port` after `start()`). For the senders' tests,
    `refuse` maps recipient addresses to the reply RCPT gets instead of 250 (e.g. "550
    5.1.1 no such user"), and `data_reply` replaces the answer to DATA (a 2xx one still
    stores the message; any other refuses it).
    """

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        refuse: Mapping[str, str] | None = None,
        data_reply: str | None = None,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"the mail sink listens on loopback only, not {host!r}")
        self.directory = directory
        self.host = host
        self.port = port
        self.handler = _Store(directory, refuse or {})
        self.handler.data_reply = data_reply
        self._controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        class _Controller(Controller):
            def _trigger_server(self) -> None:
                # Port 0: the kernel chose one; the probe (and callers) need it.
                server: Any = self.server
                self.port = int(server.sockets[0].getsockname()[1])
                super()._trigger_server()  # type: ignore[no-untyped-call]

        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        controller = _Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            server_hostname="moked-mail-sink",
            ready_timeout=10.0,
        )
        controller.start()
        self.port = int(controller.port)
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """SMTP_URL for senders to this sink."""
        return f"smtp://{self.host}:{self.port}"

    def files(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{SUFFIX}"))

    def messages(self) -> list[EmailMessage]:
        return read_messages(self.directory)


def main() -> int:
    """`python -m moked.mail_sink` (`scripts/run-service mail-sink`)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stdout, force=True)
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        print(f"mail-sink: {exc}", file=sys.stderr)
        return 2
    address = sink_address(settings)
    if address is None:
        print(
            "mail-sink: SMTP_URL is not a plain smtp:// loopback address outside production;"
            " the development sink does not run",
            file=sys.stderr,
        )
        return 2
    host, port = address
    sink = MailSink(settings.mail_dir, host, port)
    try:
        sink.start()
    except ImportError:
        print("mail-sink: aiosmtpd is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return 2
    stopped = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("storing mail for smtp://%s:%d in %s", host, sink.port, settings.mail_dir)
    stopped.wait()
    sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
