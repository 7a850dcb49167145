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

from moked.db.models import Business, Caller, PhoneNumber
from moked.greetings import greeting_url, is_playable
from moked.ownership import hand_over
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


def current_blocked(session: Session) -> dict[str, frozenset[str]]:
    """Each business number's blocked callers as the database has them now (moked.callers):
    what the outage path rejects."""
    rows = session.execute(
        select(PhoneNumber.e164, Caller.number)
        .join(Caller, Caller.business_id == PhoneNumber.business_id)
        .where(Caller.blocked.is_(True))
    ).all()
    blocked: dict[str, set[str]] = {}
    for number, caller in rows:
        blocked.setdefault(number, set()).add(caller)
    return {number: frozenset(callers) for number, callers in blocked.items()}


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
        self._blocked: dict[str, frozenset[str]] = {}
        """The blocked callers this process last wrote per number (see `remember_blocked`)."""

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
            hand_over(self._directory, temporary)  # as root (a test): the webhooks' own
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

    # --- blocked callers ----------------------------------------------------------------------
    # While Postgres is down a blocked caller must not be greeted either: each business
    # number's blocked callers are kept beside the answers (blocked/<digits>.json), written
    # when a call is rejected and rebuilt from the database with the answers. An unblock
    # reaches the copy when the number next rings or at the next rebuild.

    def _blocked_path(self, number: str) -> Path:
        return self._directory / "blocked" / self._path(number).name

    def _read_blocked(self, number: str) -> frozenset[str]:
        path = self._blocked_path(number)
        if path.name == ".json":
            return frozenset()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return frozenset()
        except (OSError, ValueError) as exc:
            log.warning("unreadable blocked callers for %s: %s", number, exc)
            return frozenset()
        return frozenset(str(n) for n in data) if isinstance(data, list) else frozenset()

    def _write_blocked(self, number: str, callers: frozenset[str]) -> bool:
        path = self._blocked_path(number)
        if path.name == ".json":
            return False
        try:
            if not callers:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
                temporary.write_text(json.dumps(sorted(callers)), encoding="utf-8")
                os.replace(temporary, path)
        except OSError as exc:
            log.warning("could not keep the blocked callers of %s: %s", number, exc)
            return False
        self._blocked[number] = callers
        return True

    def remember_blocked(self, number: str, caller: str, blocked: bool = True) -> None:
        """The database said whether `caller` is blocked at `number`. Costs a dictionary
        lookup unless it changes what this process knows."""
        known = self._blocked.get(number)
        if known is None:
            if not blocked:
                return  # nothing written here for this number: nothing to take back
            known = self._read_blocked(number)
        if (caller in known) == blocked:
            self._blocked[number] = known
            return
        current = self._read_blocked(number)  # another process may have written since
        self._write_blocked(number, current | {caller} if blocked else current - {caller})

    def is_blocked(self, number: str, caller: str | None) -> bool:
        """On the outage path: whether `caller` was blocked at `number` when last known."""
        return bool(caller) and caller in self._read_blocked(number)

    def rebuild_blocked(self, blocked: Mapping[str, frozenset[str]]) -> int:
        """Make the blocked lists say what the database said; returns how many changed."""
        changed = 0
        for number, callers in blocked.items():
            if self._read_blocked(number) != callers and self._write_blocked(number, callers):
                changed += 1
        known = {self._blocked_path(number).name for number in blocked}
        try:
            stale = [p for p in (self._directory / "blocked").glob("*.json") if p.name not in known]
        except OSError:
            stale = []
        for path in stale:
            try:
                path.unlink()
                changed += 1
            except OSError:
                continue
        self._blocked.clear()
        return changed
