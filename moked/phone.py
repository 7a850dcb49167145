"""Phone numbers: everything stored is E.164, normalised with phonenumbers."""

from __future__ import annotations

import functools

import phonenumbers

DEFAULT_REGION = "IL"


class InvalidPhoneNumber(ValueError):
    """Not a valid phone number."""


_NUMBER_CHARACTERS = frozenset("0123456789+-(). ")
"""What people write a number with; anything else (letters, "ext. 5", "#") is refused."""
MAX_NUMBER_LENGTH = 32


def to_e164(raw: str, region: str = DEFAULT_REGION) -> str:
    """Normalise '+972 3-123-4567' or '03-1234567' to '+97231234567'; raise if invalid.

    phonenumbers keeps whatever number it can find: "03-555 0123 ext. 5" or "035550123abc"
    would be stored as 035550123 with the rest silently cut, so both are refused instead."""
    text = raw.strip()
    if len(text) > MAX_NUMBER_LENGTH or not set(text) <= _NUMBER_CHARACTERS:
        raise InvalidPhoneNumber(f"not a phone number: {raw[:40]!r}")
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"not a phone number: {raw!r}") from exc
    if parsed.extension or not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(f"not a valid phone number: {raw!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=4096)
def try_e164(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """E.164 for a number Twilio sent, or None ('anonymous', 'client:x', garbage).

    Cached: every call to a business carries the same `To`, and parsing is not free."""
    if not raw:
        return None
    try:
        return to_e164(raw, region)
    except InvalidPhoneNumber:
        return None


def display(raw: str | None, region: str = DEFAULT_REGION) -> str:
    """A number as staff read it: national format at home, international abroad."""
    if not raw:
        return ""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return raw
    if not phonenumbers.is_valid_number(parsed):
        return raw
    if phonenumbers.region_code_for_number(parsed) == region:
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
