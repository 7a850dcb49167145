"""A refused form shows its error inside that form (crm_ui.feedback), in-process on the test
client: the redirect's anchor is the form, the error is inside the form's element with
role="alert", its field points at it, and the top of the page does not repeat it."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient

from moked.accounts import add_user
from moked.db.models import Business
from moked.db.session import session_scope
from moked.statuses import ProcessingStatus
from tests.apps import TwilioClient
from tests.harness import StackUnderTest
from tests.helpers import recorded_call, settle

PASSWORD = "correct-horse-battery"
VOID = {"input", "br", "img", "meta", "link", "hr", "source", "col", "wbr", "area", "base"}


class Element(HTMLParser):
    """The text inside the element with id `wanted`, and the attributes of every element
    in it (the fields of a form); `found` says whether the element is on the page."""

    def __init__(self, page: str, wanted: str) -> None:
        super().__init__()
        self.wanted = wanted
        self.depth = 0
        self.found = False
        self.text: list[str] = []
        self.inside: list[dict[str, str | None]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        fields = dict(attrs)
        if self.depth:
            self.inside.append({"tag": tag, **fields})
            if tag not in VOID:
                self.depth += 1
        elif fields.get("id") == self.wanted and not self.found:
            self.found = True
            self.depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag not in VOID:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text.append(data)

    @property
    def inner_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def top_messages(page: str) -> str:
    """The messages block at the top of the page, as HTML."""
    start = page.find('<div class="flashes"')
    if start < 0:
        return ""
    return page[start : page.find("</div>", start)]


def assert_error_inside(page: str, form_id: str, message: str, field: str) -> None:
    form = Element(page, form_id)
    assert form.found, f"no #{form_id} on the page"
    assert message in form.inner_text, (form_id, form.inner_text)
    alerts = [e for e in form.inside if e.get("id") == f"{form_id}-error"]
    assert alerts and alerts[0].get("role") == "alert"
    fields = [e for e in form.inside if e.get("id") == field]
    assert fields, f"no #{field} in #{form_id}"
    assert fields[0].get("aria-invalid") == "true"
    assert f"{form_id}-error" in (fields[0].get("aria-describedby") or "").split()
    assert message not in top_messages(page), "shown at the top as well"


@pytest.fixture
def call_sid(twilio: TwilioClient, signed_in_staff: tuple[FlaskClient, Business]) -> str:
    sid, recording_sid = recorded_call(twilio, signed_in_staff[1].numbers[0].e164)
    with session_scope() as session:
        settle(session, recording_sid, ProcessingStatus.READY, transcript="שלום", model="test")
    return sid


def _refused(client: FlaskClient, path: str, data: dict[str, str], anchor: str) -> str:
    answer = client.post(path, data=data)
    assert answer.status_code == 302, answer.data
    assert answer.headers["Location"].endswith(f"#{anchor}"), answer.headers["Location"]
    page = client.get(answer.headers["Location"].split("#")[0])
    assert page.status_code == 200
    return page.get_data(as_text=True)


def test_refused_call_page_forms_show_the_error_inside_the_form(
    signed_in_staff: tuple[FlaskClient, Business], call_sid: str
) -> None:
    client, _ = signed_in_staff
    base = f"/calls/{call_sid}"
    page = _refused(client, f"{base}/notes", {"body": "   "}, "note-form")
    assert_error_inside(page, "note-form", "הערה לא יכולה להיות ריקה.", "note-body")

    page = _refused(client, f"{base}/tags", {"name": ""}, "tag-form")
    assert_error_inside(page, "tag-form", "64", "tag-name")

    page = _refused(client, f"{base}/callback/log", {"outcome": "nonsense"}, "callback-log")
    assert_error_inside(page, "callback-log", "בחרו איך הסתיימה השיחה.", "callback-outcome")

    page = _refused(client, f"{base}/caller/name", {"name": "x" * 201}, "caller-name-form")
    assert_error_inside(page, "caller-name-form", "200", "caller-name")

    # Shown once: the next visit has neither the error nor the invalid field.
    again = client.get(base).get_data(as_text=True)
    assert 'aria-invalid="true"' not in again and "form-error" not in again


def test_refused_account_forms_show_the_error_inside_the_form(
    signed_in_staff: tuple[FlaskClient, Business],
) -> None:
    client, _ = signed_in_staff
    page = _refused(client, "/account/phone", {"phone": "054-12ab"}, "phone-form")
    assert_error_inside(page, "phone-form", "זה אינו מספר טלפון תקין.", "my-phone")

    wrong = client.post(
        "/account/password", data={"current": "not-it", "new": "x" * 12, "confirm": "x" * 12}
    )
    assert wrong.status_code == 400
    assert_error_inside(
        wrong.get_data(as_text=True), "password-form", "הסיסמה הנוכחית שגויה.", "current"
    )


def test_refused_business_and_sign_in_forms_show_the_error_inside_the_form(
    stack: StackUnderTest, crm_app: Flask, make_business: Callable[..., Business]
) -> None:
    business = make_business(name=f"Owned {secrets.token_hex(3)}")
    email = f"owner-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(session, email, business=str(business.id), owner=True, password=PASSWORD)
    client = crm_app.test_client()
    refused = client.post("/login", data={"email": email, "password": "not-it"})
    assert refused.status_code == 401
    assert_error_inside(refused.get_data(as_text=True), "login-form", "שגויים", "email")

    assert client.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
    base = f"/businesses/{business.id}"
    page = _refused(client, f"{base}/tags", {"name": "  "}, "business-tag-form")
    assert_error_inside(page, "business-tag-form", "64", "vocab-name")
    page = _refused(client, f"{base}/greeting-text", {"text": "x" * 1001}, "greeting-text-form")
    assert_error_inside(page, "greeting-text-form", "ארוך", "greeting-text-input")
    field = Element(page, "greeting-text-form").inside
    (text,) = [e for e in field if e.get("id") == "greeting-text-input"]
    assert text.get("aria-describedby") == "greeting-text-form-error text-hint"  # and its hint


def test_an_error_whose_form_is_not_on_the_page_is_shown_at_the_top(crm_app: Flask) -> None:
    page_template = (
        '{% extends "base.html" %}{% from "_macros.html" import form_errors %}'
        '{% block content %}<form id="here">{{ form_errors("here") }}</form>{% endblock %}'
    )
    from crm_ui.feedback import form_error

    with crm_app.test_request_context("/"):
        form_error("here", "inside the form")
        form_error("gone", "the form went away")
        page = render_template_string(page_template)
    assert "inside the form" in Element(page, "here").inner_text
    assert "inside the form" not in top_messages(page)
    assert "the form went away" in top_messages(page)
    assert "flash-error" in top_messages(page)
