"""The integrations API: bearer tokens (`moked token create`), scoped exactly like the UI.

GET /api/v1/calls           filters as in the inbox (business, from, to, status,
                            processing, tag, handled, q), page and per_page
GET /api/v1/calls/<CallSid> one call; 404 outside the token's businesses
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for

from crm_ui.access import CurrentUser, call_or_404
from crm_ui.db import db
from crm_ui.present import main_recording
from crm_ui.queries import CallFilters, list_calls
from moked.accounts import user_for_token
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


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def call_json(call: Call) -> dict[str, Any]:
    settings: Settings = current_app.config["MOKED_SETTINGS"]
    recording = main_recording(call)
    audio_url = None
    if recording is not None and recording.local_path:
        audio_url = settings.public_url(
            url_for("calls.audio", recording_sid=recording.recording_sid)
        )
    return {
        "call_sid": call.call_sid,
        "business": {"id": call.business.id, "name": call.business.name} if call.business else None,
        "from": call.from_number,
        "to": call.to_number,
        "direction": call.direction.value,
        "status": call.status.value,
        "started_at": _iso(call.started_at),
        "ended_at": _iso(call.ended_at),
        "duration_seconds": call.duration_seconds,
        "recording_sid": recording.recording_sid if recording else None,
        "recording_duration_seconds": recording.duration_seconds if recording else None,
        "processing_status": recording.processing_status.value if recording else None,
        "transcript": recording.transcript if recording else None,
        "transcript_language": recording.transcript_language if recording else None,
        "audio_url": audio_url,
        "tags": [ct.tag.name for ct in call.call_tags],
        "handled": call.handled_at is not None,
        "handled_at": _iso(call.handled_at),
        "assignee": call.assignee.email if call.assignee else None,
    }


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
    page = list_calls(filters, user)
    return jsonify(
        data=[call_json(call) for call in page.calls],
        page=page.page,
        per_page=page.per_page,
        total=page.total,
        pages=page.pages,
    )


@bp.get("/calls/<call_sid>")
def call(call_sid: str) -> Response:
    user: CurrentUser = g.api_user
    return jsonify(call_json(call_or_404(call_sid, user)))
