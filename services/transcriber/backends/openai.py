"""The OpenAI backend: the official client against OpenAI's API or any compatible server.

`OPENAI_BASE_URL` points it at a self-hosted OpenAI-compatible server; timeouts and retries
are set explicitly (the client's own retries cover 408/409/429/5xx and connection errors).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import openai

from moked import metrics
from moked.settings import Settings
from transcriber.backends.base import Transcript
from transcriber.errors import BackendError

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
"""OpenAI refuses larger files."""
MULTI_LANGUAGE_MODELS = ("gpt-transcribe",)
"""Models that take `languages` (a list) instead of `language`."""


@dataclass
class OpenAIBackend:
    model: str
    client: openai.OpenAI
    name: str = "openai"

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIBackend:
        client = openai.OpenAI(
            api_key=settings.openai_api_key.get_secret_value() or None,
            base_url=settings.openai_base_url or None,
            timeout=settings.openai_timeout_seconds,
            max_retries=settings.openai_max_retries,
        )
        metrics.TRANSCRIPTION_MODEL_LOADS.labels("openai", settings.openai_model).inc()
        log.info("OpenAI backend: model %s at %s", settings.openai_model, client.base_url)
        return cls(model=settings.openai_model, client=client)

    def warm_up(self) -> None:
        """Nothing to load: the API holds the model."""

    def transcribe(self, audio: Path, language: str) -> Transcript:
        if audio.stat().st_size > MAX_UPLOAD_BYTES:
            raise BackendError("the recording is larger than OpenAI's 25 MB limit", permanent=True)
        try:
            with open(audio, "rb") as handle:
                if self.model.startswith(MULTI_LANGUAGE_MODELS):
                    result = self.client.audio.transcriptions.create(
                        model=self.model, file=handle, languages=[language]
                    )
                else:
                    result = self.client.audio.transcriptions.create(
                        model=self.model, file=handle, language=language
                    )
        except openai.APIStatusError as exc:
            permanent = exc.status_code in (400, 413, 415, 422)
            raise BackendError(
                f"OpenAI answered {exc.status_code}: {_short(_reason(exc))}", permanent=permanent
            ) from exc
        except openai.APIError as exc:  # connection errors and timeouts, after the retries
            raise BackendError(f"OpenAI request failed: {_short(str(exc))}") from exc
        return Transcript(text=(result.text or "").strip(), language=language, audio_seconds=None)


def _reason(exc: openai.APIStatusError) -> str:
    """The server's own message (`{"error": {"message": ...}}`), not the client's wrapper."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) and message else exc.message


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
