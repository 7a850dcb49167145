"""What a caller hears when a business's number rings, and the copy kept for outages.

The answer for a number is built from its business (greeting MP3 or text, recording
options). While Postgres is down the webhooks still owe Twilio that business's answer, so
the last answer given for each number is kept on disk, shared by every gunicorn worker
(a per-process copy would greet the same caller differently depending on the worker).
A process started on an empty state directory (a new pod, a lost volume) rebuilds the
copy from the database before any caller rings (`current_answers`, `rebuild`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from moked.db.models import Business, PhoneNumber
from moked.greetings import greeting_url, is_playable
from moked.settings import Settings
from moked.twilio import twiml

log = logging.getLogger(__name__)


class BusinessGreeting(Protocol):
    """The business fields an answer is built from (an ORM row or a query result)."""

    @property
    def greeting_file(self) -> str | None: ...
    @property
    def greeting_text(self) -> str | None: ...
    @property
    def language(self) -> str: ...
    @property
    def record_max_length(self) -> int: ...
    @property
    def record_timeout(self) -> int: ...
    @property
    def record_finish_on_key(self) -> str: ...
    @property
    def record_play_beep(self) -> bool: ...
    @property
    def record_trim(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class CallAnswer:
    greeting: twiml.Greeting
    record: twiml.RecordOptions

    def to_json(self) -> dict[str, Any]:
        return {"greeting": asdict(self.greeting), "record": asdict(self.record)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallAnswer:
        return cls(
            greeting=twiml.Greeting(**data["greeting"]),
            record=twiml.RecordOptions(**data["record"]),
        )


def default_answer(settings: Settings) -> CallAnswer:
    """For an unknown number, or when nothing better is known: greet, then record."""
    return CallAnswer(
        greeting=twiml.Greeting(audio_url=None, text=settings.default_greeting_text),
        record=twiml.RecordOptions(),
    )


def answer_for(settings: Settings, business: BusinessGreeting | None) -> CallAnswer:
    """The business's MP3 when it is on disk (never a URL to a missing file), else its text."""
    if business is None:
        return default_answer(settings)
    audio_url = None
    if business.greeting_file and is_playable(settings.greetings_dir, business.greeting_file):
        audio_url = greeting_url(settings.public_base, business.greeting_file)
    return CallAnswer(
        greeting=twiml.Greeting(
            audio_url=audio_url,
            text=business.greeting_text or settings.default_greeting_text,
            language=business.language or twiml.SAY_LANGUAGE,
        ),
        record=twiml.RecordOptions(
            max_length=business.record_max_length,
            timeout=business.record_timeout,
            finish_on_key=business.record_finish_on_key,
            play_beep=business.record_play_beep,
            trim=business.record_trim,
        ),
    )


def playable(settings: Settings, answer: CallAnswer) -> CallAnswer:
    """The answer, with its MP3 replaced by the text when the file is no longer on disk
    (a remembered answer may name a greeting deleted since)."""
    audio_url = answer.greeting.audio_url
    if audio_url is None or is_playable(settings.greetings_dir, audio_url.rsplit("/", 1)[-1]):
        return answer
    return dataclasses.replace(
        answer, greeting=dataclasses.replace(answer.greeting, audio_url=None)
    )


def current_answers(session: Session, settings: Settings) -> dict[str, CallAnswer]:
    """Every known number's answer as the database has it now: what a webhooks process
    started on an empty state directory writes before any caller rings."""
    rows = session.execute(
        select(PhoneNumber.e164, Business).join(Business, PhoneNumber.business_id == Business.id)
    ).all()
    return {number: answer_for(settings, business) for number, business in rows}


class LastKnownAnswers:
    """The last answer given per number, one small JSON file each, replaced atomically.

    A process rewrites a file when the answer differs from what it last wrote, or when its
    own write is older than `refresh_seconds`: the hot path costs a dictionary lookup, and
    a file another process overwrote with an older answer (a greeting changed back and
    forth) is put right within that time.
    """

    def __init__(self, directory: Path, refresh_seconds: float = 60.0) -> None:
        self._directory = directory
        self._refresh_seconds = refresh_seconds
        self._written: dict[str, tuple[CallAnswer, float]] = {}

    def _path(self, number: str) -> Path:
        # Twilio's To is E.164 ("+9723…"); anything else is not worth remembering.
        safe = "".join(c for c in number if c.isdigit())
        return self._directory / f"{safe}.json"

    def remember(self, number: str, answer: CallAnswer) -> None:
        written = self._written.get(number)
        if not number or (
            written is not None
            and written[0] == answer
            and time.monotonic() - written[1] < self._refresh_seconds
        ):
            return
        if self._write(number, answer):
            self._written[number] = (answer, time.monotonic())

    def _write(self, number: str, answer: CallAnswer) -> bool:
        path = self._path(number)
        if path.name == ".json":
            return False
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            temporary.write_text(json.dumps(answer.to_json()), encoding="utf-8")
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("could not keep the last answer for %s: %s", number, exc)
            return False
        return True

    def rebuild(self, answers: Mapping[str, CallAnswer], *, read_at: float) -> tuple[int, int]:
        """Make the store say what the database said at `read_at` (a time.time()): write
        each number whose file differs, and remove the files of numbers it no longer knows
        (no caller of an unassigned number hears its old business) unless a worker wrote
        them since (a number added after the read). Returns (written, removed)."""
        written = removed = 0
        for number, answer in answers.items():
            if self.recall(number) != answer and self._write(number, answer):
                written += 1
        known = {self._path(number).name for number in answers}
        try:
            files = [p for p in self._directory.glob("*.json") if p.name not in known]
            for path in files:
                try:
                    if path.stat().st_mtime < read_at:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        except OSError as exc:
            log.warning("could not tidy the last answers in %s: %s", self._directory, exc)
        return written, removed

    def recall(self, number: str) -> CallAnswer | None:
        path = self._path(number)
        if path.name == ".json":
            return None
        try:
            return CallAnswer.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable last answer for %s: %s", number, exc)
            return None
