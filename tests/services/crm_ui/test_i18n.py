"""Hebrew first: every text of the CRM has a Hebrew translation."""

from __future__ import annotations

import re
from pathlib import Path

from crm_ui.messages import HEBREW
from crm_ui.present import CALL_STATUS_LABELS, PROCESSING_LABELS

CRM = Path(__file__).resolve().parents[3] / "services" / "crm-ui"
MESSAGE = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
LABEL_PAIR = re.compile(r'\("\w+", "([^"]+)"\)')


def message_ids() -> set[str]:
    found: set[str] = set()
    for path in [*CRM.glob("templates/*.html"), *CRM.glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        for double, single in MESSAGE.findall(text):
            found.add(double or single)
        if path.name == "inbox.html":
            found.update(LABEL_PAIR.findall(text))
    found.discard("...")  # the docstring example in i18n.py
    return found


def test_every_message_has_hebrew() -> None:
    ids = message_ids() | set(CALL_STATUS_LABELS.values()) | set(PROCESSING_LABELS.values())
    missing = sorted(m for m in ids if m not in HEBREW)
    assert not missing, missing
    assert len(ids) > 150


def test_placeholders_survive_translation() -> None:
    for english, hebrew in HEBREW.items():
        assert set(re.findall(r"{[^}]+}", english)) == set(re.findall(r"{[^}]+}", hebrew)), english
