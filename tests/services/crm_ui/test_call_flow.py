"""Working through a list from the call page (issue 12, item 6): previous/next within the
inbox list the call was opened from, and "resolve and next" (moked.followup), in-process on
the test client."""

from __future__ import annotations

import datetime as dt
import html
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from moked.accounts import Role, add_user
from moked.db.models import Business, Call, FollowUpChange
from moked.db.session import session_scope
from moked.statuses import FollowUp, ProcessingStatus
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import recorded_call, settle

PASSWORD = "correct-horse-battery"
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
OPEN = {"view": ["open"]}
"""The inbox's default view, named in every link of the call page."""


def call_at(twilio: TwilioClient, business: Business, minutes: int, transcript: str) -> str:
    """A voicemail to `business` whose time is T0 + `minutes` (the inbox's order)."""
    call_sid, recording_sid = recorded_call(twilio, business.numbers[0].e164)
    with session_scope() as session:
        settle(session, recording_sid, ProcessingStatus.READY, transcript=transcript)
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        call.started_at = T0 + dt.timedelta(minutes=minutes)  # test data: a known order
    return call_sid


@dataclass(frozen=True)
class World:
    client: FlaskClient
    staff_id: int
    a: Business
    b: Business
    calls: dict[str, str]
    """name → CallSid; in A unless named b_…"""


@pytest.fixture
def world(
    stack: StackUnderTest,
    twilio: TwilioClient,
    crm_client: FlaskClient,
    make_business: Callable[..., Business],
) -> World:
    a = make_business(name=f"Flow A {secrets.token_hex(3)}")
    b = make_business(name=f"Flow B {secrets.token_hex(3)}")
    calls = {
        "a10": call_at(twilio, a, 10, "apple pie"),
        "b20": call_at(twilio, b, 20, "apple tart"),  # between A's calls in time
        "a30": call_at(twilio, a, 30, "banana bread"),
        "a40": call_at(twilio, a, 40, "apple crumble"),
        "a50": call_at(twilio, a, 50, "banana split"),
    }
    email = f"flow-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        staff_id = add_user(
            session, email, role=Role.STAFF, business=a.name, password=PASSWORD
        ).user_id
    answer = crm_client.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 302, answer.data
    return World(crm_client, staff_id, a, b, calls)


def link(page: str, element_id: str) -> str | None:
    tag = re.search(rf'<a\b[^>]*\bid="{element_id}"[^>]*>', page)
    href = re.search(r'href="([^"]+)"', tag.group(0)) if tag else None
    return html.unescape(href.group(1)) if href else None


def target(url: str | None) -> tuple[str, dict[str, list[str]]]:
    """(path, query) of a link or a redirect."""
    assert url is not None
    parts = urlsplit(url)
    return parts.path, parse_qs(parts.query)


def call_page(client: FlaskClient, call_sid: str, query: str = "") -> str:
    answer = client.get(f"/calls/{call_sid}" + (f"?{query}" if query else ""))
    assert answer.status_code == 200, answer.status_code
    return answer.get_data(as_text=True)


def test_previous_and_next_follow_the_inbox_order_and_its_filters(world: World) -> None:
    c, client = world.calls, world.client
    # Without a list named, the inbox's own (the Open view), newest first: a50, a40, a30,
    # a10 (B's call is not the user's); every link names the view.
    page = call_page(client, c["a30"])
    assert target(link(page, "call-prev")) == (f"/calls/{c['a40']}", OPEN)
    assert target(link(page, "call-next")) == (f"/calls/{c['a10']}", OPEN)  # never b20
    newest, oldest = call_page(client, c["a50"]), call_page(client, c["a10"])
    assert link(newest, "call-prev") is None and link(oldest, "call-next") is None
    assert target(link(oldest, "call-prev")) == (f"/calls/{c['a30']}", OPEN)
    assert target(link(page, "back-to-inbox")) == ("/", OPEN)

    # Searched for "apple" in All: a40 and a10 only, and every link keeps the list.
    page = call_page(client, c["a40"], "view=all&q=apple")
    apples = {"view": ["all"], "q": ["apple"]}
    assert target(link(page, "call-next")) == (f"/calls/{c['a10']}", apples)
    assert link(page, "call-prev") is None
    assert target(link(page, "back-to-inbox")) == ("/", apples)

    # The inbox's rows open the call within the same list.
    bananas = {"view": ["open"], "q": ["banana"], "handled": ["open"]}
    inbox = client.get("/?q=banana&handled=open").get_data(as_text=True)
    row = re.search(rf'class="row-link" href="([^"]*{c["a50"]}[^"]*)"', inbox)
    assert row is not None
    assert target(html.unescape(row.group(1))) == (f"/calls/{c['a50']}", bananas)
    page = call_page(client, c["a50"], "q=banana&handled=open&view=open")
    assert target(link(page, "call-next")) == (f"/calls/{c['a30']}", bananas)


def test_another_business_is_never_a_neighbour(world: World) -> None:
    c, client = world.calls, world.client
    # Even when asking for B's list by its id: the user's businesses only.
    page = call_page(client, c["a30"], f"business={world.b.id}")
    assert link(page, "call-next") is None and link(page, "call-prev") is None
    assert c["b20"] not in page
    assert client.get(f"/calls/{c['b20']}?business={world.b.id}").status_code == 404


@pytest.mark.parametrize(
    "query",
    ["from=2026-13-45", "page=0", "q=apple%00", "from=2026-12-01&to=2026-01-01", "per_page=x"],
)
def test_a_refused_filter_drops_the_neighbours_not_the_page(world: World, query: str) -> None:
    page = call_page(world.client, world.calls["a30"], query)
    assert link(page, "call-next") is None and link(page, "call-prev") is None
    assert 'id="back-to-inbox"' in page and 'id="resolve-next"' in page


def resolved_state(call_sid: str) -> tuple[FollowUp, int | None, dt.datetime | None, list[int]]:
    with session_scope() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        changes = session.scalars(
            select(FollowUpChange).where(
                FollowUpChange.call_id == call.id, FollowUpChange.to_status == FollowUp.RESOLVED
            )
        )
        return call.follow_up, call.handled_by_id, call.handled_at, [x.user_id for x in changes]


def test_resolve_and_next_resolves_then_opens_the_next_call_of_the_list(world: World) -> None:
    c, client = world.calls, world.client
    before = dt.datetime.now(dt.UTC)
    answer = client.post(f"/calls/{c['a40']}/resolve-and-next?view=open")
    assert answer.status_code == 302
    assert target(answer.headers["Location"]) == (f"/calls/{c['a30']}", OPEN)
    status, by, at, changes = resolved_state(c["a40"])
    assert status is FollowUp.RESOLVED and by == world.staff_id and changes == [world.staff_id]
    assert at is not None and before - dt.timedelta(seconds=5) <= at <= dt.datetime.now(dt.UTC)

    # The resolved call has left the Open list (not All): its neighbours there skip it,
    # and from it the list goes on where it was.
    page = call_page(client, c["a50"], "view=open")
    assert target(link(page, "call-next"))[0] == f"/calls/{c['a30']}"
    page = call_page(client, c["a50"], "view=all")
    assert target(link(page, "call-next"))[0] == f"/calls/{c['a40']}"
    page = call_page(client, c["a40"], "view=open")
    assert target(link(page, "call-next"))[0] == f"/calls/{c['a30']}"
    assert 'id="resolve-next"' not in page  # resolved already

    # The last call of the list: resolved, then back to the same inbox list, said so.
    last = client.post(f"/calls/{c['a10']}/resolve-and-next?view=open&q=apple")
    assert last.status_code == 302
    assert target(last.headers["Location"]) == ("/", {"view": ["open"], "q": ["apple"]})
    assert resolved_state(c["a10"])[0] is FollowUp.RESOLVED
    inbox = client.get(last.headers["Location"]).get_data(as_text=True)
    assert "השיחה סומנה כטופלה. אין עוד שיחות ברשימה הזו." in inbox

    # A refused filter: the call is still resolved, and the inbox says why the list is empty.
    odd = client.post(f"/calls/{c['a30']}/resolve-and-next?from=2026-13-45")
    assert odd.status_code == 302 and target(odd.headers["Location"])[0] == "/"
    assert resolved_state(c["a30"])[0] is FollowUp.RESOLVED


def test_resolve_and_next_on_another_business_call_is_404(world: World) -> None:
    answer = world.client.post(f"/calls/{world.calls['b20']}/resolve-and-next")
    assert answer.status_code == 404
    status, by, at, changes = resolved_state(world.calls["b20"])
    assert status is FollowUp.NEW and by is None and at is None and changes == []


def test_the_call_pages_forms_keep_the_list(world: World) -> None:
    """After a note or a callback logged by hand, previous/next still walk the same list."""
    c, client = world.calls, world.client
    apples = {"view": ["mine"], "q": ["apple"]}
    page = call_page(client, c["a40"], "view=mine&q=apple")
    assert f'action="/calls/{c["a40"]}/notes?view=mine&amp;q=apple"' in page
    saved = client.post(f"/calls/{c['a40']}/notes?view=mine&q=apple", data={"body": "rang twice"})
    assert target(saved.headers["Location"]) == (f"/calls/{c['a40']}", apples)
    logged = client.post(
        f"/calls/{c['a40']}/callback/log?view=mine&q=apple",
        data={"outcome": "no_answer", "minutes": ""},
    )
    assert target(logged.headers["Location"]) == (f"/calls/{c['a40']}", apples)
    refused = client.post(f"/calls/{c['a40']}/notes?view=mine&q=apple", data={"body": " "})
    assert target(refused.headers["Location"]) == (f"/calls/{c['a40']}", apples)


def test_the_transcript_and_caller_forms_keep_the_list_too(world: World) -> None:
    """Transcribe again, name or block the caller, and the transcript's polling: all within
    the same list, so previous/next still walk it afterwards."""
    c, client = world.calls, world.client
    apples = {"view": ["mine"], "q": ["apple"]}
    page = call_page(client, c["a40"], "view=mine&q=apple")
    kept = "?view=mine&amp;q=apple"
    assert f'data-live-url="/calls/{c["a40"]}/live{kept}"' in page
    assert re.search(rf'action="/calls/{c["a40"]}/recordings/RE\w+/retranscribe\?view=mine', page)
    assert f'action="/calls/{c["a40"]}/caller/name{kept}"' in page
    named = client.post(f"/calls/{c['a40']}/caller/name?view=mine&q=apple", data={"name": "Dana"})
    assert target(named.headers["Location"]) == (f"/calls/{c['a40']}", apples)
    live = client.get(f"/calls/{c['a40']}/live?view=mine&q=apple").get_data(as_text=True)
    assert f'data-live-url="/calls/{c["a40"]}/live{kept}"' in live
