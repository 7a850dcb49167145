"""Who may see what: every query for calls, recordings and businesses goes through here.

admin sees every business; staff only those of their memberships. Anything outside the
user's scope is answered 404, never 403, so its existence is not revealed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from flask import abort
from flask_login import UserMixin, current_user
from flask_login import login_required as _login_required
from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload

from crm_ui.db import db
from moked.accounts import Role, business_ids_for
from moked.accounts import manages as _account_manages
from moked.db.models import AssignmentChange, Business, Call, CallTag, Recording, User


@dataclass
class CurrentUser(UserMixin):  # type: ignore[misc]
    """The signed-in user as the request sees it (detached from the database session)."""

    id: int
    email: str
    name: str | None
    role: str
    language: str
    session_generation: int
    """users.session_generation when this session began; the loader refuses a stale one."""
    business_ids: list[int] | None = field(default=None)
    """None = every business (admin)."""

    @classmethod
    def from_model(cls, user: User) -> CurrentUser:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            language=user.language,
            session_generation=user.session_generation,
            business_ids=business_ids_for(db(), user),
        )

    def get_id(self) -> str:
        # What Flask-Login keeps in the session cookie: the user and the generation.
        return f"{self.id}:{self.session_generation}"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value

    @property
    def display_name(self) -> str:
        return self.name or self.email

    def can_see(self, business_id: int | None) -> bool:
        if self.business_ids is None:
            return True
        return business_id is not None and business_id in self.business_ids


View = TypeVar("View", bound=Callable[..., Any])


def login_required(view: View) -> View:
    """flask_login.login_required, typed."""
    return cast(View, _login_required(view))


def me() -> CurrentUser:
    user = current_user._get_current_object()
    assert isinstance(user, CurrentUser)
    return user


def scope_calls(query: Select[Call], user: CurrentUser) -> Select[Call]:
    if user.business_ids is None:
        return query
    return query.where(Call.business_id.in_(user.business_ids or [-1]))


def visible_businesses(user: CurrentUser) -> list[Business]:
    query = select(Business).options(selectinload(Business.numbers)).order_by(Business.name)
    if user.business_ids is not None:
        query = query.where(Business.id.in_(user.business_ids or [-1]))
    return list(db().scalars(query))


def business_or_404(business_id: int, user: CurrentUser) -> Business:
    business = db().get(Business, business_id)
    if business is None or not user.can_see(business.id):
        abort(404)
    return business


def manages(user: CurrentUser, business_id: int) -> bool:
    """Whether the user manages the business (moked.accounts.manages: an admin, or one of
    its owners): staff, greetings, numbers, tags, notification rules, callback hours."""
    return user.can_see(business_id) and _account_manages(db(), user.id, business_id)


def managed_business_or_404(business_id: int, user: CurrentUser) -> Business:
    """The business for a change: 404 outside the user's businesses (as everywhere), 403
    for a member who may see it but not manage it."""
    business = business_or_404(business_id, user)
    if not manages(user, business.id):
        abort(403)
    return business


def call_or_404(call_sid: str, user: CurrentUser) -> Call:
    if "\x00" in call_sid:  # Postgres refuses NUL in text: no such call, not a 500
        abort(404)
    query = scope_calls(
        select(Call)
        .options(
            selectinload(Call.recordings),
            selectinload(Call.business).selectinload(Business.numbers),
            selectinload(Call.call_tags).selectinload(CallTag.tag),
            selectinload(Call.assignee),
            selectinload(Call.assignment_changes).selectinload(AssignmentChange.assignee),
            selectinload(Call.assignment_changes).selectinload(AssignmentChange.by),
            selectinload(Call.handled_by),
        )
        .where(Call.call_sid == call_sid),
        user,
    )
    call = db().scalar(query)
    if call is None:
        abort(404)
    return call


def recording_or_404(recording_sid: str, user: CurrentUser) -> Recording:
    query = (
        select(Recording)
        .join(Call, Recording.call_id == Call.id)
        .where(Recording.recording_sid == recording_sid)
    )
    if user.business_ids is not None:
        query = query.where(Call.business_id.in_(user.business_ids or [-1]))
    recording = db().scalar(query)
    if recording is None:
        abort(404)
    return recording
