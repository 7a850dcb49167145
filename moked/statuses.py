"""Every status in Moked, as enums: Twilio's vocabularies and our own processing states."""

from __future__ import annotations

import enum


class CallStatus(enum.StrEnum):
    """Twilio's CallStatus values."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        """Position in a call's life; a status never moves to a lower rank."""
        return _CALL_RANK[self]

    @property
    def is_terminal(self) -> bool:
        return self.rank == _TERMINAL_RANK

    @classmethod
    def parse(cls, value: str | None) -> CallStatus | None:
        try:
            return cls((value or "").strip().lower())
        except ValueError:
            return None


_TERMINAL_RANK = 3
_CALL_RANK = {
    CallStatus.QUEUED: 0,
    CallStatus.RINGING: 1,
    CallStatus.IN_PROGRESS: 2,
    CallStatus.COMPLETED: _TERMINAL_RANK,
    CallStatus.BUSY: _TERMINAL_RANK,
    CallStatus.NO_ANSWER: _TERMINAL_RANK,
    CallStatus.CANCELED: _TERMINAL_RANK,
    CallStatus.FAILED: _TERMINAL_RANK,
}


class RecordingStatus(enum.StrEnum):
    """Twilio's RecordingStatus values (recordingStatusCallback)."""

    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    ABSENT = "absent"
    FAILED = "failed"

    @classmethod
    def parse(cls, value: str | None) -> RecordingStatus | None:
        try:
            return cls((value or "").strip().lower())
        except ValueError:
            return None


class ProcessingStatus(enum.StrEnum):
    """Where a recording is on its way to a transcript."""

    AWAITING_MEDIA = "awaiting_media"
    """Twilio announced the recording but has not reported it completed."""
    AWAITING_TRANSCRIPTION = "awaiting_transcription"
    DOWNLOADING = "downloading"
    TRANSCRIBING = "transcribing"
    READY = "ready"
    FAILED = "failed"
    EMPTY = "empty"
    """The recording holds no speech."""
    ABSENT = "absent"
    """Twilio made no recording (too short or silent)."""

    @property
    def is_final(self) -> bool:
        """Nothing more will happen to the recording unless staff ask for a retry."""
        return self in _FINAL_PROCESSING


_FINAL_PROCESSING = frozenset(
    {
        ProcessingStatus.READY,
        ProcessingStatus.FAILED,
        ProcessingStatus.EMPTY,
        ProcessingStatus.ABSENT,
    }
)


class JobOutcome(enum.StrEnum):
    """How one transcription job ended: the `outcome` label of moked_transcription_jobs_total.

    The alert rules and dashboards match these values; a test checks they name no other.
    """

    READY = "ready"
    EMPTY = "empty"
    FAILED = "failed"
    """Final: the recording is `failed`."""
    RETRY = "retry"
    """A transient failure; RQ runs the job again after a backoff."""
    SKIPPED = "skipped"
    """Nothing to do (already final, not completed by Twilio yet, or finished by another job)."""

    @classmethod
    def of(cls, status: ProcessingStatus) -> JobOutcome:
        """The outcome of a job that left the recording in `status` (ready, empty, failed)."""
        return cls(status.value)


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND_API = "outbound-api"
    OUTBOUND_DIAL = "outbound-dial"
    TRUNKING_ORIGINATING = "trunking-originating"
    TRUNKING_TERMINATING = "trunking-terminating"

    @classmethod
    def parse(cls, value: str | None) -> Direction:
        try:
            return cls((value or "").strip().lower())
        except ValueError:
            return cls.INBOUND


class Endpoint(enum.StrEnum):
    """The webhooks Twilio calls; the value is the path under /webhook/."""

    INCOMING_CALL = "incoming_call"
    HANDLE_RECORDING = "handle_recording"
    RECORDING_STATUS = "recording_status"
    CALL_STATUS = "call_status"
    TWILIO_ALERTS = "twilio_alerts"

    @property
    def path(self) -> str:
        return f"/webhook/{self.value}"

    @property
    def answers_twiml(self) -> bool:
        return self in (Endpoint.INCOMING_CALL, Endpoint.HANDLE_RECORDING)


class EventSource(enum.StrEnum):
    """How a webhook event reached the store."""

    LIVE = "live"
    SPOOL = "spool"
    """Kept on disk while Postgres was down, replayed later."""
    NGINX_FALLBACK = "nginx_fallback"
    """Answered by nginx while the app was down, replayed from nginx's log."""
    TWILIO_API = "twilio_api"
    """Found by the reconciler through Twilio's REST API (the callback never arrived)."""
