"""Facts defined once: the enums in moked/statuses.py are what the alert rules, their tests
and the dashboards match, and only moked/recordings.py changes a recording's state."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from moked.statuses import CallbackStatus, Channel, Endpoint, JobOutcome, NotificationOutcome

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
LABEL_MATCHER = re.compile(r'\b(outcome|endpoint|channel)\s*(=~|!~|!=|=)\s*\\?"([^"\\]*)\\?"')
ENUMS: dict[str, set[str]] = {
    # Three metrics carry `outcome`: transcription jobs (JobOutcome), notification
    # attempts (NotificationOutcome) and callbacks (a final CallbackStatus).
    "outcome": {o.value for o in JobOutcome}
    | {o.value for o in NotificationOutcome}
    | {s.value for s in CallbackStatus if s.is_final},
    "endpoint": {e.value for e in Endpoint},
    "channel": {c.value for c in Channel},
}


def label_values(text: str) -> list[tuple[str, str]]:
    """(label, value) for every literal matcher; a regex matcher gives each alternative."""
    found = []
    for label, _op, value in LABEL_MATCHER.findall(text):
        if value.startswith("$"):
            continue  # a Grafana variable, filled from the metric's own values
        found += [(label, part) for part in value.split("|")]
    return found


def monitoring_files() -> list[Path]:
    return sorted(
        p for p in MONITORING.rglob("*") if p.suffix in (".yml", ".yaml", ".json") and p.is_file()
    )


def test_rules_and_dashboards_name_only_values_the_code_emits() -> None:
    seen: dict[str, set[str]] = {"outcome": set(), "endpoint": set(), "channel": set()}
    for path in monitoring_files():
        for label, value in label_values(path.read_text(encoding="utf-8")):
            assert value in ENUMS[label], f"{path.relative_to(ROOT)}: {label}={value!r}"
            seen[label].add(value)
    # The matchers were found at all (a pattern that matches nothing would pass vacuously).
    assert {"failed", "retry", "ready", "empty", "sent"} <= seen["outcome"]
    assert {"incoming_call", "call_status"} <= seen["endpoint"]


def test_the_label_check_can_fail() -> None:
    bad = 'sum(rate(moked_transcription_jobs_total{outcome=~"ready|finished"}[5m]))'
    assert ("outcome", "finished") in label_values(bad)
    assert "finished" not in ENUMS["outcome"]


def _callee(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _writes_processing_status(node: ast.Call) -> bool:
    """setattr(r, "processing_status", …), Recording(processing_status=…), and
    update(Recording).values(processing_status=…)."""
    name = _callee(node)
    if name == "setattr":
        return any(
            isinstance(a, ast.Constant) and a.value == "processing_status" for a in node.args
        )
    keywords = {k.arg for k in node.keywords}
    return name in ("Recording", "values") and "processing_status" in keywords


def _assigns_processing_status(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Call) and _writes_processing_status(node):
            lines.append(node.lineno)
        lines += [
            t.lineno
            for t in targets
            if isinstance(t, ast.Attribute) and t.attr == "processing_status"
        ]
    return lines


@pytest.mark.parametrize("package", ["moked", "services"])
def test_only_recordings_changes_a_recordings_state(package: str) -> None:
    owner = ROOT / "moked" / "recordings.py"
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path == owner or "migrations" in path.parts:
            continue
        for line in _assigns_processing_status(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert offenders == []


def test_the_assignment_check_can_fail() -> None:
    assert _assigns_processing_status(ast.parse("r.processing_status = 'ready'")) == [1]
    assert _assigns_processing_status(ast.parse("setattr(r, 'processing_status', x)")) == [1]
    assert _assigns_processing_status(ast.parse("Recording(processing_status=x)")) == [1]
    statement = "update(Recording).values(processing_status='ready')"
    assert _assigns_processing_status(ast.parse(statement)) == [1]
    owner = (ROOT / "moked" / "recordings.py").read_text(encoding="utf-8")
    assert _assigns_processing_status(ast.parse(owner)), "the owner itself assigns it"
