"""How a chaos run tells the app's full TwiML from nginx's fallback."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from moked.simulator.call import CallResult, Document
from moked.simulator.chaos import ChaosReport, classify_answer

FALLBACK = '<?xml version="1.0" encoding="UTF-8"?><Response><Say>x</Say><Record /></Response>'


def result_with(body: str, content_type: str) -> CallResult:
    result = CallResult(call_sid="CA" + "0" * 32, from_number="+1", to_number="+2")
    root = ET.fromstring(body)
    result.documents.append(Document("http://x/", 200, content_type, body.encode(), root))
    return result


def test_nginx_fallback_is_told_by_its_content_type_without_charset():
    assert classify_answer(result_with(FALLBACK, "text/xml"), FALLBACK) == "fallback"
    # The app answering the same default TwiML (unknown number) is not the fallback.
    assert classify_answer(result_with(FALLBACK, "text/xml; charset=utf-8"), FALLBACK) == "default"


def test_full_twiml_plays_the_business_greeting():
    body = "<Response><Play>http://x/g.mp3</Play><Record/></Response>"
    assert classify_answer(result_with(body, "text/xml; charset=utf-8"), FALLBACK) == "full"


def test_no_document_is_unanswered():
    result = CallResult(call_sid="CA" + "0" * 32, from_number="+1", to_number="+2")
    assert classify_answer(result, FALLBACK) == "none"


def test_table_names_every_count():
    table = ChaosReport(placed=3, lost=0).table()
    for label in ("calls placed", "nginx's fallback", "recordings stored", "duplicate rows"):
        assert label in table
    assert "| lost | 0 |" in table
