"""A refused form's error shown inside that form, not at the top of a page that jumped past it.

A route that refuses a POST calls `refuse(form_id, message, page_url)`: the message is
flashed for the form whose element id is `form_id`, and the redirect's anchor is that id,
so the browser lands on the form. The form renders `form_errors(form_id)` from
templates/_macros.html, which shows the message there (role="alert"), and its field points
at it with `invalid(form_id)` (aria-invalid, aria-describedby). A route that answers with
the page itself (a 400) calls `form_error(form_id, message)` and renders.

base.html takes the flashed messages once per page and renders the content before the
messages at the top, so an error whose form is not on the page (it went away meanwhile) is
shown at the top with the other messages instead of being lost.
"""

from __future__ import annotations

from flask import Flask, flash, g, get_flashed_messages, redirect
from werkzeug.wrappers import Response as WerkzeugResponse

FORM_ERROR = "form-error:"
"""The flash category prefix of an error that belongs to one form (then its element id)."""


def form_error(form_id: str, message: str) -> None:
    """Show `message` inside the form with element id `form_id` on the next page shown."""
    flash(message, FORM_ERROR + form_id)


def refuse(form_id: str, message: str, page_url: str) -> WerkzeugResponse:
    """Redirect back to the page with the refused form, its error inside it."""
    form_error(form_id, message)
    return redirect(f"{page_url}#{form_id}")


def take_messages() -> str:
    """base.html, before the content: this request's flashed messages, taken once."""
    g.flashes = get_flashed_messages(with_categories=True)
    g.forms_shown = set()
    return ""


def errors_for(form_id: str) -> list[str]:
    """The errors of one form on this page; the form shows them, the top does not."""
    shown: set[str] | None = g.get("forms_shown")
    if shown is None:  # a fragment (the live transcript) without base.html: no messages
        return []
    shown.add(form_id)
    return [m for c, m in g.get("flashes", []) if c == FORM_ERROR + form_id]


def invalid_attrs(form_id: str, hint: str = "") -> dict[str, str]:
    """The attributes of a refused form's field: aria-invalid, and aria-describedby naming
    the error (then `hint`, the id of the field's own hint, if any)."""
    described = [f"{form_id}-error"] if errors_for(form_id) else []
    described += [hint] if hint else []
    attrs = {"aria-invalid": "true"} if errors_for(form_id) else {}
    if described:
        attrs["aria-describedby"] = " ".join(described)
    return attrs


def page_messages() -> list[tuple[str, str]]:
    """The messages at the top of the page: all but the errors shown inside their form."""
    shown: set[str] = g.get("forms_shown") or set()
    messages = []
    for category, message in g.get("flashes", []):
        if category.startswith(FORM_ERROR):
            if category.removeprefix(FORM_ERROR) in shown:
                continue
            category = "error"
        messages.append((category, message))
    return messages


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(
        take_messages=take_messages,
        errors_for=errors_for,
        invalid_attrs=invalid_attrs,
        page_messages=page_messages,
    )
