"""Twilio's error codes, as the simulator reports them (what the Request Inspector shows)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TwilioErrorCode(enum.IntEnum):
    """The codes Twilio's Debugger logs for what a webhook or a media URL did wrong."""

    HTTP_RETRIEVAL_FAILURE = 11200
    """A non-2xx answer, a redirect, a timeout (15 s) or a missing Content-Type."""
    HTTP_CONNECTION_FAILURE = 11205
    """The connection could not be made (refused, reset, DNS)."""
    DOCUMENT_PARSE_FAILURE = 12100
    """The TwiML is not well-formed XML (unescaped &, leading whitespace, truncated)."""
    SCHEMA_VALIDATION_WARNING = 12200
    """Well-formed XML that is not valid TwiML (unknown verb or attribute). A warning."""
    INVALID_CONTENT_TYPE = 12300
    """The TwiML document came with a Content-Type Twilio does not parse as TwiML."""
    PLAY_INVALID_CONTENT_TYPE = 13420
    """`<Play>` fetched something that is not audio."""

    @property
    def is_warning(self) -> bool:
        return self is TwilioErrorCode.SCHEMA_VALIDATION_WARNING

    @property
    def title(self) -> str:
        return _TITLES[self]


_TITLES = {
    TwilioErrorCode.HTTP_RETRIEVAL_FAILURE: "HTTP retrieval failure",
    TwilioErrorCode.HTTP_CONNECTION_FAILURE: "HTTP connection failure",
    TwilioErrorCode.DOCUMENT_PARSE_FAILURE: "Document parse failure",
    TwilioErrorCode.SCHEMA_VALIDATION_WARNING: "Schema validation warning",
    TwilioErrorCode.INVALID_CONTENT_TYPE: "Invalid Content-Type",
    TwilioErrorCode.PLAY_INVALID_CONTENT_TYPE: "Play: invalid content type",
}


@dataclass(frozen=True, slots=True)
class TwilioError:
    """One error as Twilio's Debugger would log it for this call."""

    code: TwilioErrorCode
    url: str
    message: str

    @property
    def is_warning(self) -> bool:
        return self.code.is_warning

    def __str__(self) -> str:
        kind = "warning" if self.is_warning else "error"
        return f"{kind} {int(self.code)} ({self.code.title}) at {self.url}: {self.message}"


class SimulatorError(RuntimeError):
    """The simulator itself could not run (audio tools missing, bad arguments)."""
