"""The call list behind the inbox and the API: filters, transcript search, pagination.

Search: every word must match (AND). A word matches a recording's transcript as a
substring (ILIKE, served by the pg_trgm GIN index), so Hebrew works without stemming:
"פגישה" finds "והפגישה". Digits also match the caller's number; words match notes.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Select, exists, func, literal, or_, select, tuple_
from werkzeug.datastructures import MultiDict

from crm_ui.access import CurrentUser, scope_calls, visible_businesses
from crm_ui.db import db
from crm_ui.present import call_time as when_called
from crm_ui.present import zone
from moked.calls import call_loading
from moked.db.models import Business, Call, CallTag, Note, Recording, Tag, call_time
from moked.recordings import PENDING
from moked.statuses import CallStatus, FollowUp, ProcessingStatus

PER_PAGE = 25
MAX_PER_PAGE = 100
MAX_TERMS = 8

CALL_KINDS = ("voicemail", "missed")
"""Calls where the caller left a message, and calls where they left nothing."""
PROCESSING_FILTERS: dict[str, frozenset[ProcessingStatus]] = {
    "awaiting": PENDING,
    "ready": frozenset({ProcessingStatus.READY}),
    "failed": frozenset({ProcessingStatus.FAILED}),
    "empty": frozenset({ProcessingStatus.EMPTY, ProcessingStatus.ABSENT}),
}


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


PHONE_LIKE = re.compile(r"\+?[\d\-(). ]+")
"""A search term that is a (part of a) phone number as people write one."""
SPACED_NUMBER_DIGITS = 7
"""Words of digits in a row with at least this many digits in all are one phone number
written with spaces ("054 555 0123", "+972 54 555"); fewer ("10 30") stay words."""


def search_terms(q: str) -> list[str]:
    words = [t.strip("\"'.,;:!?()") or t for t in re.split(r"\s+", q.strip()) if t]
    terms: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:  # "" ends the last run
        if word and PHONE_LIKE.fullmatch(word) and (not run or not word.startswith("+")):
            run.append(word)
            continue
        digits = sum(ch.isdigit() for ch in "".join(run))
        terms.extend(["".join(run)] if digits >= SPACED_NUMBER_DIGITS else run)
        run = [word] if word and PHONE_LIKE.fullmatch(word) else []
        if word and not run:
            terms.append(word)
    return terms[:MAX_TERMS]


MAX_PAGE = 100_000
MIN_DATE = dt.date(2000, 1, 1)
MAX_DATE = dt.date(2199, 12, 31)
"""Dates a filter may name: a day past these is a typo or an attack, and one past
date.max (9999-12-31 + the day the "to" filter adds) would overflow."""
MAX_ID = 2**31 - 1  # Postgres integer: a larger business id is refused by the database

# Why a query was refused: English message ids (the CRM translates them, the API sends them).
NUL_IN_QUERY = "The search or a filter contains a character that is not allowed."
BAD_FROM_DATE = "The from date is not a valid date between 2000 and 2199."
BAD_TO_DATE = "The to date is not a valid date between 2000 and 2199."
REVERSED_DATES = "The from date is after the to date."
BAD_PAGE = "The page number must be a whole number from 1 to 100000."
BAD_PER_PAGE = "The number of calls per page must be a whole number from 1 to 100."
BAD_BUSINESS = "The business filter is not a valid business."


class InboxView(enum.StrEnum):
    """The inbox's saved views (`?view=`): which part of the work a receptionist looks at.

    Open work is a call whose follow-up is open (`FollowUp.is_open`: not resolved) and
    that was not blocked: a blocked caller's call was rejected on purpose (no message, no
    alert) and is kept for the record, not to be called back, so only All shows it.
    """

    MINE = "mine"
    """Open and assigned to me."""
    UNASSIGNED = "unassigned"
    """Open and assigned to nobody."""
    OPEN = "open"
    ALL = "all"
    """Every call, resolved and blocked ones too."""

    @classmethod
    def parse(cls, value: str, default: InboxView) -> InboxView:
        """The view named in a query string; `default` for a missing or unknown one."""
        try:
            return cls(value)
        except ValueError:
            return default


VIEW_LABELS = {
    InboxView.MINE: "Mine",
    InboxView.UNASSIGNED: "Unassigned",
    InboxView.OPEN: "Open calls",
    InboxView.ALL: "All",
}
"""The views' tab labels (message ids), in the order the tabs show ("Open" alone is a
call's state, singular in Hebrew)."""
OPEN_FOLLOW_UPS = tuple(state for state in FollowUp if state.is_open)

_WHOLE_NUMBER = re.compile(r"[0-9]{1,12}")
"""ASCII digits only: str.isdigit() accepts "²", which int() then refuses."""


def _date(value: str, error: str, errors: list[str]) -> dt.date | None:
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        day = None
    if day is None or not MIN_DATE <= day <= MAX_DATE:
        errors.append(error)
        return None
    return day


def _number(value: str, low: int, high: int, error: str, errors: list[str]) -> int | None:
    """A whole number in [low, high]; None (and `error` noted) for anything else."""
    if not value:
        return None
    if _WHOLE_NUMBER.fullmatch(value) and low <= int(value) <= high:
        return int(value)
    errors.append(error)
    return None


def _has_nul(args: Any) -> bool:
    items = args.items(multi=True) if isinstance(args, MultiDict) else dict(args).items()
    return any("\x00" in str(key) or "\x00" in str(value) for key, value in items)


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
    kind: str | None = None
    """voicemail (the caller left a message) or missed (they left nothing)."""
    follow_up: FollowUp | None = None
    view: InboxView = InboxView.ALL
    """The saved view; the inbox opens on Open, the API and the CSV on All."""
    q: str = ""
    page: int = 1
    per_page: int = PER_PAGE
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_args(
        cls, args: Any, *, per_page: int = PER_PAGE, view: InboxView = InboxView.ALL
    ) -> CallFilters:
        """The filters in a query string (`view`: the view when none is named). A value
        that cannot be a filter is dropped and its reason kept in `errors` (the callers
        answer 400 and `list_calls` finds nothing), so no hostile value (a NUL, a page
        past any integer) reaches Postgres."""
        errors: list[str] = []
        if _has_nul(args):
            errors.append(NUL_IN_QUERY)

        def arg(name: str) -> str:
            return str(args.get(name) or "").replace("\x00", "").strip()

        status = CallStatus.parse(arg("status")) if arg("status") else None
        processing = arg("processing") or None
        handled = arg("handled") or None
        assignee = arg("assignee") or None
        kind = arg("kind") or None
        follow_up = arg("follow_up")
        chosen_per_page = _number(arg("per_page"), 1, MAX_PER_PAGE, BAD_PER_PAGE, errors)
        date_from = _date(arg("from"), BAD_FROM_DATE, errors)
        date_to = _date(arg("to"), BAD_TO_DATE, errors)
        if date_from and date_to and date_from > date_to:
            errors.append(REVERSED_DATES)
        return cls(
            business_id=_number(arg("business"), 1, MAX_ID, BAD_BUSINESS, errors),
            date_from=date_from,
            date_to=date_to,
            status=status,
            processing=processing if processing in PROCESSING_FILTERS else None,
            tag=arg("tag")[:64] or None,
            handled=handled if handled in ("open", "handled") else None,
            assignee=assignee if assignee in ("me", "none") else None,
            kind=kind if kind in CALL_KINDS else None,
            follow_up=FollowUp(follow_up) if follow_up in set(FollowUp) else None,
            view=InboxView.parse(arg("view"), view),
            q=arg("q")[:200],
            page=_number(arg("page"), 1, MAX_PAGE, BAD_PAGE, errors) or 1,
            per_page=chosen_per_page or per_page,
            errors=errors,
        )

    def as_args(self, **changes: Any) -> dict[str, Any]:
        """Query-string arguments for links (pagination keeps the filters). The view is
        always named: the inbox and the CSV export have different defaults."""
        values = {
            "view": self.view.value,
            "business": self.business_id,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "status": self.status.value if self.status else None,
            "processing": self.processing,
            "tag": self.tag,
            "handled": self.handled,
            "assignee": self.assignee,
            "kind": self.kind,
            "follow_up": self.follow_up.value if self.follow_up else None,
            "q": self.q or None,
            "page": self.page if self.page > 1 else None,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v not in (None, "")}

    @property
    def active(self) -> bool:
        """Filters or search words in use (the view is no filter: "Clear" keeps it)."""
        return bool(set(self.as_args()) - {"page", "view"})

    @property
    def filter_count(self) -> int:
        """Filters in use besides the search words and the view."""
        return len(set(self.as_args()) - {"page", "q", "view"})

    def with_view(self, view: InboxView) -> CallFilters:
        """The same filters in another view (first page)."""
        return replace(self, view=view, page=1, errors=list(self.errors))


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


def in_view(query: Select[Call], view: InboxView, user: CurrentUser) -> Select[Call]:
    """`query` narrowed to the calls of `view` (see InboxView)."""
    if view is InboxView.ALL:
        return query
    query = query.where(Call.follow_up.in_(OPEN_FOLLOW_UPS), Call.blocked.is_(False))
    if view is InboxView.MINE:
        query = query.where(Call.assignee_id == user.id)
    elif view is InboxView.UNASSIGNED:
        query = query.where(Call.assignee_id.is_(None))
    return query


def filters_zone(filters: CallFilters, user: CurrentUser) -> dt.tzinfo:
    """The zone whose days the date filters and the day/week counts mean: the filtered
    business's; without a business filter, the first business the user sees (by name;
    a receptionist's businesses share Israel's zone), else DEFAULT_TIMEZONE."""
    business: Business | None = None
    if filters.business_id is not None:
        business = db().get(Business, filters.business_id)
    else:
        visible = visible_businesses(user)
        business = visible[0] if visible else None
    return zone(business.timezone if business is not None else None)


def filtered_calls(filters: CallFilters, user: CurrentUser) -> Select[Call]:
    query = in_view(scope_calls(select(Call), user), filters.view, user)
    if filters.business_id is not None:
        query = query.where(Call.business_id == filters.business_id)
    tz = filters_zone(filters, user) if filters.date_from or filters.date_to else zone(None)
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
    if filters.kind is not None:
        left_message = exists().where(
            Recording.call_id == Call.id, Recording.processing_status != ProcessingStatus.ABSENT
        )
        if filters.kind == "voicemail":
            query = query.where(left_message)
        else:  # missed: over, and nothing recorded (a blocked caller's call was rejected)
            ended = [s for s in CallStatus if s.is_terminal]
            query = query.where(~left_message, Call.status.in_(ended), Call.blocked.is_(False))
    if filters.follow_up is not None:
        query = query.where(Call.follow_up == filters.follow_up)
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
        # Only a term written as a number (050-123, +972 50, (03) 555) searches numbers:
        # the digits inside a word ("order-a1b2c3") are not a phone number.
        if len(digits) >= 3 and PHONE_LIKE.fullmatch(term):
            # 050-123 finds +97250123…: compare without the trunk zero.
            matches.append(Call.from_number.like(f"%{digits.lstrip('0')}%"))
        query = query.where(or_(*matches))
    return query


def list_calls(filters: CallFilters, user: CurrentUser) -> CallPage:
    """One page of the filtered calls; nothing for filters with errors (never queried)."""
    if filters.errors:
        return CallPage(calls=[], total=0, page=filters.page, per_page=filters.per_page)
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


def list_filters(args: Any) -> CallFilters:
    """The inbox list a call page was opened from: the inbox's filters and view in its
    query string; without a view, the inbox's own default (Open)."""
    return CallFilters.from_args(args, view=InboxView.OPEN)


def list_args(args: Any) -> dict[str, Any]:
    """That list as the query arguments the call page's links and forms keep:
    previous/next, "back to the inbox", and the redirect after each change."""
    return list_filters(args).as_args()


@dataclass(frozen=True, slots=True)
class Neighbours:
    """The calls around one call in a filtered list (CallSids; None at either end)."""

    previous: str | None
    """The newer call: the row above in the inbox."""
    next: str | None
    """The older call: the row below."""


def neighbours(filters: CallFilters, user: CurrentUser, call: Call) -> Neighbours:
    """The calls just above and below `call` in the inbox's order (newest first) of the
    filtered list, only from the user's businesses. The call need not be in the list any
    more (resolved in the Open view): its place in the order still says what comes next.
    Nothing for filters with errors (never queried)."""
    if filters.errors:
        return Neighbours(None, None)
    at = when_called(call)
    if at is None:  # a call not stored yet has no place in a list
        return Neighbours(None, None)
    key = tuple_(_sort_key(), Call.id)
    here = tuple_(literal(at), literal(call.id))
    base = filtered_calls(filters, user)
    newer = base.where(key > here).order_by(_sort_key().asc(), Call.id.asc()).limit(1)
    older = base.where(key < here).order_by(_sort_key().desc(), Call.id.desc()).limit(1)
    above, below = db().scalar(newer), db().scalar(older)
    return Neighbours(
        previous=above.call_sid if above is not None else None,
        next=below.call_sid if below is not None else None,
    )


@dataclass(frozen=True, slots=True)
class InboxStats:
    """The numbers above the inbox: what the active filters and view select."""

    open: int
    today: int
    today_iso: str
    week: int
    week_iso: str
    """The first day (Sunday, as in Israel) of the current week."""
    pending: int
    failed: int
    views: dict[InboxView, int]
    """Each saved view's count under the same filters."""


def week_start(day: dt.date) -> dt.date:
    """The Sunday that starts `day`'s week (Israel's week: Sunday to Saturday)."""
    return day - dt.timedelta(days=(day.weekday() + 1) % 7)


def _count(query: Select[Call]) -> int:
    return int(db().scalar(select(func.count()).select_from(query.subquery())) or 0)


def inbox_stats(
    filters: CallFilters, user: CurrentUser, *, now: dt.datetime | None = None
) -> InboxStats:
    """The counters for the calls `filters` select (their view included); every view's
    count with the same filters. Days and weeks are those of `filters_zone`. Filters
    with errors select nothing (never queried)."""
    tz = filters_zone(filters, user)
    today = (now or dt.datetime.now(dt.UTC)).astimezone(tz).date()
    sunday = week_start(today)
    if filters.errors:
        return InboxStats(0, 0, today.isoformat(), 0, sunday.isoformat(), 0, 0,
                          dict.fromkeys(InboxView, 0))  # fmt: skip
    base = filtered_calls(filters, user)

    def since(day: dt.date) -> Select[Call]:
        return base.where(_sort_key() >= dt.datetime.combine(day, dt.time.min, tzinfo=tz))

    def with_processing(statuses: frozenset[ProcessingStatus]) -> Select[Call]:
        return base.where(
            exists().where(Recording.call_id == Call.id, Recording.processing_status.in_(statuses))
        )

    return InboxStats(
        open=_count(in_view(base, InboxView.OPEN, user)),
        today=_count(since(today)),
        today_iso=today.isoformat(),
        week=_count(since(sunday)),
        week_iso=sunday.isoformat(),
        pending=_count(with_processing(PROCESSING_FILTERS["awaiting"])),
        failed=_count(with_processing(PROCESSING_FILTERS["failed"])),
        views={view: _count(filtered_calls(filters.with_view(view), user)) for view in InboxView},
    )


def tag_names(user: CurrentUser, business_id: int | None = None) -> list[str]:
    query = select(Tag.name).distinct().order_by(Tag.name)
    if user.business_ids is not None:
        query = query.where(Tag.business_id.in_(user.business_ids or [-1]))
    if business_id is not None:
        query = query.where(Tag.business_id == business_id)
    return list(db().scalars(query))
