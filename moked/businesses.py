"""Businesses and their numbers: creating, finding and describing them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from moked.db.models import Business, PhoneNumber
from moked.greetings import store_greeting
from moked.phone import to_e164


class BusinessError(ValueError):
    """A business operation that cannot be done as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class BusinessSpec:
    name: str
    numbers: tuple[str, ...] = ()
    greeting_mp3: bytes | None = None
    greeting_text: str | None = None
    language: str = "he-IL"
    timezone: str = "Asia/Jerusalem"


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


def upsert_business(session: Session, spec: BusinessSpec, greetings_dir: Path) -> Business:
    """Create the business, or update the one with this name: running it twice is harmless."""
    name = spec.name.strip()
    if not name:
        raise BusinessError("a business needs a name")
    business = business_named(session, name)  # a name, even "7": never business #7
    if business is None:
        business = Business(name=name, language=spec.language, timezone=spec.timezone)
        session.add(business)
        session.flush()
    business.language = spec.language
    business.timezone = spec.timezone
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
        "numbers": [n.e164 for n in business.numbers],
        "greeting_file": business.greeting_file,
        "greeting_text": business.greeting_text,
    }
