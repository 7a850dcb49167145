"""The transcriber's view of the models: `moked.models` resolves, this raises ModelError.

The embedded base model (reassembled from its two wheels and verified), installed models
and the per-language routing all live in `moked.models`, shared with `moked model` and
`moked doctor`; here their errors become the transcriber's permanent ModelError.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from moked import models
from moked.models import EMBEDDED_MODEL_NAME as EMBEDDED_MODEL_NAME
from moked.models import EMBEDDED_MODEL_SHA256 as EMBEDDED_MODEL_SHA256
from moked.models import MODEL_FILE as MODEL_FILE
from moked.models import SIDE_FILES as SIDE_FILES
from moked.models import Route
from moked.models import sha256_of as sha256_of
from moked.settings import Settings
from transcriber.errors import ModelError

T = TypeVar("T")


def _as_model_error(call: Callable[[], T]) -> T:
    try:
        return call()
    except models.ModelError as exc:
        raise ModelError(str(exc)) from exc


def embedded_model_dir(state_dir: Path) -> Path:
    """The verified embedded model directory, assembled on first use (safe to race)."""
    return _as_model_error(lambda: models.embedded_model_dir(state_dir))


def resolve_model_dir(whisper_model: str, state_dir: Path) -> tuple[Path, str]:
    """(directory, display name) of a model setting: empty = the embedded one."""

    def resolve() -> tuple[Path, str]:
        directory, name = models.resolve(state_dir, whisper_model, "WHISPER_MODEL")
        return directory or models.embedded_model_dir(state_dir), name

    return _as_model_error(resolve)


def routes(settings: Settings) -> list[Route]:
    """Every language's route (`moked.models.routes`); raises ModelError when a setting
    names a model that is not installed."""
    return _as_model_error(lambda: models.routes(settings))


def route_dir(route: Route, state_dir: Path) -> Path:
    """The directory a local route loads (the embedded model assembled when needed)."""
    return route.directory or embedded_model_dir(state_dir)
