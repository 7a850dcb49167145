"""What every backend is and returns; the backends import this, never their package.

(`transcriber.backends` picks a backend and imports the backend modules, so they must not
import it back.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from moked.transcripts import Segment


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
    segments: tuple[Segment, ...] = ()
    """Timed segments in order, with Whisper's confidence numbers (empty when the backend
    gives only text)."""
    detected_language: str | None = None
    """What the detector heard among the business's expected languages (None: not run)."""
    language_probability: float | None = None
    """Whisper's probability of `detected_language` (over all its languages)."""


@dataclass(frozen=True, slots=True)
class Detection:
    language: str
    """The most likely of the expected languages."""
    probability: float
    """Whisper's probability of it, over all the languages it knows."""


@dataclass(frozen=True, slots=True)
class LanguageRequest:
    """Which language to transcribe a recording in."""

    business: str
    """The business's own language (Whisper code): used when nothing else decides."""
    expected: tuple[str, ...] = ()
    """The languages its callers may speak; detection picks among them only."""
    forced: str | None = None
    """Staff asked for this language (`moked.recordings.retry`): no guessing."""


class Backend(Protocol):
    name: str
    model: str

    def transcribe(self, audio: Path, language: str) -> Transcript: ...

    def warm_up(self) -> None:
        """Prepare for the first job (called once, when the worker process starts)."""
