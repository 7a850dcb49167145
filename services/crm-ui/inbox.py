"""The inbox: the calls of the user's businesses, newest first, filtered and searched.

`/inbox/rows` renders just the list; the page's script polls it so new calls and finished
transcripts appear without a reload.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request

from crm_ui.access import login_required, me, visible_businesses
from crm_ui.queries import CallFilters, inbox_stats, list_calls, tag_names
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
    }


@bp.get("/")
@login_required
def index() -> str:
    return render_template("inbox.html", **_context())


@bp.get("/inbox/rows")
@login_required
def rows() -> str:
    return render_template("_inbox_rows.html", **_context())
