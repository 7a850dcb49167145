"""The inbox: the calls of the user's businesses, newest first, filtered and searched.

It opens on the Open view (queries.InboxView); the counters count what the filters and the
view select. `/inbox/rows` renders just the list; the page's script polls it so new calls
and finished transcripts appear without a reload. `/inbox/bulk` resolves, assigns or tags
the checked calls at once.
"""

from __future__ import annotations

import csv
import io
import re

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response as WerkzeugResponse

from crm_ui.access import CurrentUser, login_required, me, scope_calls, visible_businesses
from crm_ui.calls import assign_call, assignable_users, tag_call, tag_name
from crm_ui.db import db
from crm_ui.feedback import refuse
from crm_ui.forms import BulkForm
from crm_ui.i18n import gettext as _
from crm_ui.present import call_time, local_time, main_recording
from crm_ui.queries import (
    MAX_PER_PAGE,
    VIEW_LABELS,
    CallFilters,
    inbox_stats,
    list_calls,
    list_filters,
    search_terms,
    tag_names,
)
from moked import followup
from moked.db.models import Call, User
from moked.statuses import CallStatus

bp = Blueprint("inbox", __name__)


def _filters() -> CallFilters:
    """The inbox's filters: the Open view unless the query names another (the same list
    a call page opened from here walks, queries.list_filters)."""
    return list_filters(request.args)


def _context() -> dict[str, object]:
    user = me()
    filters = _filters()
    page = list_calls(filters, user)
    businesses = visible_businesses(user)
    return {
        "filters": filters,
        "page": page,
        "businesses": businesses,
        "tags": tag_names(user, filters.business_id),
        "statuses": list(CallStatus),
        "stats": inbox_stats(filters, user),
        "views": VIEW_LABELS,
        "terms": search_terms(filters.q),
        "bulk_form": BulkForm(),
        "assignees": assignable_users(*(b.id for b in businesses)),
    }


def _status(context: dict[str, object]) -> int:
    """400 when a filter was refused: the page still renders, saying why, with no calls."""
    filters = context["filters"]
    return 400 if isinstance(filters, CallFilters) and filters.errors else 200


@bp.get("/")
@login_required
def index() -> tuple[str, int]:
    context = _context()
    return render_template("inbox.html", **context), _status(context)


@bp.get("/inbox/rows")
@login_required
def rows() -> tuple[str, int]:
    context = _context()
    return render_template("_inbox_rows.html", **context), _status(context)


EXPORT_LIMIT = 10_000
CSV_COLUMNS = (
    "call_sid",
    "business",
    "from",
    "to",
    "time",
    "duration_seconds",
    "status",
    "processing_status",
    "transcript",
    "tags",
    "handled",
    "assignee",
)


_PHONE_NUMBER = re.compile(r"\+\d{6,15}")
"""An E.164 number: starts with "+" but is no formula, and staff dial it as written."""


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    if _PHONE_NUMBER.fullmatch(text):
        return text
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.get("/inbox/export.csv")
@login_required
def export() -> Response | tuple[str, int]:
    """The filtered list (every page, up to EXPORT_LIMIT) as CSV for Excel (UTF-8 BOM). The
    inbox's link names its view; without one the export is of All calls, as it always was."""
    filters = CallFilters.from_args(request.args, per_page=EXPORT_LIMIT)
    if filters.errors:
        return render_template("error.html", code=400, error=None, reasons=filters.errors), 400
    filters.page = 1
    page = list_calls(filters, me())
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for call in page.calls:
        recording = main_recording(call)
        tz = call.business.timezone if call.business else None
        writer.writerow(
            _cell(v)
            for v in (
                call.call_sid,
                call.business.name if call.business else "",
                call.from_number,
                call.to_number,
                local_time(call_time(call), tz, "%Y-%m-%d %H:%M:%S"),
                call.duration_seconds,
                call.status.value,
                recording.processing_status.value if recording else "",
                recording.transcript if recording else "",
                ", ".join(ct.tag.name for ct in call.call_tags),
                "yes" if call.handled_at else "no",
                call.assignee.email if call.assignee else "",
            )
        )
    return Response(
        out.getvalue(),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="moked-calls.csv"'},
    )


def _plural(count: int, one: str, many: str, **values: object) -> str:
    return _(one, **values) if count == 1 else _(many, count=count, **values)


def _selected_calls(user: CurrentUser) -> tuple[list[Call], int]:
    """The checked calls the user may change, in id order (the order rows are locked in),
    and how many checked call_sids were not found among them: another business's call
    is not found, never acted on."""
    sids = list(dict.fromkeys(s for s in request.form.getlist("call_sid") if s))[:MAX_PER_PAGE]
    if not sids:
        return [], 0
    asked = [s for s in sids if "\x00" not in s]  # Postgres refuses NUL: no such call
    query = scope_calls(select(Call).where(Call.call_sid.in_(asked)), user).order_by(Call.id)
    calls = list(db().scalars(query))
    return calls, len(sids) - len(calls)


BULK_FORM = "bulk-form"
"""The bulk bar's element id: a refused bulk change is shown there (crm_ui.feedback)."""


@bp.post("/inbox/bulk")
@login_required
def bulk() -> WerkzeugResponse:
    """Resolve, assign or tag the checked calls, then back to the same view and filters."""
    user = me()
    page_url = url_for("inbox.index", **_filters().as_args())
    back = redirect(page_url)
    form = BulkForm()
    if not form.validate_on_submit():
        return refuse(BULK_FORM, _("That change could not be made."), page_url)
    calls, missing = _selected_calls(user)
    if not calls and not missing:
        return refuse(BULK_FORM, _("Select at least one call."), page_url)
    session = db()
    changed = unchanged = 0
    if form.operation.data == "resolve":
        for call in calls:
            # moked.followup owns the state: the timeline records who and when.
            locked = followup.lock(session, call.id)
            if locked is not None and followup.set_handled(session, locked, True, user_id=user.id):
                changed += 1
            else:
                unchanged += 1
        summary = _plural(changed, "1 call resolved.", "{count} calls resolved.")
    elif form.operation.data == "assign":
        chosen: User | None = None
        if form.assignee.data:
            chosen = next((u for u in assignable_users(*(c.business_id for c in calls))
                           if str(u.id) == form.assignee.data), None)  # fmt: skip
            if chosen is None:  # nobody the selected calls' businesses have
                message = _("That user cannot be assigned to these calls.")
                return refuse(BULK_FORM, message, page_url)
        for call in calls:
            if assign_call(call, chosen, me().id):
                changed += 1
            else:
                unchanged += 1
        summary = _plural(changed, "1 call assigned.", "{count} calls assigned.")
    else:
        name = tag_name(form.tag.data)
        if not name:
            return refuse(BULK_FORM, _("A tag needs a name of up to 64 characters."), page_url)
        for call in calls:
            if call.business_id is None:
                unchanged += 1
                continue
            tag_call(call, name, user.id)
            changed += 1
        summary = _plural(changed, "Tag added to 1 call.", "Tag added to {count} calls.")
    session.commit()
    flash(summary, "success" if changed else "info")
    if unchanged:
        reasons = {
            "resolve": "Already resolved: {count}.",
            "assign": "Not assigned, the user does not work for their business: {count}.",
            "tag": "Not tagged, the call has no business: {count}.",
        }
        flash(_(reasons[form.operation.data or "tag"], count=unchanged), "info")
    if missing:
        flash(_("Calls not found: {count}.", count=missing), "error")
    return back
