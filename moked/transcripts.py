"""What a transcript is made of besides its text: timed segments, the language heard, and
how far to trust it. Shared by the transcriber (which measures), `moked.recordings` (which
stores) and the CRM and `describe_call` (which show).

Confidence comes from Whisper's own numbers per segment: `avg_logprob` (the mean
log-probability of its tokens; below about -1 the words are guesses), `no_speech_prob`
(how likely the segment holds no speech at all) and the temperature it was finally decoded
at (high: Whisper's careful decodes failed its own checks). They are weighted by the
segment's length, so one mumbled word does not mark a whole message. (faster-whisper gives
every segment of one 30-second window the window's numbers.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

LOGPROB_FLOOR = -1.0
"""A transcript whose length-weighted mean avg_logprob is below this is low-confidence
(Whisper's own fallback threshold for a segment)."""
FALLBACK_TEMPERATURE = 0.6
"""A segment Whisper decoded only at this temperature or above had its careful decodes
rejected (too unlikely or repetitive, Whisper's own checks): what is left is a guess."""
NO_SPEECH_CEILING = 0.4
"""A segment above this no_speech_prob is more noise than speech. Whisper itself drops a
segment as silence above 0.6 (with a low avg_logprob); measured on telephone audio, clear
speech scores about 0.1 and speech in loud noise 0.45-0.6, usually decoded into fluent,
invented sentences."""
MOST_OF_THE_AUDIO = 0.5
"""Low-confidence when segments that probably hold no speech (noise, music on hold, a line
left open), or were decoded by guessing, are more than this share of the audio."""
LANGUAGE_PROBABILITY_FLOOR = 0.5
"""A detected language Whisper gave less than this probability is uncertain."""
SWITCH_FLOOR = 0.5
"""The detector must give another language at least this probability to move a recording
away from the business's own language (a weak guess keeps the business's language)."""

# Reasons start with these words: the CRM recognises them to say them in Hebrew or English.
REASON_BASE = "Whisper base transcribes"
"""The route's reason (`moked.models.route_for`): no model for the language."""
REASON_WORDS = "uncertain words"
REASON_NO_SPEECH = "mostly no speech"
REASON_LANGUAGE = "uncertain language"
SEPARATOR = "; "


@dataclass(frozen=True, slots=True)
class Segment:
    """One timed sentence (or phrase) of the transcript; times in seconds of the audio."""

    start: float
    end: float
    text: str
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    temperature: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """As stored in `recordings.transcript_segments` (JSONB)."""
        return {
            "start": round(self.start, 2),
            "end": round(self.end, 2),
            "text": self.text,
            "avg_logprob": _round(self.avg_logprob),
            "no_speech_prob": _round(self.no_speech_prob),
            "temperature": self.temperature,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        return cls(
            start=float(data["start"]),
            end=float(data["end"]),
            text=str(data["text"]),
            avg_logprob=data.get("avg_logprob"),
            no_speech_prob=data.get("no_speech_prob"),
            temperature=data.get("temperature"),
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def segments_of(stored: Sequence[dict[str, Any]] | None) -> list[Segment]:
    """The stored segments (oldest rows have none: an empty list)."""
    return [Segment.from_dict(item) for item in stored or ()]


def public(stored: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """`transcript_segments` of `describe_call`: start, end and text only."""
    return [{"start": s.start, "end": s.end, "text": s.text} for s in segments_of(stored)]


def _weight(segment: Segment) -> float:
    return max(segment.end - segment.start, 0.01)


def assess(segments: Sequence[Segment]) -> str | None:
    """Why Whisper's own numbers say the transcript should not be trusted; None when they
    do not (or when the backend gave none, e.g. OpenAI's text-only answers)."""
    measured = [s for s in segments if s.avg_logprob is not None or s.no_speech_prob is not None]
    if not measured:
        return None
    reasons = []
    with_logprob = [s for s in measured if s.avg_logprob is not None]
    if with_logprob:
        total = sum(_weight(s) for s in with_logprob)
        mean = sum((s.avg_logprob or 0.0) * _weight(s) for s in with_logprob) / total
        guessed = sum(
            _weight(s)
            for s in with_logprob
            if s.temperature is not None and s.temperature >= FALLBACK_TEMPERATURE
        )
        if mean < LOGPROB_FLOOR:
            reasons.append(f"{REASON_WORDS} (mean log-probability {mean:.2f})")
        elif guessed / total > MOST_OF_THE_AUDIO:
            reasons.append(f"{REASON_WORDS} (decoded by guessing, {guessed / total:.0%})")
    with_no_speech = [s for s in measured if s.no_speech_prob is not None]
    if with_no_speech:
        total = sum(_weight(s) for s in with_no_speech)
        silent = sum(
            _weight(s) for s in with_no_speech if (s.no_speech_prob or 0.0) > NO_SPEECH_CEILING
        )
        if silent / total > MOST_OF_THE_AUDIO:
            reasons.append(f"{REASON_NO_SPEECH} ({silent / total:.0%} of the audio)")
    return join(reasons)


def language_doubt(language: str, probability: float | None) -> str | None:
    """A reason when the detector was unsure of the language it picked."""
    if probability is None or probability >= LANGUAGE_PROBABILITY_FLOOR:
        return None
    return f"{REASON_LANGUAGE} ({language} at {probability:.2f})"


def join(reasons: Iterable[str | None]) -> str | None:
    """Several reasons as one stored text (`recordings.low_confidence_reason`)."""
    kept = [r for r in reasons if r]
    return SEPARATOR.join(dict.fromkeys(kept)) or None


def reason_kinds(reason: str | None) -> list[str]:
    """Which known reasons a stored text holds (REASON_*), in order; unknown ones as is."""
    if not reason:
        return []
    known = (REASON_BASE, REASON_WORDS, REASON_NO_SPEECH, REASON_LANGUAGE)
    kinds = []
    for part in reason.split(SEPARATOR):
        kinds.append(next((k for k in known if part.startswith(k)), part))
    return list(dict.fromkeys(kinds))


def expected_languages(
    business_language: str, configured: Sequence[str] | None, default_extra: Sequence[str]
) -> tuple[str, ...]:
    """The Whisper languages a business's callers may speak: its own first, then its
    configured list (`businesses.expected_languages`) or else the install's default extras
    (EXPECTED_LANGUAGES: English, Arabic and Russian)."""
    chosen = configured if configured else default_extra
    ordered = [business_language, *(c.strip().lower() for c in chosen)]
    return tuple(dict.fromkeys(code for code in ordered if code))
