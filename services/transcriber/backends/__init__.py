"""Speech-to-text backends, routed per language (`moked.models`; TRANSCRIBER_BACKEND=auto:
a language's own model, else openai with a key, else the local default model).

A backend is built once per worker process (`get_backend`) and reused for every job: the
local model is loaded into memory once, never per job. `Backend` and `Transcript` live in
`base` (re-exported here), so the backend modules this one imports never import it back.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from moked.settings import Settings
from transcriber.backends.base import Backend as Backend
from transcriber.backends.base import LanguageRequest as LanguageRequest
from transcriber.backends.base import Transcript as Transcript

if TYPE_CHECKING:
    from transcriber.backends.router import Router

DEFAULT_LANGUAGE = "he"


def whisper_language(business_language: str | None) -> str:
    """A business's BCP-47 tag (he-IL, en-US) as Whisper's language code (he, en)."""
    code = (business_language or "").strip().replace("_", "-").split("-")[0].lower()
    if code == "iw":  # the old ISO code for Hebrew, still used by some systems
        code = "he"
    return code if len(code) in (2, 3) and code.isalpha() else DEFAULT_LANGUAGE


_lock = threading.Lock()
_backend: Router | None = None
_loads = 0


def load_count() -> int:
    """How many times this process built a backend (1 after the first job, forever)."""
    return _loads


def _build(settings: Settings) -> Router:
    """A router over every language's backend (`moked.models.route_for`): Hebrew to a Hebrew
    model when one is installed, else OpenAI with a key, else the default model."""
    from transcriber.backends.router import Router

    return Router.from_settings(settings)


def get_backend(settings: Settings) -> Router:
    """This process's backend, built on first use (or at worker start) and kept."""
    global _backend, _loads
    with _lock:
        if _backend is None:
            _backend = _build(settings)
            _loads += 1
        return _backend
