"""A voicemail's summary and the caller's intent (SUMMARY_BACKEND=openai): one chat
completion through the official openai client, answered as structured output (a JSON
schema, strict), so the reply is the two fields and nothing else.

Off by default and without OPENAI_API_KEY: no summary, no request, no error. A failure
never fails the transcription: the transcript is already stored, the summary is extra.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

import openai

from moked.settings import Settings
from moked.statuses import Intent, SummaryBackend

log = logging.getLogger(__name__)

SUMMARY_LIMIT = 400
"""Characters kept of a summary (asked for one or two sentences)."""
LANGUAGE_NAMES = {"he": "Hebrew", "en": "English", "ar": "Arabic", "ru": "Russian"}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "intent"],
    "properties": {
        "summary": {
            "type": "string",
            "description": "One or two short sentences: who called and what they want.",
        },
        "intent": {"type": "string", "enum": [intent.value for intent in Intent]},
    },
}
INSTRUCTIONS = (
    "You read transcripts of voicemails left for a small business. Reply with a summary of"
    " at most two short sentences, written in {language}, saying who called (if they said)"
    " and what they want, and the caller's intent: callback_request (they ask to be called"
    " back), order (they want to order or book), complaint, question, spam (robocalls,"
    " sales pitches, silence with noise) or other. The transcript may contain errors."
)


class SummaryError(Exception):
    """The summary could not be made; the message says why (logged, never stored)."""


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    intent: Intent
    model: str


@dataclass
class Summarizer:
    client: openai.OpenAI
    model: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Summarizer | None:
        """None when summaries are off or there is no key (nothing to ask, nothing wrong)."""
        key = settings.openai_api_key.get_secret_value()
        if settings.summary_backend is SummaryBackend.OFF or not key:
            return None
        client = openai.OpenAI(
            api_key=key,
            base_url=settings.openai_base_url or None,
            timeout=settings.summary_timeout_seconds,
            max_retries=1,
        )
        return cls(client=client, model=settings.summary_model)

    def summarize(self, transcript: str, language: str) -> Summary:
        """The summary in `language` (a Whisper code) and the intent; raises SummaryError."""
        name = LANGUAGE_NAMES.get(language, language)
        try:
            reply = self.client.chat.completions.create(
                model=self.model,
                temperature=0,
                messages=[
                    {"role": "system", "content": INSTRUCTIONS.format(language=name)},
                    {"role": "user", "content": transcript},
                ],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "voicemail", "strict": True, "schema": SCHEMA},
                },
            )
        except openai.APIError as exc:
            raise SummaryError(f"the summary request failed: {exc}") from exc
        content = reply.choices[0].message.content if reply.choices else None
        try:
            answer = json.loads(content or "")
            intent = Intent(answer["intent"])
            text = " ".join(str(answer["summary"]).split())
        except (ValueError, KeyError, TypeError) as exc:
            raise SummaryError(f"the summary reply is not the schema's: {content!r:.200}") from exc
        if not text:
            raise SummaryError("the summary is empty")
        return Summary(text=text[:SUMMARY_LIMIT], intent=intent, model=reply.model or self.model)


_lock = threading.Lock()
_summarizers: dict[tuple[str, str, str, str], Summarizer | None] = {}


def get_summarizer(settings: Settings) -> Summarizer | None:
    """This process's summarizer for these settings (one client, reused), or None."""
    key = (
        settings.summary_backend.value,
        settings.openai_api_key.get_secret_value(),
        settings.openai_base_url,
        settings.summary_model,
    )
    with _lock:
        if key not in _summarizers:
            _summarizers[key] = Summarizer.from_settings(settings)
        return _summarizers[key]
