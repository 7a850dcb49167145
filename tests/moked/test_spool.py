"""moked/spool.py: events kept on disk while Postgres is down, whole or not at all, given
back in arrival order; what cannot be read or applied is set aside, never lost."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest

from moked.intake import InboundEvent
from moked.spool import Spool, SpoolCorrupt
from moked.statuses import Endpoint, EventSource
from tests.helpers import call_params, new_call_sid


def _event(**extra: str) -> InboundEvent:
    params = call_params(new_call_sid(), "+97235550000", **extra)
    params["Digits"] = ["1", "2"]  # type: ignore[assignment]  # a name sent twice
    return InboundEvent(Endpoint.CALL_STATUS, params, dt.datetime.now(dt.UTC))


def test_an_event_comes_back_as_it_went_in(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")  # created on first use
    event = _event(CallerName="שלום & <ok>")

    path = spool.put(event)

    assert path.parent == tmp_path / "spool" and path.suffix == ".json"
    ((pending_path, back),) = list(spool.pending())
    assert pending_path == path
    assert (back.endpoint, back.params, back.event_id) == (
        event.endpoint,
        event.params,
        event.event_id,
    )
    assert back.received_at == event.received_at
    assert back.source is EventSource.SPOOL  # whatever it was when it was kept
    assert spool.count() == 1


def test_events_come_back_in_arrival_order_and_done_removes_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    events = [_event(SequenceNumber=str(n)) for n in range(12)]
    for event in events:
        spool.put(event)

    assert [e.event_id for _, e in spool.pending()] == [e.event_id for e in events]
    first, _ = next(iter(spool.pending()))
    Spool.done(first)
    Spool.done(first)  # twice: harmless (the reconciler may be interrupted)
    assert [e.event_id for _, e in spool.pending()] == [e.event_id for e in events[1:]]
    assert spool.count() == 11


def test_a_file_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    """Written to a hidden temporary name and renamed: a crash mid-write leaves a file the
    replay does not read; a finished one is complete JSON."""
    spool = Spool(tmp_path)
    (tmp_path / ".00000000000000000001-torn.json.tmp").write_text('{"endpoint": "call_')
    path = spool.put(_event())

    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [path.name]
    assert json.loads(path.read_text(encoding="utf-8"))["event_id"]
    assert [p for p, _ in spool.pending()] == [path]


def test_an_unreadable_file_is_set_aside_not_lost(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    torn = tmp_path / "00000000000000000000-torn.json"
    torn.write_text('{"endpoint": "call_status", "par')
    unknown = tmp_path / "00000000000000000001-unknown.json"
    unknown.write_text(json.dumps({**_event().to_json(), "endpoint": "no_such_endpoint"}))
    good = spool.put(_event())

    with pytest.raises(SpoolCorrupt, match="torn"):
        list(spool.pending())
    assert torn.with_suffix(".bad").read_text().startswith('{"endpoint"')
    with pytest.raises(SpoolCorrupt, match="unknown"):
        list(spool.pending())
    assert unknown.with_suffix(".bad").exists()
    assert [p for p, _ in spool.pending()] == [good]
    assert spool.count() == 1


def test_quarantine_sets_an_event_aside_so_the_next_ones_go_on(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    refused, kept = spool.put(_event()), spool.put(_event())

    bad = Spool.quarantine(refused)

    assert bad == refused.with_suffix(".bad") and bad.exists()
    assert [p for p, _ in spool.pending()] == [kept]


def test_an_empty_or_missing_spool_has_nothing_pending(tmp_path: Path) -> None:
    assert list(Spool(tmp_path / "never-made").pending()) == []
    assert Spool(tmp_path / "never-made").count() == 0
    assert list(Spool(tmp_path).pending()) == []


def test_spooled_events_are_private_to_the_service(tmp_path: Path) -> None:
    """Callers' numbers wait here: the directory 0700 and each file 0600, even where the
    directory was made before with looser modes."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    path = Spool(directory).put(_event())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_file_another_replayer_took_is_skipped_not_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    first, second = spool.put(_event()), spool.put(_event())
    pending = spool.pending()

    path, _ = next(pending)
    assert path == first
    Spool.done(second)  # the reconciler replayed it meanwhile (same directory)

    assert list(pending) == []
    assert not list(spool.directory.glob("*.bad"))
