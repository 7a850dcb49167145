"""The inbox: the calls of the user's businesses, newest first, filtered and searched.

`/inbox/rows` renders just the list; the page's script polls it so new calls and finished
transcripts appear without a reload.
"""

from __future__ import annotations

import csv
import io
import re

from flask import Blueprint, Response, render_template, request

from crm_ui.access import login_required, me, visible_businesses
from crm_ui.present import call_time, local_time, main_recording
from crm_ui.queries import CallFilters, inbox_stats, list_calls, search_terms, tag_names
from moked.statuses import CallStatus

bp = Blueprint("inbox", __name__)


def _context() -> dict[str, object]:
    user = me()
    filters = CallFilters.from_args(request.args)
    page = list_calls(filters, user)
    return {
        "filters": filters,
        "page": page,
        "businesses": visible_businesses(user),
        "tags": tag_names(user, filters.business_id),
        "statuses": list(CallStatus),
        "stats": inbox_stats(user),
        "terms": search_terms(filters.q),
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
    """The filtered list (every page, up to EXPORT_LIMIT) as CSV for Excel (UTF-8 BOM)."""
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
