"""TwiML for every answer Moked gives, built with twilio's VoiceResponse (never strings)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from twilio.twiml.voice_response import VoiceResponse

from moked.statuses import Endpoint

TWIML_CONTENT_TYPE = "text/xml; charset=utf-8"
SAY_LANGUAGE = "he-IL"
SAY_LANGUAGES = frozenset(
    {"he-IL", "en-US", "en-GB", "ar-XA", "ar-AE", "ru-RU", "fr-FR", "es-ES", "de-DE"}
)
"""A business's language: one Twilio's <Say> speaks (an unknown one fails the call's
greeting) and Whisper transcribes (transcriber.backends.whisper_language)."""


@dataclass(frozen=True, slots=True)
class RecordOptions:
    max_length: int = 30
    timeout: int = 5
    finish_on_key: str = "*"
    play_beep: bool = True
    trim: bool = True


@dataclass(frozen=True, slots=True)
class Greeting:
    """What a caller hears: an MP3 when the business has a playable one, else text."""

    audio_url: str | None
    text: str
    language: str = SAY_LANGUAGE


def _say(response: VoiceResponse, text: str, language: str) -> None:
    response.say(text, language=language)


@functools.lru_cache(maxsize=1024)
def incoming_call(greeting: Greeting, record: RecordOptions, goodbye_text: str) -> str:
    """Greeting, a pause, the recording, and a goodbye for callers who leave nothing.

    Twilio requests `action` only when something was recorded; an empty recording falls
    through to the next verb, so the goodbye and hang-up are never skipped. Callback URLs
    are relative, resolved by Twilio against the URL it called (PUBLIC_HOST), as in the
    static fallback TwiML nginx serves. Cached: a business's answer is the same for every
    caller until its greeting changes (the arguments are frozen values).
    """
    response = VoiceResponse()
    if greeting.audio_url:
        response.play(greeting.audio_url)
    else:
        _say(response, greeting.text, greeting.language)
    response.pause(length=1)
    response.record(
        action=Endpoint.HANDLE_RECORDING.path,
        method="POST",
        recording_status_callback=Endpoint.RECORDING_STATUS.path,
        recording_status_callback_method="POST",
        recording_status_callback_event="completed absent",
        max_length=record.max_length,
        timeout=record.timeout,
        finish_on_key=record.finish_on_key,
        play_beep=record.play_beep,
        trim="trim-silence" if record.trim else "do-not-trim",
        transcribe=False,
    )
    _say(response, goodbye_text, greeting.language)
    response.hangup()
    return str(response.to_xml())


def thanks_and_hangup(text: str, language: str = SAY_LANGUAGE) -> str:
    response = VoiceResponse()
    _say(response, text, language)
    response.hangup()
    return str(response.to_xml())


def empty() -> str:
    """A valid answer that asks Twilio to do nothing more."""
    return str(VoiceResponse().to_xml())


def callback_dial(caller: str, caller_id: str, action: str, timeout: int) -> str:
    """A callback's staff leg answered: ring the caller, showing the business's number;
    Twilio posts how the `<Dial>` ended to `action`."""
    response = VoiceResponse()
    response.dial(caller, caller_id=caller_id, action=action, method="POST", timeout=timeout)
    return str(response.to_xml())


def hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response.to_xml())


def reject(reason: str = "busy") -> str:
    """A blocked caller: Twilio rejects the call (the caller hears busy; nothing is billed
    or recorded)."""
    response = VoiceResponse()
    response.reject(reason=reason)
    return str(response.to_xml())
