"""A durable on-disk spool for webhook events that could not reach Postgres.

One file per event, written to a temporary name, fsynced and renamed, so a crash never
leaves half an event. The webhooks' own upkeep process (services/webhooks/upkeep.py) and,
where it shares the directory, the reconciler replay the files in arrival order and
delete each one only after its transaction committed; two replayers of one directory are
harmless (an event is logged once by its id).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from moked.intake import InboundEvent
from moked.ownership import hand_over
from moked.statuses import EventSource


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def put(self, event: InboundEvent) -> Path:
        # Callers' numbers and messages: readable by the service's own user only (the
        # webhooks write, the reconciler reads; one user natively and in the images).
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.directory.stat().st_mode & 0o077:
            self.directory.chmod(0o700)
        name = f"{time.time_ns():020d}-{event.event_id}.json"
        final = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "w", encoding="utf-8") as handle:
            json.dump(event.to_json(), handle, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
        hand_over(self.directory, final)  # written as root: the services' to replay
        directory_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
        return final

    def pending(self) -> Iterator[tuple[Path, InboundEvent]]:
        """Events in arrival order; a file that does not parse is set aside, not lost."""
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                event = InboundEvent.from_json(data, source=EventSource.SPOOL)
            except FileNotFoundError:
                continue  # another replayer of this directory applied it meanwhile
            except (OSError, ValueError, KeyError) as exc:
                path.rename(path.with_suffix(".bad"))
                raise SpoolCorrupt(f"{path.name}: {exc}") from exc
            yield path, event

    def count(self) -> int:
        return len(list(self.directory.glob("*.json"))) if self.directory.is_dir() else 0

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)

    @staticmethod
    def quarantine(path: Path) -> Path:
        """Set aside an event the database refuses, so it cannot block the ones after it."""
        target = path.with_suffix(".bad")
        path.rename(target)
        return target


class SpoolCorrupt(ValueError):
    """A spool file could not be read; it was renamed to *.bad for an operator."""
