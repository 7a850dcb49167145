"""One backend per worker process that sends each language where `moked.models` routes it.

Every model a route needs is loaded when the worker starts (each once, shared by the routes
that name it): a job only looks its route up. A model installed later is used after the
transcriber restarts; nothing is ever downloaded here.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from moked.models import DEFAULT_ROUTE, Route
from moked.settings import Settings, TranscriberBackend
from transcriber.backends.base import Backend, Transcript
from transcriber.model_store import route_dir, routes

log = logging.getLogger(__name__)


@dataclass
class Router:
    routes: dict[str, Route]
    backends: dict[tuple[str, str], Backend]
    name: str = field(init=False)
    model: str = field(init=False)

    def __post_init__(self) -> None:
        default = self.backend_for(DEFAULT_ROUTE)
        self.name, self.model = default.name, default.model

    @classmethod
    def from_settings(cls, settings: Settings) -> Router:
        table = {route.language: route for route in routes(settings)}
        backends: dict[tuple[str, str], Backend] = {}
        for route in table.values():
            if route.key not in backends:
                backends[route.key] = _build(settings, route)
            log.info("transcription route %s → %s/%s (%s)", route.language, *route.key, route.why)
        return cls(routes=table, backends=backends)

    def route(self, language: str) -> Route:
        return self.routes.get(language) or self.routes[DEFAULT_ROUTE]

    def backend_for(self, language: str) -> Backend:
        return self.backends[self.route(language).key]

    def warm_up(self) -> None:
        for backend in self.backends.values():
            backend.warm_up()

    def transcribe(self, audio: Path, language: str) -> Transcript:
        route = self.route(language)
        backend = self.backends[route.key]
        transcript = backend.transcribe(audio, language)
        return dataclasses.replace(
            transcript,
            backend=transcript.backend or backend.name,
            model=transcript.model or backend.model,
            low_confidence=transcript.low_confidence or route.low_confidence,
        )


def _build(settings: Settings, route: Route) -> Backend:
    if route.backend is TranscriberBackend.OPENAI:
        from transcriber.backends.openai import OpenAIBackend

        return OpenAIBackend.from_settings(settings)
    from transcriber.backends.local import LocalBackend

    return LocalBackend.from_settings(settings, (route_dir(route, settings.state_dir), route.model))
