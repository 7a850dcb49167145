"""A log of every request the simulated Twilio made, printed like Twilio's Request Inspector."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from moked.simulator.errors import TwilioError


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request Twilio made and what it got back."""

    call_sid: str
    kind: str
    """"webhook" (TwiML fetched), "callback" (status callback) or "media" (<Play> fetch)."""
    name: str
    """The endpoint or verb: "incoming_call", "call_status", "Play"…"""
    method: str
    url: str
    started: float
    """Seconds since the simulated call began."""
    elapsed: float
    """Seconds the request took."""
    status: int | None
    """HTTP status, None when no answer came (timeout, refused)."""
    content_type: str | None
    body_bytes: int = 0
    error: TwilioError | None = None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def line(self) -> str:
        status = str(self.status) if self.status is not None else "---"
        content_type = (self.content_type or "-").split(";")[0]
        text = (
            f"+{self.started:7.3f}s {self.method:4} {self.path[:58]:58} {status:>3} "
            f"{content_type:18} {self.elapsed * 1000:8.1f} ms"
        )
        if self.error is not None:
            text += f"  ! {int(self.error.code)} {self.error.code.title}"
        return text


HEADER = f"{'when':>9} {'verb':4} {'url':58} {'st':>3} {'content-type':18} {'time':>11}"
"""The column titles of `Exchange.line()`."""


class Inspector:
    """Collects exchanges (thread-safe) and optionally prints each as it happens."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []
        self._notes: list[str] = []
        self._echo = echo
        self._listeners: list[Callable[[Exchange], None]] = []

    def subscribe(self, listener: Callable[[Exchange], None]) -> None:
        """Call `listener` with every exchange (the load tool reports latencies this way)."""
        self._listeners.append(listener)

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)
        if self._echo is not None:
            self._echo(exchange.line())
        for listener in self._listeners:
            listener(exchange)

    def note(self, text: str) -> None:
        """What happened on the call between requests (the caller spoke, hung up…)."""
        with self._lock:
            self._notes.append(text)
        if self._echo is not None:
            self._echo(f"          {text}")

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    def __iter__(self) -> Iterator[Exchange]:
        return iter(self.exchanges)

    def for_call(self, call_sid: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.call_sid == call_sid]

    def errors(self, call_sid: str | None = None) -> list[TwilioError]:
        return [
            e.error
            for e in self.exchanges
            if e.error is not None and (call_sid is None or e.call_sid == call_sid)
        ]

    def report(self, call_sid: str | None = None) -> str:
        """The whole log, as the Request Inspector would list it."""
        rows = [e.line() for e in self.exchanges if call_sid is None or e.call_sid == call_sid]
        return "\n".join([HEADER, *rows])
