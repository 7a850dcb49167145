"""The integrations API: bearer tokens (`moked token create`), scoped exactly like the UI.

GET /api/v1/calls           filters as in the inbox (business, from, to, status,
                            processing, tag, handled, q), page and per_page; a value
                            no filter can take is a 400 {"error", "message"}
GET /api/v1/calls/<CallSid> one call; 404 outside the token's businesses
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for

from crm_ui.access import CurrentUser, call_or_404
from crm_ui.db import db
from crm_ui.present import failure_reason
from crm_ui.queries import CallFilters, list_calls
from moked.accounts import user_for_token
from moked.calls import describe_call
from moked.db.models import Call
from moked.settings import Settings

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
    settings: Settings = current_app.config["MOKED_SETTINGS"]
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
