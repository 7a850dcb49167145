"""How an SMS is counted: GSM-7 when every character is in the GSM 03.38 alphabet, else
UCS-2, and how many segments the text takes (what Twilio bills and what phones join).

GSM-7: 160 septets in one segment, 153 per segment when concatenated (the rest carries the
joining header); a character of the extension table (€, [, ], {, }, ^, ~, |, \\) takes two
septets, escape and character, never split across segments. UCS-2: 70 UTF-16 code units
in one segment, 67 when concatenated; a character outside the BMP (most emoji) takes two
units and is never split either.
"""

from __future__ import annotations

import enum

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The GSM 03.38 default alphabet (the escape code itself left out)."""
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
"""Reached through the escape code: two septets each."""

WHATSAPP_MAX_CHARACTERS = 1600
"""Twilio refuses a longer WhatsApp (or SMS) body (error 21617)."""


class Encoding(enum.StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"

    @property
    def single(self) -> int:
        """Units in a message of one segment."""
        return 160 if self is Encoding.GSM7 else 70

    @property
    def per_segment(self) -> int:
        """Units per segment of a concatenated message."""
        return 153 if self is Encoding.GSM7 else 67


def is_gsm(text: str) -> bool:
    return all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)


def encoding(text: str) -> Encoding:
    return Encoding.GSM7 if is_gsm(text) else Encoding.UCS2


def _units(ch: str, enc: Encoding) -> int:
    if enc is Encoding.GSM7:
        return 2 if ch in GSM_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1  # a surrogate pair in UTF-16


def length(text: str, enc: Encoding | None = None) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2)."""
    enc = enc or encoding(text)
    return sum(_units(ch, enc) for ch in text)


def count(text: str) -> int:
    """The segments `text` takes (0 for an empty text)."""
    enc = encoding(text)
    if length(text, enc) <= enc.single:
        return 0 if not text else 1
    segments, used = 1, 0
    for ch in text:
        units = _units(ch, enc)
        if used + units > enc.per_segment:  # a character is never split between segments
            segments, used = segments + 1, 0
        used += units
    return segments


def fits(text: str, max_segments: int) -> bool:
    return count(text) <= max_segments
