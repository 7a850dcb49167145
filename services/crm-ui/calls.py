"""One call: recording player, transcript, timeline, tags, notes, handled and assignee.

The recording is streamed by nginx: this service checks the user may hear it and answers
with X-Accel-Redirect to the internal /internal/recordings/ location (Range works there).
"""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from redis.exceptions import RedisError
from sqlalchemy import delete, func, or_, select
from werkzeug.wrappers import Response as WerkzeugResponse

from crm_ui import callbacks as callback_page
from crm_ui.access import CurrentUser, call_or_404, login_required, manages, me, recording_or_404
from crm_ui.db import app_settings, db
from crm_ui.feedback import refuse
from crm_ui.forms import ActionForm, AssignForm, NoteForm, TagForm
from crm_ui.i18n import gettext as _
from crm_ui.present import (
    CALL_STATUS_LABELS,
    CHANNEL_NAMES,
    TimelineEntry,
    main_recording,
    phone,
    retry_languages,
)
from crm_ui.queries import list_args, list_filters, neighbours, search_terms
from moked import followup, recordings
from moked.accounts import Role, business_ids_for
from moked.db.models import (
    AssignmentChange,
    Call,
    CallTag,
    Membership,
    Note,
    NotificationDelivery,
    Tag,
    User,
    WebhookEvent,
)
from moked.notify import deliveries
from moked.notify.dispatch import queue_delivery
from moked.queue import redis_client
from moked.statuses import (
    CALLBACK_OUTCOMES,
    CallStatus,
    DeliveryStatus,
    Endpoint,
    FollowUp,
    ProcessingStatus,
    RecordingStatus,
)

bp = Blueprint("calls", __name__)

INTERNAL_RECORDINGS = "/internal/recordings/"
"""nginx's internal location that serves RECORDINGS_DIR."""
AUDIO_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/wav", ".ogg": "audio/ogg"}
DELIVERY_LABELS = {
    DeliveryStatus.PENDING: ("Waiting to be sent", "pending"),
    DeliveryStatus.HELD: ("Held for quiet hours", "muted"),
    DeliveryStatus.SENT: ("Sent", "ok"),
    DeliveryStatus.FAILED: ("Failed", "bad"),
}
"""A delivery's status: its label and chip tone."""
PROVIDER_LABELS = {
    "delivered": "Delivered",
    "read": "Read",
    "undelivered": "Not delivered",
    "failed": "Failed",
}
"""What Twilio reported later; other (intermediate) statuses are shown as they are."""


def _page(call: Call) -> str:
    """The call page, still within the inbox list it was opened from (the form's action
    carries that list's arguments)."""
    return url_for("calls.show", call_sid=call.call_sid, **list_args(request.args))


def _back(call: Call, anchor: str = "") -> WerkzeugResponse:
    return redirect(_page(call) + anchor)


def assignable_users(*business_ids: int | None) -> list[User]:
    """Who may be assigned a call of any of these businesses: active admins and the
    businesses' members."""
    known = [b for b in business_ids if b is not None]
    query = (
        select(User)
        .where(User.is_active.is_(True))
        .where(
            or_(
                User.role == Role.ADMIN.value,
                User.id.in_(
                    select(Membership.user_id).where(Membership.business_id.in_(known or [-1]))
                ),
            )
        )
        .order_by(User.email)
    )
    return list(db().scalars(query))


RECORDING_TITLES = {
    RecordingStatus.IN_PROGRESS: "Recording in progress",
    RecordingStatus.COMPLETED: "Recording completed",
    RecordingStatus.ABSENT: "No recording was made",
    RecordingStatus.FAILED: "Recording failed",
}
"""A recording status callback (Twilio's RecordingStatus) in the timeline."""
FINISHED_TITLES = {
    ProcessingStatus.READY: "Transcript ready",
    ProcessingStatus.EMPTY: "No speech in the recording",
    ProcessingStatus.FAILED: "Transcription failed",
    ProcessingStatus.ABSENT: "No recording was made",
}
"""How a recording's processing ended (every final ProcessingStatus)."""
DELIVERY_TITLES = {
    DeliveryStatus.SENT: "Notification sent",
    DeliveryStatus.FAILED: "Notification failed",
}
"""A notification that was sent or gave up; pending and held ones have not happened yet."""
TIMELINE_ENDPOINTS = frozenset(
    {
        Endpoint.INCOMING_CALL,
        Endpoint.CALL_STATUS,
        Endpoint.HANDLE_RECORDING,
        Endpoint.RECORDING_STATUS,
    }
)
"""The webhooks shown as they came. The others are logged under another sid (a callback's
staff leg, a message, Twilio's debugger) and shown from their rows: callback attempts
(crm_ui.callbacks.timeline_entries) and notification deliveries."""


def tag_call(call: Call, name: str, user_id: int) -> Tag:
    """Give the call its business's tag `name` (any case; made if new), once. The caller
    checked the user may change the call and commits."""
    assert call.business_id is not None
    session = db()
    tag = session.scalar(
        select(Tag).where(Tag.business_id == call.business_id, func.lower(Tag.name) == name.lower())
    )
    if tag is None:
        tag = Tag(business_id=call.business_id, name=name)
        session.add(tag)
        session.flush()
    if not any(ct.tag_id == tag.id for ct in call.call_tags):
        session.add(CallTag(call_id=call.id, tag_id=tag.id, created_by_id=user_id))
    return tag


def tag_name(raw: str | None) -> str:
    """A tag as staff typed it, its spaces tidied."""
    return " ".join((raw or "").split())


def assign_call(call: Call, assignee: User | None, by_id: int) -> bool:
    """Assign the call to `assignee` (None: nobody), by the user `by_id`; a change is kept
    for the timeline. False, and nothing changed, when the assignee may not see the
    call's business (the rule of `assignable_users`, asked of this one user)."""
    if assignee is not None:
        sees = business_ids_for(db(), assignee)  # None: an admin sees every business
        if not assignee.is_active or (sees is not None and call.business_id not in sees):
            return False
    assignee_id = assignee.id if assignee is not None else None
    if call.assignee_id != assignee_id:
        call.assignee_id = assignee_id
        db().add(
            AssignmentChange(
                call_id=call.id, assignee_id=assignee_id, by_id=by_id, at=followup.utcnow()
            )
        )
    return True


def timeline(call: Call) -> list[TimelineEntry]:
    events = list(
        db().scalars(
            select(WebhookEvent)
            .where(WebhookEvent.call_sid == call.call_sid)
            .order_by(WebhookEvent.received_at, WebhookEvent.id)
        )
    )
    taggers = {ct.created_by_id for ct in call.call_tags if ct.created_by_id is not None}
    users = {u.id: u for u in db().scalars(select(User).where(User.id.in_(taggers or {-1})))}
    return timeline_of(call, events, _notes(call), users)


def timeline_of(
    call: Call, events: list[WebhookEvent], notes: list[Note], users: dict[int, User]
) -> list[TimelineEntry]:
    """The call's timeline, every title and label in the user's language (`_`)."""
    entries: list[TimelineEntry] = []
    for event in events:
        params: dict[str, Any] = event.params or {}

        def param(name: str, params: dict[str, Any] = params) -> str:
            value = params.get(name)
            return str(value[0] if isinstance(value, list) else value or "")

        if event.endpoint == Endpoint.INCOMING_CALL:
            entries.append(
                TimelineEntry(
                    event.received_at,
                    "in",
                    _("Call received"),
                    f"{phone(param('From')) or _('Unknown caller')} → {phone(param('To'))}",
                )
            )
        elif event.endpoint == Endpoint.CALL_STATUS:
            status = param("CallStatus")
            detail = ""
            if param("CallDuration"):
                detail = _("{seconds} seconds", seconds=param("CallDuration"))
            entries.append(
                TimelineEntry(
                    event.received_at,
                    "status",
                    _("Call status: {status}", status=_(status_label(status))),
                    detail,
                )
            )
        elif event.endpoint == Endpoint.HANDLE_RECORDING:
            seconds = param("RecordingDuration")
            entries.append(
                TimelineEntry(
                    event.received_at,
                    "rec",
                    _("Message recorded"),
                    _("{seconds} seconds", seconds=seconds) if seconds else "",
                )
            )
        elif event.endpoint == Endpoint.RECORDING_STATUS:
            recorded = RecordingStatus.parse(param("RecordingStatus"))
            title = (
                _(RECORDING_TITLES[recorded])
                if recorded
                else _("Recording: {status}", status=param("RecordingStatus") or "?")
            )
            code = param("ErrorCode")
            entries.append(
                TimelineEntry(
                    event.received_at, "rec", title, _("Error {code}", code=code) if code else ""
                )
            )
    for recording in call.recordings:
        finished_title = FINISHED_TITLES.get(recording.processing_status)
        if recording.processing_finished_at and finished_title:
            finished = recording.processing_finished_at
            model = recording.model or ""
            entries.append(TimelineEntry(finished, "text", _(finished_title), model))
    for delivery in call.notifications:
        where = f"{_(CHANNEL_NAMES[delivery.channel])} · {delivery.recipient}"
        delivery_title = DELIVERY_TITLES.get(delivery.status)
        at = delivery.sent_at if delivery.status is DeliveryStatus.SENT else delivery.updated_at
        if delivery_title:
            entries.append(
                TimelineEntry(at or delivery.created_at, "notify", _(delivery_title), where)
            )
    for note in notes:
        who = (note.author.name or note.author.email) if note.author else ""
        entries.append(TimelineEntry(note.created_at, "note", _("Note added"), who))
    for call_tag in call.call_tags:
        tagger = users.get(call_tag.created_by_id or -1)
        who = (tagger.name or tagger.email) if tagger else ""
        title = _("Tag added: {name}", name=call_tag.tag.name)
        entries.append(TimelineEntry(call_tag.created_at, "tag", title, who))
    for change in call.assignment_changes:
        by = (change.by.name or change.by.email) if change.by else ""
        assignee = change.assignee
        title = (
            _("Assigned to {name}", name=assignee.name or assignee.email)
            if assignee is not None
            else _("Assignment removed")
        )
        entries.append(TimelineEntry(change.at, "assign", title, by))
    if call.handled_at is not None and not call.follow_up_changes:  # handled before 0008
        who = call.handled_by.email if call.handled_by else ""
        entries.append(TimelineEntry(call.handled_at, "done", _("Marked handled"), who))
    entries += callback_page.timeline_entries(call)
    return sorted(entries, key=lambda e: e.at)


def status_label(value: str) -> str:
    parsed = CallStatus.parse(value)
    return CALL_STATUS_LABELS[parsed] if parsed else value


def _notes(call: Call) -> list[Note]:
    return list(db().scalars(select(Note).where(Note.call_id == call.id).order_by(Note.created_at)))


def _business_tags(call: Call) -> list[str]:
    if call.business_id is None:
        return []
    return list(
        db().scalars(select(Tag.name).where(Tag.business_id == call.business_id).order_by(Tag.name))
    )


@bp.get("/calls/<call_sid>")
@login_required
def show(call_sid: str) -> str:
    call = call_or_404(call_sid, me())
    assign = AssignForm()
    users = assignable_users(call.business_id)
    assign.assignee.choices = [("", _("Nobody"))] + [(str(u.id), u.name or u.email) for u in users]
    assign.assignee.data = str(call.assignee_id or "")
    filters = list_filters(request.args)
    return render_template(
        "call.html",
        call=call,
        list_args=filters.as_args(),
        around=neighbours(filters, me(), call),
        recording=main_recording(call),
        timeline=timeline(call),
        terms=search_terms(request.args.get("q", "")[:200]),
        notes=_notes(call),
        vocabulary=_business_tags(call),
        tag_form=TagForm(),
        note_form=NoteForm(),
        assign_form=assign,
        action_form=ActionForm(),
        notifications=call.notifications,
        delivery_details=_sees_delivery_errors(call),
        delivery_labels=DELIVERY_LABELS,
        provider_labels=PROVIDER_LABELS,
        channel_names=CHANNEL_NAMES,
        **_callback_context(call),
    )


def _callback_context(call: Call) -> dict[str, Any]:
    """What the call page's callback card shows (crm_ui.callbacks)."""
    page = callback_page
    user = db().get(User, me().id)
    return {
        "my_phone": user.phone if user is not None else None,
        "callback_attempts": call.callback_attempts,
        "callback_outcomes": [(o.value, page.OUTCOME_LABELS[o]) for o in CALLBACK_OUTCOMES],
        "outcome_labels": page.OUTCOME_LABELS,
        "outcome_tones": page.OUTCOME_TONES,
        "follow_up_labels": page.FOLLOW_UP_LABELS,
        "follow_up_tones": page.FOLLOW_UP_TONES,
    }


def _sees_delivery_errors(call: Call) -> bool:
    """A failed delivery's stored error (SMTP replies, hosts, Twilio's answers) is for
    admins and the business's owners, who manage the rules; members see that it failed."""
    user = me()
    if user.is_admin:
        return True
    return call.business_id is not None and manages(user, call.business_id)


@bp.get("/calls/<call_sid>/live")
@login_required
def live(call_sid: str) -> str:
    """The transcript panel alone; the call page polls it while transcription runs."""
    call = call_or_404(call_sid, me())
    return render_template(
        "_transcript.html",
        call=call,
        recording=main_recording(call),
        action_form=ActionForm(),
        terms=search_terms(request.args.get("q", "")[:200]),
        list_args=list_args(request.args),
    )


def _bearer_or_session_user() -> CurrentUser | None:
    from crm_ui.api import bearer_user

    if request.headers.get("Authorization"):
        return bearer_user()
    if current_user.is_authenticated:
        return me()
    return None


@bp.get("/recordings/<recording_sid>/audio")
def audio(recording_sid: str) -> Response:
    """Authorise, then let nginx stream the file (X-Accel-Redirect; Range supported)."""
    user = _bearer_or_session_user()
    if user is None:
        return Response(
            "Unauthorized",
            status=401,
            content_type="text/plain; charset=utf-8",
            headers={"WWW-Authenticate": 'Bearer realm="moked"'},
        )
    recording = recording_or_404(recording_sid, user)
    path = recording.local_path
    if not path:
        abort(404)
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts:
        abort(404)
    content_type = (
        recording.content_type
        or AUDIO_TYPES.get(relative.suffix.lower())
        or mimetypes.guess_type(path)[0]
        or "application/octet-stream"
    )
    response = Response(status=200, content_type=content_type)
    response.headers["X-Accel-Redirect"] = INTERNAL_RECORDINGS + quote(str(relative))
    response.headers["Cache-Control"] = "private, no-store"
    return response


# --- changes ------------------------------------------------------------------------------


@bp.post("/calls/<call_sid>/tags")
@login_required
def add_tag(call_sid: str) -> WerkzeugResponse:
    call = call_or_404(call_sid, me())
    form = TagForm()
    if not form.validate_on_submit() or call.business_id is None:
        return refuse("tag-form", _("A tag needs a name of up to 64 characters."), _page(call))
    tag = tag_call(call, tag_name(form.name.data), me().id)
    db().commit()
    flash(_("Tag “{name}” added.", name=tag.name), "success")
    return _back(call, "#tags")


@bp.post("/calls/<call_sid>/tags/<int:tag_id>/delete")
@login_required
def remove_tag(call_sid: str, tag_id: int) -> WerkzeugResponse:
    call = call_or_404(call_sid, me())
    db().execute(delete(CallTag).where(CallTag.call_id == call.id, CallTag.tag_id == tag_id))
    db().commit()
    return _back(call, "#tags")


@bp.post("/calls/<call_sid>/notes")
@login_required
def add_note(call_sid: str) -> WerkzeugResponse:
    call = call_or_404(call_sid, me())
    form = NoteForm()
    if not form.validate_on_submit():
        return refuse("note-form", _("A note cannot be empty."), _page(call))
    db().add(Note(call_id=call.id, author_id=me().id, body=(form.body.data or "").strip()))
    db().commit()
    flash(_("Note saved."), "success")
    return _back(call, "#notes")


@bp.post("/calls/<call_sid>/handled")
@login_required
def toggle_handled(call_sid: str) -> WerkzeugResponse:
    call = call_or_404(call_sid, me())
    locked = followup.lock(db(), call.id)  # "handled" is the follow-up `resolved`
    assert locked is not None
    if locked.handled_at is None:
        followup.change(db(), locked, FollowUp.RESOLVED, user_id=me().id)
        flash(_("Marked handled."), "success")
    else:
        followup.set_handled(db(), locked, False, user_id=me().id)
        flash(_("Marked open again."), "info")
    db().commit()
    return _back(call)


@bp.post("/calls/<call_sid>/resolve-and-next")
@login_required
def resolve_and_next(call_sid: str) -> WerkzeugResponse:
    """Resolve the call (moked.followup), then open the next call of the list it was opened
    from, found after resolving: in the Open view the resolved call has left the list."""
    call = call_or_404(call_sid, me())
    locked = followup.lock(db(), call.id)
    assert locked is not None
    followup.change(db(), locked, FollowUp.RESOLVED, user_id=me().id)  # False: resolved already
    db().commit()
    filters = list_filters(request.args)
    following = neighbours(filters, me(), call).next
    if following is None:
        flash(_("Call resolved. No more calls in this list."), "info")
        return redirect(url_for("inbox.index", **filters.as_args()))
    flash(_("Call resolved."), "success")
    return redirect(url_for("calls.show", call_sid=following, **filters.as_args()))


@bp.post("/calls/<call_sid>/assignee")
@login_required
def assign(call_sid: str) -> WerkzeugResponse:
    call = call_or_404(call_sid, me())
    form = AssignForm()
    allowed = {str(u.id): u for u in assignable_users(call.business_id)}
    form.assignee.choices = [("", "")] + [(k, k) for k in allowed]
    if not form.validate_on_submit():
        message = _("That user cannot be assigned to this call.")
        return refuse("assign-form", message, _page(call))
    assign_call(call, allowed.get(form.assignee.data or ""), me().id)
    db().commit()
    flash(_("Assignee updated."), "success")
    return _back(call)


@bp.post("/calls/<call_sid>/recordings/<recording_sid>/retranscribe")
@login_required
def retranscribe(call_sid: str, recording_sid: str) -> WerkzeugResponse:
    """Transcribe a failed or empty recording again, or any finished one in the language
    staff picked (`moked.recordings.retry_and_queue`)."""
    call = call_or_404(call_sid, me())
    recording = next((r for r in call.recordings if r.recording_sid == recording_sid), None)
    if recording is None:
        abort(404)
    language = (request.form.get("language") or "").strip() or None
    if language is not None and language not in retry_languages(recording):
        abort(400)  # only the picker's languages
    try:
        queued = recordings.retry_and_queue(db(), _redis(), recording_sid, language)
    except recordings.RetryRefused:
        db().rollback()
        if language is None:
            message = _("Only a failed or empty recording can be transcribed again.")
        else:
            message = _("This recording cannot be transcribed again now.")
        return refuse("retranscribe-form", message, _page(call))
    if queued:
        flash(_("Queued for transcription again."), "success")
    else:
        # The row says "awaiting transcription": the reconciler queues it when Redis is back.
        flash(_("The queue is unavailable; the recording will be queued automatically."), "info")
    return _back(call, "#transcript")


@bp.post("/calls/<call_sid>/notifications/<int:delivery_id>/retry")
@login_required
def retry_notification(call_sid: str, delivery_id: int) -> WerkzeugResponse:
    """Send a failed notification again (`moked.notify.deliveries.retry`), then queue it."""
    call = call_or_404(call_sid, me())
    delivery: NotificationDelivery | None = next(
        (d for d in call.notifications if d.id == delivery_id), None
    )
    if delivery is None:  # another call's, or another business's: not ours to show
        abort(404)
    session = db()
    try:
        deliveries.retry(session, delivery_id)
        session.commit()  # before queueing: the worker must find it pending
    except deliveries.RetryRefused:
        session.rollback()
        message = _("Only a failed notification can be sent again.")
        return refuse(f"retry-{delivery_id}", message, _page(call))
    try:
        queue_delivery(_redis(), delivery_id)
    except RedisError:
        # The row is pending: the reconciler's sweep queues it when Redis is back.
        flash(_("The queue is unavailable; the notification will be sent automatically."), "info")
    else:
        flash(_("The notification will be sent again."), "success")
    return _back(call, "#notifications")


def _redis() -> Any:
    client = current_app.config.get("MOKED_REDIS")
    if client is None:
        client = redis_client(app_settings().redis_url)
        current_app.config["MOKED_REDIS"] = client
    return client
