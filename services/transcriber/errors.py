"""Why a transcription attempt failed, and whether trying again can help."""

from __future__ import annotations


class TranscriptionError(Exception):
    """An attempt failed; `permanent` failures are not retried (the message is for people)."""

    permanent: bool = False

    def __init__(self, message: str, *, permanent: bool | None = None) -> None:
        super().__init__(message)
        if permanent is not None:
            self.permanent = permanent

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


class MediaNotReady(TranscriptionError):
    """Twilio keeps answering 404: the file does not exist yet. Retried with backoff."""


class MediaUnavailable(TranscriptionError):
    """The media host failed (network, timeout, 5xx, refused credentials). Retried."""


class MediaRejected(TranscriptionError):
    """The media can never be used: host not allowed, too large, not audio."""

    permanent = True


class BackendError(TranscriptionError):
    """The speech-to-text backend failed; `permanent` when the input was refused."""


class ModelError(TranscriptionError):
    """The model cannot be loaded (missing, corrupt): the worker refuses to start."""

    permanent = True
