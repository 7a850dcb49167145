"""Businesses and their numbers: creating, finding and describing them."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from moked.db.models import Business, PhoneNumber
from moked.greetings import store_greeting
from moked.phone import to_e164
from moked.twilio.twiml import SAY_LANGUAGE, SAY_LANGUAGES

DEFAULT_LANGUAGE = SAY_LANGUAGE
DEFAULT_TIMEZONE = "Asia/Jerusalem"
MAX_NAME_LENGTH = 200
"""businesses.name is String(200): a longer name is refused here, not by Postgres."""


class BusinessError(ValueError):
    """A business operation that cannot be done as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class BusinessSpec:
    name: str
    numbers: tuple[str, ...] = ()
    greeting_mp3: bytes | None = None
    greeting_text: str | None = None
    language: str | None = None
    """None: a new business speaks DEFAULT_LANGUAGE, an existing one keeps its own."""
    timezone: str | None = None
    """None: a new business is in DEFAULT_TIMEZONE, an existing one keeps its own."""
    expected_languages: tuple[str, ...] | None = None
    """Whisper codes its callers may speak (language detection picks among them, its own
    language always included); None: left as it is; empty: EXPECTED_LANGUAGES again."""


@functools.cache
def _time_zones() -> frozenset[str]:
    # Debian's tzdata lists "localtime" (a link to /etc/localtime): the host's zone, not a name.
    return frozenset(zoneinfo.available_timezones()) - {"localtime", "posixrules", "Factory"}


def check_language(language: str) -> str:
    if language not in SAY_LANGUAGES:
        known = ", ".join(sorted(SAY_LANGUAGES))
        raise BusinessError(f"language {language[:40]!r} is not one of {known}")
    return language


def check_expected_languages(raw: str) -> tuple[str, ...]:
    """ "he,en" as ("he", "en"); "" as () (back to EXPECTED_LANGUAGES)."""
    codes = tuple(dict.fromkeys(c.strip().lower() for c in raw.split(",") if c.strip()))
    for code in codes:
        if not (2 <= len(code) <= 3 and code.isascii() and code.isalpha()):
            raise BusinessError(f"{code[:20]!r} is not a Whisper language code such as he or en")
    return codes


def check_timezone(timezone: str) -> str:
    """An IANA zone name (Asia/Jerusalem); never a path or a name ZoneInfo would guess at."""
    if timezone not in _time_zones():
        raise BusinessError(f"time zone {timezone[:40]!r} is not an IANA zone (Asia/Jerusalem)")
    return timezone


@functools.cache
def zone(name: str | None) -> zoneinfo.ZoneInfo:
    """The business's zone; DEFAULT_TIMEZONE for a missing or unknown name (never raises:
    rows from before zones were validated still render)."""
    try:
        return zoneinfo.ZoneInfo(name or DEFAULT_TIMEZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(DEFAULT_TIMEZONE)


def local_time(value: dt.datetime | None, timezone: str | None, fmt: str = "%d/%m/%Y %H:%M") -> str:
    """`value` in the business's zone. Never raises: a time at the edge of the calendar
    (9999-12-31 23:00 UTC is past datetime.max in Jerusalem) is shown as stored, in UTC,
    so one bad row cannot take down the inbox, the CSV, the API or an alert."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(zone(timezone)).strftime(fmt)
    except (OverflowError, ValueError):
        pass
    try:
        return value.astimezone(dt.UTC).strftime(fmt)
    except (OverflowError, ValueError):
        return value.isoformat()


def check_name(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise BusinessError("a business needs a name")
    if len(name) > MAX_NAME_LENGTH:
        raise BusinessError(f"a business name has at most {MAX_NAME_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BusinessError("a business name cannot contain control characters")
    return name


def business_named(session: Session, name: str) -> Business | None:
    return session.scalar(
        select(Business).options(selectinload(Business.numbers)).where(Business.name == name)
    )


def find_business(session: Session, name_or_id: str) -> Business | None:
    """By id when the text is one, else by name: a business named "7" never stands in for
    business #7 (either could come first if both were asked for at once)."""
    if name_or_id.isdigit():
        by_id = session.scalar(
            select(Business)
            .options(selectinload(Business.numbers))
            .where(Business.id == int(name_or_id))
        )
        if by_id is not None:
            return by_id
    return business_named(session, name_or_id)


def require_business(session: Session, name_or_id: str) -> Business:
    """`find_business`, or BusinessError("no business 'X'"): what every command says."""
    business = find_business(session, name_or_id)
    if business is None:
        raise BusinessError(f"no business {name_or_id!r}")
    return business


def add_number(session: Session, business: Business, raw: str) -> PhoneNumber:
    """Attach a number (normalised to E.164); a number belongs to one business only."""
    e164 = to_e164(raw)
    existing = session.scalar(select(PhoneNumber).where(PhoneNumber.e164 == e164))
    if existing is not None:
        if existing.business_id != business.id:
            raise BusinessError(f"{e164} already belongs to business #{existing.business_id}")
        return existing
    number = PhoneNumber(business=business, e164=e164)
    session.add(number)
    session.flush()
    return number


def remove_number(session: Session, business: Business, number_id: int) -> str | None:
    """Detach one of the business's numbers; its E.164, or None when the business has no
    such number (another business's number is not this business's to remove)."""
    number = session.get(PhoneNumber, number_id)
    if number is None or number.business_id != business.id:
        return None
    session.delete(number)
    session.flush()
    return number.e164


def upsert_business(session: Session, spec: BusinessSpec, greetings_dir: Path) -> Business:
    """Create the business, or update the one with this name: running it twice is harmless,
    and only what the spec gives changes (no default overwrites an owner's choice)."""
    name = check_name(spec.name)
    language = check_language(spec.language) if spec.language is not None else None
    timezone = check_timezone(spec.timezone) if spec.timezone is not None else None
    business = business_named(session, name)  # a name, even "7": never business #7
    if business is None:
        business = Business(
            name=name,
            language=language or DEFAULT_LANGUAGE,
            timezone=timezone or DEFAULT_TIMEZONE,
        )
        session.add(business)
        session.flush()
    if language is not None:
        business.language = language
    if timezone is not None:
        business.timezone = timezone
    if spec.expected_languages is not None:
        business.expected_languages = list(spec.expected_languages) or None
    if spec.greeting_text is not None:
        business.greeting_text = spec.greeting_text
    for raw in spec.numbers:
        add_number(session, business, raw)
    if spec.greeting_mp3 is not None:
        business.greeting_file = store_greeting(greetings_dir, business.id, spec.greeting_mp3)
    session.flush()
    return business


def describe(business: Business) -> dict[str, Any]:
    return {
        "id": business.id,
        "name": business.name,
        "language": business.language,
        "timezone": business.timezone,
        "expected_languages": business.expected_languages,
        "numbers": [n.e164 for n in business.numbers],
        "greeting_file": business.greeting_file,
        "greeting_text": business.greeting_text,
    }
