"""Calling back from the CRM: through Twilio, logged by hand, and the call's follow-up.

POST /calls/<CallSid>/callback           Twilio rings the signed-in user's phone, then the
                                         caller (moked.callbacks.start)
POST /calls/<CallSid>/callback/log       an attempt made from the user's own phone
POST /calls/<CallSid>/follow-up          needs_callback | resolved (moked.followup)
POST /account/phone                      the user's phone (E.164) that callbacks ring
POST /businesses/<id>/callback-hours     the callback limit and business hours (admins
                                         and the business's owners; moked.callback_wait)

Every call route is 404 outside the user's businesses (`call_or_404`).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from crm_ui.access import call_or_404, login_required, managed_business_or_404, me
from crm_ui.db import app_settings, db
from crm_ui.feedback import refuse
from crm_ui.forms import ActionForm
from crm_ui.i18n import gettext as _
from crm_ui.present import TimelineEntry, phone
from crm_ui.queries import list_args
from moked import callback_wait, callbacks, followup
from moked.accounts import AccountError, set_phone
from moked.db.models import Call, User
from moked.statuses import CALLBACK_OUTCOMES, CallbackStatus, FollowUp

bp = Blueprint("callbacks", __name__)

OUTCOME_LABELS = {
    CallbackStatus.REQUESTED: "Calling your phone…",
    CallbackStatus.RINGING: "Your phone is ringing",
    CallbackStatus.CONNECTING: "Connecting the caller…",
    CallbackStatus.REACHED: "Reached",
    CallbackStatus.NO_ANSWER: "No answer",
    CallbackStatus.BUSY: "Busy",
    CallbackStatus.FAILED: "Failed",
}
"""An attempt's status as staff read it."""
OUTCOME_TONES = {
    CallbackStatus.REACHED: "ok",
    CallbackStatus.NO_ANSWER: "warn",
    CallbackStatus.BUSY: "warn",
    CallbackStatus.FAILED: "bad",
}
FOLLOW_UP_LABELS = {
    FollowUp.NEW: "New",
    FollowUp.NEEDS_CALLBACK: "Needs a callback",
    FollowUp.CALLED_BACK: "Called back",
    FollowUp.NO_ANSWER: "No answer, try again",
    FollowUp.RESOLVED: "Resolved",
}
FOLLOW_UP_TONES = {
    FollowUp.NEW: "info",
    FollowUp.NEEDS_CALLBACK: "pending",
    FollowUp.CALLED_BACK: "ok",
    FollowUp.NO_ANSWER: "warn",
    FollowUp.RESOLVED: "ok",
}


def _page(call: Call) -> str:
    """The call page, still within the inbox list it was opened from (the form's action
    carries that list's arguments)."""
    return url_for("calls.show", call_sid=call.call_sid, **list_args(request.args))


def _back(call: Call) -> WerkzeugResponse:
    return redirect(_page(call) + "#callback")


def _refuse(call: Call, form_id: str, message: str) -> WerkzeugResponse:
    """Back to the call page, the error inside the form that was refused."""
    return refuse(form_id, message, _page(call))


def _who(user: User | None) -> str:
    return (user.name or user.email) if user is not None else ""


def timeline_entries(call: Call) -> list[TimelineEntry]:
    """The call's callbacks and follow-up changes, with who and when."""
    entries = []
    for change in call.follow_up_changes:
        entries.append(
            TimelineEntry(
                change.at,
                "done" if change.to_status is FollowUp.RESOLVED else "status",
                _("Follow-up: {status}", status=_(FOLLOW_UP_LABELS[change.to_status])),
                _who(change.user),
            )
        )
    for attempt in call.callback_attempts:
        how = _("by hand") if attempt.manual else _("through Moked")
        entries.append(
            TimelineEntry(
                attempt.started_at, "out", _("Callback ({how})", how=how), _who(attempt.user)
            )
        )
        if attempt.status.is_final:
            detail = _(OUTCOME_LABELS[attempt.status])
            if attempt.duration_seconds:
                detail += " · " + _("{seconds} seconds", seconds=attempt.duration_seconds)
            entries.append(
                TimelineEntry(
                    attempt.ended_at or attempt.started_at, "out", _("Callback ended"), detail
                )
            )
    return entries


@bp.post("/calls/<call_sid>/callback")
@login_required
def start(call_sid: str) -> WerkzeugResponse:
    """Twilio rings the user's phone from the business's number, then the caller."""
    ActionForm()  # CSRF is checked globally
    call = call_or_404(call_sid, me())
    session = db()
    user = session.get(User, me().id)
    if user is None:
        abort(404)
    try:
        started = callbacks.start(app_settings(), session, call, user)
    except callbacks.CallbackRefused as exc:
        session.rollback()
        return _refuse(call, "callback-start", _(str(exc)))
    if started.error:
        message = _("Twilio did not place the call; try again or dial yourself.")
        return _refuse(call, "callback-start", message)
    flash(
        _("Your phone ({number}) will ring; answer to be connected.", number=phone(user.phone)),
        "success",
    )
    return _back(call)


@bp.post("/calls/<call_sid>/callback/log")
@login_required
def log_attempt(call_sid: str) -> WerkzeugResponse:
    """An attempt made from the user's own phone (a `tel:` link), logged by hand."""
    ActionForm()
    call = call_or_404(call_sid, me())
    try:
        outcome = CallbackStatus(request.form.get("outcome", ""))
    except ValueError:
        outcome = None
    minutes = (request.form.get("minutes") or "").strip()
    if outcome not in CALLBACK_OUTCOMES or (minutes and not minutes.isdigit()):
        return _refuse(call, "callback-log", _("Choose how the call went."))
    session = db()
    try:
        callbacks.log_manual(
            session,
            call,
            me().id,
            outcome,
            duration_seconds=int(minutes) * 60 if minutes else None,
        )
    except callbacks.CallbackRefused as exc:
        session.rollback()
        return _refuse(call, "callback-log", _(str(exc)))
    session.commit()
    flash(_("Callback logged: {outcome}.", outcome=_(OUTCOME_LABELS[outcome])), "success")
    return _back(call)


@bp.post("/calls/<call_sid>/follow-up")
@login_required
def set_follow_up(call_sid: str) -> WerkzeugResponse:
    ActionForm()
    call = call_or_404(call_sid, me())
    try:
        target = FollowUp(request.form.get("status", ""))
    except ValueError:
        target = None
    if target not in followup.STAFF_TARGETS:
        abort(400)
    session = db()
    locked = followup.lock(session, call.id)
    assert locked is not None
    try:
        followup.change(session, locked, target, user_id=me().id)
    except followup.FollowUpRefused:
        session.rollback()
        return _refuse(call, "follow-up-form", _("The call cannot go there from where it is."))
    session.commit()
    flash(_("Follow-up: {status}", status=_(FOLLOW_UP_LABELS[target])), "success")
    return _back(call)


@bp.post("/account/phone")
@login_required
def set_account_phone() -> WerkzeugResponse:
    ActionForm()
    session = db()
    try:
        stored = set_phone(session, me().id, request.form.get("phone", ""))
    except AccountError:
        session.rollback()
        message = _("That is not a valid phone number.")
        return refuse("phone-form", message, url_for("account.show"))
    session.commit()
    if stored:
        flash(_("Callbacks will ring {number}.", number=phone(stored)), "success")
    else:
        flash(_("Your phone number was removed."), "info")
    return redirect(url_for("account.show") + "#phone")


@bp.post("/businesses/<int:business_id>/callback-hours")
@login_required
def business_hours(business_id: int) -> WerkzeugResponse:
    """How soon the business calls back, and its hours (the CallbacksOverdue alert)."""
    ActionForm()
    business = managed_business_or_404(business_id, me())
    limit = (request.form.get("limit") or "").strip()
    try:
        callback_wait.set_hours(
            db(),
            business,
            hours=request.form.get("hours", ""),
            days=request.form.get("days", ""),
            limit_minutes=int(limit) if limit.isdigit() else 0,
        )
    except callback_wait.HoursError:
        db().rollback()
        message = _("Use minutes, hours such as 08:00-18:00 and days such as sun-thu.")
        page = url_for("businesses.show", business_id=business.id)
        return refuse("callback-hours-form", message, page)
    db().commit()
    flash(_("Callback settings saved."), "success")
    return redirect(url_for("businesses.show", business_id=business.id) + "#callbacks")
