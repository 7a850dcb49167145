"""Outages: callers are still greeted and recorded, and no event is lost."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from moked.db.models import Call, WebhookEvent
from moked.db.session import reset_engine, session_scope
from moked.greetings import synthesize_mp3
from moked.statuses import CallStatus, EventSource
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid


def eventually(check: Callable[[], bool], timeout: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except SQLAlchemyError:
            reset_engine()
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached within {timeout} s")


def twiml_verbs(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].split(";")[0] == "text/xml"
    return [child.tag for child in ET.fromstring(response.content)]


def call_row(call_sid: str) -> Call | None:
    with session_scope() as session:
        return session.scalar(select(Call).where(Call.call_sid == call_sid))


def test_postgres_down_still_answers_and_replays_after(
    stack: StackUnderTest, make_business
) -> None:
    business = make_business(greeting_mp3=synthesize_mp3("welcome", "en"))
    number = business.numbers[0].e164
    # One call while Postgres is up: its answer is remembered for every worker.
    stack.post("/webhook/incoming_call", call_params(new_call_sid(), number))

    call_sid = new_call_sid()
    stack.supervisorctl("stop", "postgres")
    try:
        incoming = stack.post("/webhook/incoming_call", call_params(call_sid, number))
        # More callers during the outage land on other gunicorn workers and threads.
        others = [
            stack.post("/webhook/incoming_call", call_params(new_call_sid(), number))
            for _ in range(8)
        ]
        status = stack.post(
            "/webhook/call_status",
            call_params(
                call_sid, number, CallStatus="completed", CallDuration="4", SequenceNumber="2"
            ),
        )
    finally:
        stack.supervisorctl("start", "postgres")
        reset_engine()

    verbs = twiml_verbs(incoming)
    assert verbs[:3] == ["Play", "Pause", "Record"], "the last known greeting is still played"
    for other in others:
        assert twiml_verbs(other)[:3] == ["Play", "Pause", "Record"], "whichever worker answers"
    assert status.status_code == 200

    try:
        eventually(
            lambda: (row := call_row(call_sid)) is not None and row.status is CallStatus.COMPLETED,
            timeout=150.0,
            what="spooled events replayed",
        )
    except AssertionError as exc:
        spool = sorted(p.name for p in stack.settings.spool_dir.iterdir())
        log = (stack.layout.log_dir / "reconciler.log").read_text()[-3000:]
        raise AssertionError(f"{exc}\nspool: {spool}\nreconciler log:\n{log}") from None
    row = call_row(call_sid)
    assert row is not None
    assert row.business_id == business.id
    assert row.duration_seconds == 4
    with session_scope() as session:
        sources = session.scalars(
            select(WebhookEvent.source).where(WebhookEvent.call_sid == call_sid)
        ).all()
    assert sorted(sources) == [EventSource.SPOOL, EventSource.SPOOL]


def test_app_down_nginx_answers_fallback_twiml_and_nothing_is_lost(
    stack: StackUnderTest, make_business
) -> None:
    business = make_business()
    number = business.numbers[0].e164
    call_sid = new_call_sid()
    stack.supervisorctl("stop", "webhooks")
    try:
        incoming = stack.post("/webhook/incoming_call", call_params(call_sid, number))
        thanks = stack.post(
            "/webhook/handle_recording",
            call_params(
                call_sid,
                number,
                RecordingSid="RE" + "a" * 32,
                RecordingUrl="http://127.0.0.1:9/r",
                RecordingDuration="3",
            ),
        )
        status = stack.post(
            "/webhook/call_status",
            call_params(
                call_sid, number, CallStatus="completed", CallDuration="9", SequenceNumber="2"
            ),
        )
        forged = stack.post(
            "/webhook/call_status", call_params(new_call_sid(), number), signature="AAAA"
        )
    finally:
        stack.supervisorctl("start", "webhooks")

    assert twiml_verbs(incoming) == ["Say", "Pause", "Record", "Say", "Hangup"]
    assert twiml_verbs(thanks) == ["Say", "Hangup"]
    assert status.status_code == 200
    assert status.headers["Content-Type"].startswith("text/plain")
    assert forged.status_code == 200  # nginx cannot check; the replay does

    eventually(
        lambda: (row := call_row(call_sid)) is not None and row.status is CallStatus.COMPLETED,
        what="nginx fallback log replayed",
    )
    row = call_row(call_sid)
    assert row is not None
    assert row.business_id == business.id
    with session_scope() as session:
        replayed = session.scalar(
            select(func.count())
            .select_from(WebhookEvent)
            .where(
                WebhookEvent.call_sid == call_sid,
                WebhookEvent.source == EventSource.NGINX_FALLBACK,
            )
        )
    assert replayed == 3


def test_fallback_voice_url_is_static_twiml(stack: StackUnderTest) -> None:
    import requests

    response = requests.post(
        stack.base + "/twiml/fallback/incoming_call", data={"ErrorCode": "11200"}, timeout=5
    )
    assert twiml_verbs(response)[:3] == ["Say", "Pause", "Record"]


def test_deleted_greeting_falls_back_to_say(stack: StackUnderTest, make_business) -> None:
    business = make_business(
        greeting_mp3=synthesize_mp3("hello", "en"), greeting_text='ברוכים הבאים ל"מוקד" & <שות\'>'
    )
    (stack.settings.greetings_dir / business.greeting_file).unlink()

    response = stack.post(
        "/webhook/incoming_call", call_params(new_call_sid(), business.numbers[0].e164)
    )

    root = ET.fromstring(response.content)
    assert [c.tag for c in root][:3] == ["Say", "Pause", "Record"]
    assert root.find("Play") is None
    say = root.find("Say")
    assert say is not None
    assert say.text == 'ברוכים הבאים ל"מוקד" & <שות\'>'
    assert b"&amp;" in response.content and b"&lt;" in response.content


def test_hebrew_and_xml_special_business_names_are_escaped(
    stack: StackUnderTest, make_business
) -> None:
    name = 'מספרה "הדס" & בניו <בע״מ>'
    business = make_business(name=name, greeting_text="שלום & <ברוכים> 'הבאים'")

    response = stack.post(
        "/webhook/incoming_call", call_params(new_call_sid(), business.numbers[0].e164)
    )

    root = ET.fromstring(response.content)
    say = root.find("Say")
    assert say is not None
    assert say.text == "שלום & <ברוכים> 'הבאים'"
    assert say.get("language") == "he-IL"


def test_a_nul_byte_is_stored_not_spooled_forever(stack: StackUnderTest, make_business) -> None:
    """Postgres JSONB refuses NUL; such garbage must neither be lost nor block the spool."""
    business = make_business()
    call_sid = new_call_sid()
    params = call_params(call_sid, business.numbers[0].e164, CallerName="evil\x00name")

    response = stack.post("/webhook/call_status", params)

    assert response.status_code == 200
    row = call_row(call_sid)
    assert row is not None
    assert not list(stack.settings.spool_dir.glob("*.json"))
