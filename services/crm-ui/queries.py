"""The call list behind the inbox and the API: filters, transcript search, pagination.

Search: every word must match (AND). A word matches a recording's transcript as a
substring (ILIKE, served by the pg_trgm GIN index), so Hebrew works without stemming:
"פגישה" finds "והפגישה". Digits also match the caller's number; words match notes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, exists, func, or_, select

from crm_ui.access import CurrentUser, scope_calls
from crm_ui.db import db
from crm_ui.present import zone
from moked.calls import call_loading
from moked.db.models import Business, Call, CallTag, Note, Recording, Tag, call_time
from moked.recordings import PENDING
from moked.statuses import CallStatus, ProcessingStatus

PER_PAGE = 25
MAX_PER_PAGE = 100
MAX_TERMS = 8

PROCESSING_FILTERS: dict[str, frozenset[ProcessingStatus]] = {
    "awaiting": PENDING,
    "ready": frozenset({ProcessingStatus.READY}),
    "failed": frozenset({ProcessingStatus.FAILED}),
    "empty": frozenset({ProcessingStatus.EMPTY, ProcessingStatus.ABSENT}),
}


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_terms(q: str) -> list[str]:
    terms = [t for t in re.split(r"\s+", q.strip()) if t]
    return [t.strip("\"'.,;:!?()") or t for t in terms][:MAX_TERMS]


def _date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


@dataclass
class CallFilters:
    business_id: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    status: CallStatus | None = None
    processing: str | None = None
    tag: str | None = None
    handled: str | None = None
    assignee: str | None = None
    q: str = ""
    page: int = 1
    per_page: int = PER_PAGE
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: Any, *, per_page: int = PER_PAGE) -> CallFilters:
        status = CallStatus.parse(args.get("status")) if args.get("status") else None
        processing = args.get("processing") or None
        handled = args.get("handled") or None
        assignee = args.get("assignee") or None
        raw_per_page = str(args.get("per_page") or "")
        if raw_per_page.isdigit():
            per_page = max(1, min(MAX_PER_PAGE, int(raw_per_page)))
        return cls(
            business_id=_int(args.get("business")),
            date_from=_date(args.get("from")),
            date_to=_date(args.get("to")),
            status=status,
            processing=processing if processing in PROCESSING_FILTERS else None,
            tag=(args.get("tag") or "").strip()[:64] or None,
            handled=handled if handled in ("open", "handled") else None,
            assignee=assignee if assignee in ("me", "none") else None,
            q=(args.get("q") or "").strip()[:200],
            page=max(1, _int(args.get("page")) or 1),
            per_page=per_page,
        )

    def as_args(self, **changes: Any) -> dict[str, Any]:
        """Query-string arguments for links (pagination keeps the filters)."""
        values = {
            "business": self.business_id,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "status": self.status.value if self.status else None,
            "processing": self.processing,
            "tag": self.tag,
            "handled": self.handled,
            "assignee": self.assignee,
            "q": self.q or None,
            "page": self.page if self.page > 1 else None,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v not in (None, "")}

    @property
    def active(self) -> bool:
        return bool(set(self.as_args()) - {"page"})

    @property
    def filter_count(self) -> int:
        """Filters in use besides the search words."""
        return len(set(self.as_args()) - {"page", "q"})


@dataclass
class CallPage:
    calls: list[Call]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _sort_key() -> Any:
    return call_time()  # the expression the inbox indexes are built on


def filtered_calls(filters: CallFilters, user: CurrentUser) -> Select[Call]:
    query = scope_calls(select(Call), user)
    if filters.business_id is not None:
        query = query.where(Call.business_id == filters.business_id)
    tz = zone(None)
    if filters.business_id is not None:
        business = db().get(Business, filters.business_id)
        if business is not None:
            tz = zone(business.timezone)
    if filters.date_from is not None:
        start = dt.datetime.combine(filters.date_from, dt.time.min, tzinfo=tz)
        query = query.where(_sort_key() >= start)
    if filters.date_to is not None:
        end = dt.datetime.combine(filters.date_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
        query = query.where(_sort_key() < end)
    if filters.status is not None:
        query = query.where(Call.status == filters.status)
    if filters.processing is not None:
        statuses = PROCESSING_FILTERS[filters.processing]
        query = query.where(
            exists().where(Recording.call_id == Call.id, Recording.processing_status.in_(statuses))
        )
    if filters.tag:
        query = query.where(
            exists()
            .where(CallTag.call_id == Call.id)
            .where(CallTag.tag_id == Tag.id)
            .where(func.lower(Tag.name) == filters.tag.lower())
        )
    if filters.handled == "open":
        query = query.where(Call.handled_at.is_(None))
    elif filters.handled == "handled":
        query = query.where(Call.handled_at.is_not(None))
    if filters.assignee == "me":
        query = query.where(Call.assignee_id == user.id)
    elif filters.assignee == "none":
        query = query.where(Call.assignee_id.is_(None))
    for term in search_terms(filters.q):
        pattern = f"%{_escape_like(term)}%"
        matches = [
            exists().where(Recording.call_id == Call.id, Recording.transcript.ilike(pattern)),
            exists().where(Note.call_id == Call.id, Note.body.ilike(pattern)),
            Call.caller_name.ilike(pattern),
        ]
        digits = re.sub(r"\D", "", term)
        if len(digits) >= 3:
            # 050-123 finds +97250123…: compare without the trunk zero.
            matches.append(Call.from_number.like(f"%{digits.lstrip('0')}%"))
        query = query.where(or_(*matches))
    return query


def list_calls(filters: CallFilters, user: CurrentUser) -> CallPage:
    base = filtered_calls(filters, user)
    total = int(db().scalar(select(func.count()).select_from(base.subquery())) or 0)
    query = (
        base.options(*call_loading())
        .order_by(_sort_key().desc(), Call.id.desc())
        .limit(filters.per_page)
        .offset((filters.page - 1) * filters.per_page)
    )
    return CallPage(
        calls=list(db().scalars(query)), total=total, page=filters.page, per_page=filters.per_page
    )


@dataclass(frozen=True, slots=True)
class InboxStats:
    open: int
    today: int
    today_iso: str
    pending: int
    failed: int


def inbox_stats(user: CurrentUser) -> InboxStats:
    """The numbers above the inbox, over every business the user sees."""
    today = dt.datetime.now(zone(None)).date()
    start = dt.datetime.combine(today, dt.time.min, tzinfo=zone(None))

    def count(query: Select[Call]) -> int:
        return int(db().scalar(select(func.count()).select_from(query.subquery())) or 0)

    base = scope_calls(select(Call), user)

    def with_processing(statuses: frozenset[ProcessingStatus]) -> Select[Call]:
        return base.where(
            exists().where(Recording.call_id == Call.id, Recording.processing_status.in_(statuses))
        )

    return InboxStats(
        open=count(base.where(Call.handled_at.is_(None))),
        today=count(base.where(_sort_key() >= start)),
        today_iso=today.isoformat(),
        pending=count(with_processing(PROCESSING_FILTERS["awaiting"])),
        failed=count(with_processing(PROCESSING_FILTERS["failed"])),
    )


def tag_names(user: CurrentUser, business_id: int | None = None) -> list[str]:
    query = select(Tag.name).distinct().order_by(Tag.name)
    if user.business_ids is not None:
        query = query.where(Tag.business_id.in_(user.business_ids or [-1]))
    if business_id is not None:
        query = query.where(Tag.business_id == business_id)
    return list(db().scalars(query))
