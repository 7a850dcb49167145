"""What every backend is and returns; the backends import this, never their package.

(`transcriber.backends` picks a backend and imports the backend modules, so they must not
import it back.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str
    audio_seconds: float | None
    """Length of the audio the backend heard (None when it does not say)."""
    backend: str | None = None
    """Which backend and model made it, when a router chose among several."""
    model: str | None = None
    low_confidence: str | None = None
    """Why the transcript should not be trusted without listening (None: no known reason)."""


class Backend(Protocol):
    name: str
    model: str

    def transcribe(self, audio: Path, language: str) -> Transcript: ...

    def warm_up(self) -> None:
        """Prepare for the first job (called once, when the worker process starts)."""
