"""One backend per worker process that sends each language where `moked.models` routes it.

Every model a route needs is loaded when the worker starts (each once, shared by the routes
that name it): a job only looks its route up. A model installed later is used after the
transcriber restarts; nothing is ever downloaded here.

The spoken language is detected first (`transcribe_call`), among the languages the business
expects only, by a multilingual model: the default route's local model, else the embedded
base. A language's own model is never asked to detect (ivrit.ai's Hebrew models must always
be told `he`: fine-tuning weakened their detection).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from moked import transcripts
from moked.models import DEFAULT_ROUTE, EMBEDDED_MODEL_NAME, Route
from moked.settings import Settings, TranscriberBackend
from transcriber.backends.base import Backend, Detection, LanguageRequest, Transcript
from transcriber.model_store import embedded_model_dir, route_dir, routes

if TYPE_CHECKING:
    from transcriber.backends.local import LocalBackend

log = logging.getLogger(__name__)


@dataclass
class Router:
    routes: dict[str, Route]
    backends: dict[tuple[str, str], Backend]
    detector: LocalBackend | None = None
    """The multilingual local model that detects the spoken language."""
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
        return cls(routes=table, backends=backends, detector=_detector(settings, table, backends))

    def route(self, language: str) -> Route:
        return self.routes.get(language) or self.routes[DEFAULT_ROUTE]

    def backend_for(self, language: str) -> Backend:
        return self.backends[self.route(language).key]

    def warm_up(self) -> None:
        for backend in self.backends.values():
            backend.warm_up()
        detector = self.detector
        if detector is not None and all(detector is not b for b in self.backends.values()):
            detector.warm_up()

    def transcribe(self, audio: Path, language: str) -> Transcript:
        """In `language`, on its route's backend, with the route's and Whisper's own doubts."""
        route = self.route(language)
        backend = self.backends[route.key]
        transcript = backend.transcribe(audio, language)
        return dataclasses.replace(
            transcript,
            backend=transcript.backend or backend.name,
            model=transcript.model or backend.model,
            low_confidence=transcripts.join(
                [
                    route.low_confidence,
                    transcript.low_confidence,
                    transcripts.assess(transcript.segments),
                ]
            ),
        )

    def detect(self, audio: Path, request: LanguageRequest) -> Detection | None:
        """What the detector hears among the expected languages (and a forced one); None
        when one language is all the business expects, or there is no speech."""
        candidates = tuple(dict.fromkeys([*request.expected, *filter(None, [request.forced])]))
        if self.detector is None or len(candidates) < 2:
            return None
        return self.detector.detect(audio, candidates)

    def transcribe_call(self, audio: Path, request: LanguageRequest) -> Transcript:
        """Detect the language (unless staff chose one), then transcribe on its route."""
        detection = self.detect(audio, request)
        language = request.forced or chosen(detection, request.business)
        transcript = self.transcribe(audio, language)
        if detection is None:
            return transcript
        doubt = (
            None
            if request.forced or not transcript.text
            else transcripts.language_doubt(detection.language, detection.probability)
        )
        return dataclasses.replace(
            transcript,
            detected_language=detection.language,
            language_probability=detection.probability,
            low_confidence=transcripts.join([transcript.low_confidence, doubt]),
        )


def chosen(detection: Detection | None, business: str) -> str:
    """The language to transcribe in: the detected one when the detector is reasonably sure
    (or it is the business's own), else the business's own. A Hebrew voicemail that base's
    detector half-hears as English is still transcribed as Hebrew."""
    if detection is None:
        return business
    if detection.language == business or detection.probability >= transcripts.SWITCH_FLOOR:
        return detection.language
    return business


def _detector(
    settings: Settings, table: dict[str, Route], backends: dict[tuple[str, str], Backend]
) -> LocalBackend | None:
    """The default route's local model, else the embedded base (loaded for detection)."""
    from transcriber.backends.local import LocalBackend

    default = table[DEFAULT_ROUTE]
    loaded = backends.get(default.key)
    if default.backend is TranscriberBackend.LOCAL and isinstance(loaded, LocalBackend):
        return loaded
    for backend in backends.values():
        if isinstance(backend, LocalBackend) and backend.model == EMBEDDED_MODEL_NAME:
            return backend
    base = (embedded_model_dir(settings.state_dir), EMBEDDED_MODEL_NAME)
    return LocalBackend.from_settings(settings, base)


def _build(settings: Settings, route: Route) -> Backend:
    if route.backend is TranscriberBackend.OPENAI:
        from transcriber.backends.openai import OpenAIBackend

        return OpenAIBackend.from_settings(settings)
    from transcriber.backends.local import LocalBackend

    return LocalBackend.from_settings(settings, (route_dir(route, settings.state_dir), route.model))
