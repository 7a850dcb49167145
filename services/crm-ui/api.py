"""The integrations API: bearer tokens (`moked token create`), scoped exactly like the UI.

GET /api/v1/calls           filters as in the inbox (business, from, to, status,
                            processing, tag, handled, kind=voicemail|missed, follow_up,
                            view=all|open|mine|unassigned (default all), q), page and
                            per_page; a value no filter can take is a 400 {"error",
                            "message"}
GET /api/v1/calls/<CallSid> one call; 404 outside the token's businesses
POST /api/v1/calls/<CallSid>/callback      Twilio rings the token owner's phone, then the
                            caller: 201 {"attempt_id", "status"}; 422 {"error", "message"}
                            when it cannot (no phone on the account, a withheld number)
POST /api/v1/calls/<CallSid>/callback/log  {"outcome": reached|no_answer|busy|failed,
                            "duration_seconds"?}: an attempt made by hand; 201
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request, url_for

from crm_ui.access import CurrentUser, call_or_404
from crm_ui.db import app_settings, db
from crm_ui.present import failure_reason
from crm_ui.queries import CallFilters, list_calls
from moked import callbacks
from moked.accounts import user_for_token
from moked.calls import describe_call
from moked.db.models import Call, CallbackAttempt, User
from moked.statuses import CALLBACK_OUTCOMES, CallbackStatus

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def bearer_user() -> CurrentUser | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    user = user_for_token(db(), token.strip())
    if user is None:
        return None
    current = CurrentUser.from_model(user)
    db().commit()  # last_used_at
    return current


DELIVERY_FAILED = "the last attempt failed"
"""What a non-admin token reads instead of a delivery's stored error."""


def call_json(call: Call, user: CurrentUser) -> dict[str, Any]:
    """`moked.calls.describe_call`, plus where an integration can fetch the audio. A
    failure's stored detail (internal hosts, Twilio's account path) is for admins; other
    tokens get the plain reason staff see."""
    settings = app_settings()
    data = describe_call(call, settings.recordings_dir)
    if data["transcription_error"] and not user.is_admin:
        data["transcription_error"] = failure_reason(data["transcription_error"])
    if not user.is_admin:
        for item in data["notifications"]:  # SMTP replies, hosts: for admins
            item["error"] = DELIVERY_FAILED if item["error"] else None
    audio_url = None
    if data["recording_path"]:  # the main recording has audio on this server
        audio_url = settings.public_url(url_for("calls.audio", recording_sid=data["recording_sid"]))
    data["audio_url"] = audio_url
    return data


@bp.before_request
def _authenticate() -> Response | None:
    user = bearer_user()
    if user is None:
        response = jsonify(error="unauthorized", message="a valid bearer token is required")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="moked"'
        return response
    g.api_user = user
    return None


@bp.get("/calls")
def calls() -> Response:
    user: CurrentUser = g.api_user
    filters = CallFilters.from_args(request.args, per_page=50)
    if filters.errors:
        response = jsonify(error="bad_request", message=" ".join(filters.errors))
        response.status_code = 400
        return response
    page = list_calls(filters, user)
    return jsonify(
        data=[call_json(call, user) for call in page.calls],
        page=page.page,
        per_page=page.per_page,
        total=page.total,
        pages=page.pages,
    )


@bp.get("/calls/<call_sid>")
def call(call_sid: str) -> Response:
    user: CurrentUser = g.api_user
    return jsonify(call_json(call_or_404(call_sid, user), user))


def _error(status: int, error: str, message: str) -> Response:
    response = jsonify(error=error, message=message)
    response.status_code = status
    return response


def _attempt_json(attempt_id: int) -> Response:
    attempt = db().get(CallbackAttempt, attempt_id)
    assert attempt is not None
    db().refresh(attempt)
    outcome = callbacks.outcome_of(attempt)
    response = jsonify(
        attempt_id=attempt.id,
        status=attempt.status.value,
        outcome=outcome.value if outcome is not None else None,
        call_sid=attempt.call_sid,
        error=attempt.error if g.api_user.is_admin else None,
    )
    response.status_code = 201
    return response


@bp.post("/calls/<call_sid>/callback")
def callback(call_sid: str) -> Response:
    """Call the caller back through Twilio, ringing the token owner's phone first."""
    user: CurrentUser = g.api_user
    call = call_or_404(call_sid, user)
    session = db()
    staff = session.get(User, user.id)
    if staff is None:
        return _error(404, "not_found", "no such user")
    settings = app_settings()
    try:
        started = callbacks.start(settings, session, call, staff)
    except callbacks.CallbackRefused as exc:
        session.rollback()
        return _error(422, "callback_refused", str(exc))
    return _attempt_json(started.attempt_id)


@bp.post("/calls/<call_sid>/callback/log")
def callback_log(call_sid: str) -> Response:
    """An attempt made from the staff member's own phone, with its outcome."""
    user: CurrentUser = g.api_user
    call = call_or_404(call_sid, user)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, "bad_request", "a JSON object is required")
    try:
        outcome = CallbackStatus(str(body.get("outcome", "")))
    except ValueError:
        outcome = None
    duration = body.get("duration_seconds")
    if outcome not in CALLBACK_OUTCOMES:
        names = ", ".join(o.value for o in CALLBACK_OUTCOMES)
        return _error(400, "bad_request", f"outcome must be one of {names}")
    if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool)):
        return _error(400, "bad_request", "duration_seconds must be an integer")
    session = db()
    try:
        attempt_id = callbacks.log_manual(
            session, call, user.id, outcome, duration_seconds=duration
        )
    except callbacks.CallbackRefused as exc:
        session.rollback()
        return _error(400, "bad_request", str(exc))
    session.commit()
    return _attempt_json(attempt_id)
