"""Callers in the CRM: the caller card on the call page, badges in the inbox, and each
business's list of blocked and likely-spam callers.

POST /calls/<CallSid>/caller/name        the name staff give the caller (empty removes it)
POST /calls/<CallSid>/caller/block       reject the number's calls to this business
POST /calls/<CallSid>/caller/unblock     let it through again (its spam flag goes too)
GET  /businesses/<id>/callers            the business's blocked and flagged callers
POST /callers/<id>/block|unblock         the same from that list

A call route is 404 outside the user's businesses (`call_or_404`); a caller or a list of
another business's callers is 404 too. moked.callers owns the rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from werkzeug.wrappers import Response as WerkzeugResponse

from crm_ui.access import business_or_404, call_or_404, login_required, me
from crm_ui.db import db
from crm_ui.feedback import refuse
from crm_ui.i18n import current_language
from crm_ui.i18n import gettext as _
from crm_ui.queries import list_args
from moked import callers
from moked.db.models import Call, Caller, Note

bp = Blueprint("callers", __name__)

CALLS_SHOWN = 50
"""The caller card lists this many of their calls, newest first."""


@dataclass(frozen=True, slots=True)
class CallerCard:
    """What the call page shows about the caller (None for a withheld number)."""

    caller: Caller | None
    number: str
    calls: list[Call]
    notes: dict[int, list[Note]]
    """Each listed call's notes, oldest first."""


def caller_card(call: Call) -> CallerCard | None:
    """The caller of `call` with their calls to this business and those calls' notes; None
    when the number is withheld or the call belongs to no business."""
    number = callers.caller_number(call.from_number)
    if number is None or call.business_id is None:
        return None
    session = db()
    caller = callers.find(session, call.business_id, number)
    listed = list(
        session.scalars(
            select(Call)
            .where(Call.business_id == call.business_id, Call.from_number == number)
            .order_by(func.coalesce(Call.started_at, Call.created_at).desc(), Call.id.desc())
            .limit(CALLS_SHOWN)
        )
    )
    notes: dict[int, list[Note]] = {}
    for note in session.scalars(
        select(Note)
        .where(Note.call_id.in_([c.id for c in listed] or [-1]))
        .order_by(Note.created_at, Note.id)
    ):
        notes.setdefault(note.call_id, []).append(note)
    return CallerCard(caller=caller, number=number, calls=listed, notes=notes)


def is_withheld(raw: str | None) -> bool:
    """No number to show or call back: Twilio's "anonymous", "+266696687", nothing."""
    return callers.caller_number(raw) is None


def repeat_counts(calls: list[Call]) -> dict[int, int]:
    """The inbox page's "3rd call this week" counts (moked.callers.week_counts)."""
    return callers.week_counts(db(), calls)


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def repeat_badge(n: int) -> str:
    """ "3rd call this week" / "שיחה מס׳ 3 השבוע"."""
    return _("{nth} call this week", nth=_ordinal(n) if current_language() == "en" else n)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.jinja_env.globals.update(
        caller_card=caller_card,
        is_withheld=is_withheld,
        repeat_counts=repeat_counts,
        repeat_badge=repeat_badge,
    )


# --- from the call page --------------------------------------------------------------------


def _call_page(call: Call) -> str:
    """The call page within the inbox list it was opened from (previous/next keep it)."""
    return url_for("calls.show", call_sid=call.call_sid, **list_args(request.args))


def _card_back(call: Call) -> WerkzeugResponse:
    return redirect(_call_page(call) + "#caller")


def _number_of(call: Call) -> tuple[int, str]:
    number = callers.caller_number(call.from_number)
    if number is None or call.business_id is None:
        abort(404)  # a withheld number is no caller
    return call.business_id, number


@bp.post("/calls/<call_sid>/caller/name")
@login_required
def name(call_sid: str) -> WerkzeugResponse:
    call = call_or_404(call_sid, me())
    business_id, number = _number_of(call)
    session = db()
    caller = callers.ensure(session, business_id, number, dt.datetime.now(dt.UTC))
    given = request.form.get("name", "")
    try:
        if "\x00" in given:
            raise callers.CallerError("control characters")
        callers.rename(session, caller, given)
    except callers.CallerError:
        session.rollback()
        message = _("A caller's name is at most 200 characters.")
        return refuse("caller-name-form", message, _call_page(call))
    session.commit()
    flash(_("Caller's name saved.") if caller.name else _("Caller's name removed."), "success")
    return _card_back(call)


@bp.post("/calls/<call_sid>/caller/block")
@login_required
def block(call_sid: str) -> WerkzeugResponse:
    call = call_or_404(call_sid, me())
    business_id, number = _number_of(call)
    callers.block(db(), business_id, number, user_id=me().id)
    db().commit()
    flash(_("Caller blocked: their calls are rejected and alert nobody."), "success")
    return _card_back(call)


@bp.post("/calls/<call_sid>/caller/unblock")
@login_required
def unblock(call_sid: str) -> WerkzeugResponse:
    call = call_or_404(call_sid, me())
    business_id, number = _number_of(call)
    try:
        callers.unblock(db(), business_id, number, user_id=me().id)
    except callers.CallerError:
        db().rollback()
        abort(404)
    db().commit()
    flash(_("Caller unblocked."), "success")
    return _card_back(call)


# --- the business's list -------------------------------------------------------------------


@bp.get("/businesses/<int:business_id>/callers")
@login_required
def index(business_id: int) -> str:
    business = business_or_404(business_id, me())
    return render_template(
        "callers.html", business=business, listed=callers.listed(db(), business.id)
    )


def _caller_or_404(caller_id: int) -> Caller:
    caller = db().get(Caller, caller_id)
    if caller is None or not me().can_see(caller.business_id):
        abort(404)
    return caller


def _list_back(caller: Caller) -> WerkzeugResponse:
    return redirect(url_for("callers.index", business_id=caller.business_id))


@bp.post("/callers/<int:caller_id>/block")
@login_required
def block_listed(caller_id: int) -> WerkzeugResponse:
    caller = _caller_or_404(caller_id)
    callers.block(db(), caller.business_id, caller.number, user_id=me().id)
    db().commit()
    flash(_("Caller blocked: their calls are rejected and alert nobody."), "success")
    return _list_back(caller)


@bp.post("/callers/<int:caller_id>/unblock")
@login_required
def unblock_listed(caller_id: int) -> WerkzeugResponse:
    caller = _caller_or_404(caller_id)
    callers.unblock(db(), caller.business_id, caller.number, user_id=me().id)
    db().commit()
    flash(_("Caller unblocked."), "success")
    return _list_back(caller)
