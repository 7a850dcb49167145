"""Greeting text and versions, pagination, and the CRM's own metrics."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from urllib.parse import quote

import requests
from sqlalchemy import select

from moked.accounts import Role, add_user
from moked.businesses import BusinessSpec, upsert_business
from moked.db.models import Business, Call
from moked.db.session import session_scope
from moked.greetings import synthesize_mp3
from moked.statuses import CallStatus
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, unique_number
from tests.services.crm_ui.conftest import PASSWORD, Client
from tests.services.webhooks.test_call_path import parse_twiml


def fresh_business(stack: StackUnderTest, **spec: object) -> tuple[Business, str]:
    with session_scope() as session:
        business = upsert_business(
            session,
            BusinessSpec(name=f"Gamma {secrets.token_hex(3)}", numbers=(unique_number(),), **spec),  # type: ignore[arg-type]
            stack.settings.greetings_dir,
        )
        session.refresh(business)
        _ = business.numbers
        session.expunge(business)
        email = f"staff-{secrets.token_hex(3)}@gamma.test"
        # An owner: owners manage the business's greetings.
        add_user(
            session,
            email,
            role=Role.STAFF,
            business=str(business.id),
            password=PASSWORD,
            owner=True,
        )
    return business, email


def test_greeting_text_versions_and_fallback_to_say(stack: StackUnderTest) -> None:
    business, email = fresh_business(stack, greeting_mp3=synthesize_mp3("first", "en"))
    number = business.numbers[0].e164
    client = Client(stack)
    assert client.login(email).status_code == 302
    page = f"/businesses/{business.id}"

    text = "שלום, הגעתם למרפאת השיניים. השאירו הודעה ונחזור אליכם."
    saved = client.post(f"{page}/greeting-text", {"csrf_token": client.csrf(page), "text": text})
    assert saved.status_code == 302
    # The MP3 still wins while it is active.
    root = parse_twiml(stack.post("/webhook/incoming_call", call_params(new_call_sid(), number)))
    assert root.find("Play") is not None
    # The active version cannot be deleted.
    active = business.greeting_file
    assert active
    refused = client.post(f"{page}/greetings/{active}/delete", {"csrf_token": client.csrf(page)})
    assert refused.status_code == 302 and (stack.settings.greetings_dir / active).exists()

    off = client.post(f"{page}/greetings/deactivate", {"csrf_token": client.csrf(page)})
    assert off.status_code == 302
    root = parse_twiml(stack.post("/webhook/incoming_call", call_params(new_call_sid(), number)))
    assert root.find("Play") is None
    say = root.find("Say")
    assert say is not None and say.text == text and say.get("language") == "he-IL"

    # Re-activate the stored version from the list, then delete is refused again; a
    # non-active version can be deleted.
    again = client.post(f"{page}/greetings/{active}/activate", {"csrf_token": client.csrf(page)})
    assert again.status_code == 302
    root = parse_twiml(stack.post("/webhook/incoming_call", call_params(new_call_sid(), number)))
    play = root.find("Play")
    assert play is not None and play.text and play.text.endswith(active)
    other = client.post(f"{page}/greetings/deactivate", {"csrf_token": client.csrf(page)})
    assert other.status_code == 302
    gone = client.post(f"{page}/greetings/{active}/delete", {"csrf_token": client.csrf(page)})
    assert gone.status_code == 302 and not (stack.settings.greetings_dir / active).exists()
    # Another business's file name is not ours to touch.
    foreign = client.post(
        f"{page}/greetings/business_999999_aaaaaaaaaaaa.mp3/activate",
        {"csrf_token": client.csrf(page)},
    )
    assert foreign.status_code == 404


def test_inbox_pages_newest_first(stack: StackUnderTest) -> None:
    business, email = fresh_business(stack)
    start = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)
    with session_scope() as session:
        for i in range(27):
            session.add(
                Call(
                    call_sid=new_call_sid(),
                    business_id=business.id,
                    from_number=f"+97254555{i:04d}",
                    to_number=business.numbers[0].e164,
                    status=CallStatus.COMPLETED,
                    started_at=start + dt.timedelta(minutes=i),
                    duration_seconds=30 + i,
                )
            )
    client = Client(stack)
    assert client.login(email).status_code == 302
    first = client.get("/").text
    rows = re.findall(r'data-call-sid="(CA\w+)"', first)
    assert len(rows) == 25
    assert "עמוד 1 מתוך 2" in first
    assert "054-555-0026" in first.split("data-call-sid")[1]  # newest first
    second = client.get("/?page=2").text
    assert len(re.findall(r'data-call-sid="(CA\w+)"', second)) == 2
    assert "054-555-0000" in second
    # Dates are the business's days (Asia/Jerusalem): 1 Nov 08:00-08:26 UTC.
    day = client.get("/?from=2026-11-01&to=2026-11-01").text
    assert "27 שיחות" in day
    assert "0 שיחות" in client.get("/?from=2026-11-02").text
    # LIKE wildcards are literal in a search.
    assert "0 שיחות" in client.get("/?q=%25").text
    assert "0 שיחות" in client.get("/?q=_").text
    assert "27 שיחות" in client.get("/?q=054-555").text  # the caller's number, as staff type it
    # Digits inside a word are not a number: "order-a5b5c5" must not find 054-555-….
    assert "0 שיחות" in client.get("/?q=order-a5b5c5").text
    # A number written with spaces is one number, in any of the ways people write it.
    for spaced in ("054 555 0026", "+972 54 555 0026", "054-555 0026"):
        found = client.get("/?q=" + quote(spaced)).text
        assert re.findall(r'data-call-sid="(CA\w+)"', found) == [rows[0]], spaced
    with session_scope() as session:
        total = len(session.scalars(select(Call).where(Call.business_id == business.id)).all())
    assert total == 27


def test_login_outcomes_are_counted_in_metrics(stack: StackUnderTest) -> None:
    Client(stack).login(f"nobody-{secrets.token_hex(3)}@nowhere.test", "wrong-password-1")
    metrics = requests.get(f"http://127.0.0.1:{stack.settings.crm_port}/metrics", timeout=10).text
    assert re.search(r'moked_crm_logins_total\{outcome="failure"\} [1-9]', metrics)
    # Not reachable through nginx.
    assert requests.get(f"{stack.base}/metrics", timeout=10).status_code == 404


def test_database_outage_shows_a_friendly_page_then_recovers(stack: StackUnderTest) -> None:
    _, email = fresh_business(stack)
    client = Client(stack)
    assert client.login(email).status_code == 302
    stack.supervisorctl("stop", "postgres")
    try:
        down = client.get("/")
        assert down.status_code == 503
        assert "אינו זמין" in down.text
        assert down.headers["Content-Type"].startswith("text/html")
        assert requests.get(f"{stack.base}/api/v1/calls", timeout=10).status_code in (401, 503)
    finally:
        stack.supervisorctl("start", "postgres")
    deadline = time.monotonic() + 60
    while client.get("/").status_code != 200:
        assert time.monotonic() < deadline, "the CRM did not recover after Postgres came back"
        time.sleep(0.5)
