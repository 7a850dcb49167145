"""What Moked stored for simulated calls: read back from Postgres to check nothing was lost."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select

from moked.db.models import Call, Recording
from moked.db.session import session_scope
from moked.statuses import ProcessingStatus

POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class StoredCall:
    call_sid: str
    call_rows: int
    status: str | None
    recording_rows: int
    recording_sid: str | None
    processing_status: str | None
    transcript: str | None
    completed_at: dt.datetime | None
    finished_at: dt.datetime | None
    """When the transcript (or the final failure) was written."""

    @property
    def is_final(self) -> bool:
        if self.processing_status is None:
            return False
        return ProcessingStatus(self.processing_status).is_final

    @property
    def is_ready(self) -> bool:
        return self.processing_status == ProcessingStatus.READY.value


def stored_calls(call_sids: Iterable[str]) -> dict[str, StoredCall]:
    """One entry per CallSid found (row counts included, so duplicates would show)."""
    sids = list(dict.fromkeys(call_sids))
    found: dict[str, StoredCall] = {}
    if not sids:
        return found
    with session_scope() as session:
        for start in range(0, len(sids), 500):
            chunk = sids[start : start + 500]
            call_counts = dict(
                session.execute(
                    select(Call.call_sid, func.count())
                    .where(Call.call_sid.in_(chunk))
                    .group_by(Call.call_sid)
                ).all()
            )
            calls = {
                c.call_sid: c for c in session.scalars(select(Call).where(Call.call_sid.in_(chunk)))
            }
            recordings: dict[str, list[Recording]] = {}
            rows = session.execute(
                select(Call.call_sid, Recording)
                .join(Recording, Recording.call_id == Call.id)
                .where(Call.call_sid.in_(chunk))
                .order_by(Recording.id)
            ).all()
            for call_sid, recording in rows:
                recordings.setdefault(call_sid, []).append(recording)
            for sid, call in calls.items():
                recs = recordings.get(sid, [])
                last = recs[-1] if recs else None
                found[sid] = StoredCall(
                    call_sid=sid,
                    call_rows=int(call_counts.get(sid, 0)),
                    status=call.status.value if call.status else None,
                    recording_rows=len(recs),
                    recording_sid=last.recording_sid if last else None,
                    processing_status=last.processing_status.value if last else None,
                    transcript=last.transcript if last else None,
                    completed_at=last.completed_at if last else None,
                    finished_at=last.processing_finished_at if last else None,
                )
    return found


def wait_until_final(
    call_sids: Iterable[str], timeout: float, *, ready_only: bool = False
) -> dict[str, StoredCall]:
    """Poll until every call's recording is final (ready, empty, failed, absent) or timeout."""
    sids = list(call_sids)
    deadline = time.monotonic() + timeout
    while True:
        current = stored_calls(sids)
        done = all(
            sid in current and (current[sid].is_ready if ready_only else current[sid].is_final)
            for sid in sids
        )
        if done or time.monotonic() >= deadline:
            return current
        time.sleep(POLL_SECONDS)
