"""Per business: greetings (upload, preview, make active), greeting text, numbers, tags
and the team.

Admins and the business's owners manage it (crm_ui.access.manages); its other members see
the page read-only and get 403 on a change; anyone else gets 404, as everywhere.

A greeting is validated as real MP3 audio within the size and duration limits and stored
under a new versioned name (moked.greetings); making it active points the business at that
name, so `incoming_call` plays it from the next call on and Twilio's cache is never stale.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from sqlalchemy import delete, func, select
from werkzeug.wrappers import Response as WerkzeugResponse

from crm_ui.access import (
    business_or_404,
    login_required,
    managed_business_or_404,
    manages,
    me,
    visible_businesses,
)
from crm_ui.db import app_settings, db
from crm_ui.feedback import refuse
from crm_ui.forms import (
    ActionForm,
    GreetingTextForm,
    GreetingUploadForm,
    MemberForm,
    MemberRoleForm,
    NumberForm,
    TagForm,
)
from crm_ui.i18n import gettext as _
from moked.accounts import (
    AccountError,
    LastOwner,
    add_user,
    remove_membership,
    set_membership_role,
)
from moked.businesses import BusinessError, add_number, remove_number
from moked.db.models import Business, Call, Membership, Tag, User
from moked.greetings import (
    GREETINGS_URL_PREFIX,
    MAX_GREETING_BYTES,
    MAX_GREETING_SECONDS,
    InvalidGreeting,
    inspect_mp3,
    is_safe_name,
    prune_versions,
    store_greeting,
)
from moked.phone import InvalidPhoneNumber
from moked.statuses import MembershipRole

bp = Blueprint("businesses", __name__)


@dataclass(frozen=True, slots=True)
class GreetingVersion:
    name: str
    url: str
    uploaded_at: dt.datetime
    size_kb: int
    seconds: float | None
    active: bool


def greeting_versions(business: Business, greetings_dir: Path) -> list[GreetingVersion]:
    """The business's stored greetings (every upload keeps its own versioned file)."""
    versions = []
    for path in greetings_dir.glob(f"business_{business.id}_*.mp3"):
        if not is_safe_name(path.name):
            continue
        stat = path.stat()
        try:
            seconds: float | None = inspect_mp3(path.read_bytes()).seconds
        except (InvalidGreeting, OSError):
            seconds = None
        versions.append(
            GreetingVersion(
                name=path.name,
                url=GREETINGS_URL_PREFIX + path.name,
                uploaded_at=dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC),
                size_kb=max(1, stat.st_size // 1024),
                seconds=seconds,
                active=path.name == business.greeting_file,
            )
        )
    return sorted(versions, key=lambda v: (not v.active, -v.uploaded_at.timestamp()))


def _page(business: Business) -> str:
    return url_for("businesses.show", business_id=business.id)


def _back(business: Business, anchor: str = "") -> WerkzeugResponse:
    return redirect(url_for("businesses.show", business_id=business.id) + anchor)


@bp.get("/businesses")
@login_required
def index() -> str:
    businesses = visible_businesses(me())
    counts = dict(
        db()
        .execute(
            select(Call.business_id, func.count())
            .where(Call.business_id.in_([b.id for b in businesses] or [-1]))
            .where(Call.handled_at.is_(None))
            .group_by(Call.business_id)
        )
        .all()
    )
    return render_template("businesses.html", businesses=businesses, open_counts=counts)


@bp.get("/businesses/<int:business_id>")
@login_required
def show(business_id: int) -> str:
    return _render(business_or_404(business_id, me()))


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    email: str
    name: str | None
    admin: bool
    role: MembershipRole


def _members(business: Business) -> list[Member]:
    rows = db().execute(
        select(User.id, User.email, User.name, User.role, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.business_id == business.id)
        .order_by(User.email)
    )
    return [
        Member(id=uid, email=email, name=name, admin=role == "admin", role=membership)
        for uid, email, name, role, membership in rows
    ]


def _render(business: Business, **extra: object) -> str:
    """The business page (a refused form's error shows inside it: crm_ui.feedback)."""
    members = _members(business)
    tags = list(db().scalars(select(Tag).where(Tag.business_id == business.id).order_by(Tag.name)))
    text_form = GreetingTextForm()
    text_form.text.data = business.greeting_text or ""
    return render_template(
        "business.html",
        business=business,
        versions=greeting_versions(business, app_settings().greetings_dir),
        upload_form=GreetingUploadForm(),
        text_form=text_form,
        number_form=NumberForm(),
        tag_form=TagForm(),
        action_form=ActionForm(),
        members=members,
        tags=tags,
        max_mb=MAX_GREETING_BYTES // (1024 * 1024),
        max_seconds=int(MAX_GREETING_SECONDS),
        default_text=app_settings().default_greeting_text,
        member_form=MemberForm(),
        can_manage=manages(me(), business.id),
        **{"new_member": None, **extra},
    )


@bp.post("/businesses/<int:business_id>/greetings")
@login_required
def upload_greeting(business_id: int) -> WerkzeugResponse:
    business = managed_business_or_404(business_id, me())
    form = GreetingUploadForm()
    if not form.validate_on_submit():
        return refuse("greeting-upload", _("Choose an MP3 file to upload."), _page(business))
    upload = form.file.data
    data = upload.read(MAX_GREETING_BYTES + 1)
    if len(data) > MAX_GREETING_BYTES:
        limit_mb = MAX_GREETING_BYTES // (1024 * 1024)
        message = _("The file is larger than {mb} MB.", mb=limit_mb)
        return refuse("greeting-upload", message, _page(business))
    settings = app_settings()
    try:
        info = inspect_mp3(data)
        name = store_greeting(settings.greetings_dir, business.id, data)
    except InvalidGreeting as exc:
        message = _("This is not a usable MP3 greeting: {reason}", reason=_(str(exc)))
        return refuse("greeting-upload", message, _page(business))
    if form.activate.data:
        business.greeting_file = name
        db().commit()
        message = _("Greeting uploaded ({seconds:.1f} s) and now active.", seconds=info.seconds)
        flash(message, "success")
    else:
        flash(_("Greeting uploaded ({seconds:.1f} s).", seconds=info.seconds), "success")
    prune_versions(
        settings.greetings_dir,
        business.id,
        current=business.greeting_file,
        keep=settings.greeting_versions_kept,
    )
    return _back(business, "#greeting")


@bp.post("/businesses/<int:business_id>/greetings/<name>/activate")
@login_required
def activate_greeting(business_id: int, name: str) -> WerkzeugResponse:
    business = managed_business_or_404(business_id, me())
    ActionForm()
    path = app_settings().greetings_dir / name
    own = is_safe_name(name) and name.startswith(f"business_{business.id}_")
    if not own or not path.exists():
        abort(404)
    business.greeting_file = name
    db().commit()
    flash(_("Greeting activated. The next call will hear it."), "success")
    return _back(business, "#greeting")


@bp.post("/businesses/<int:business_id>/greetings/<name>/delete")
@login_required
def delete_greeting(business_id: int, name: str) -> WerkzeugResponse:
    """Remove a stored version that is not active (the active one cannot be deleted)."""
    business = managed_business_or_404(business_id, me())
    path = app_settings().greetings_dir / name
    own = is_safe_name(name) and name.startswith(f"business_{business.id}_")
    if not own or not path.exists():
        abort(404)
    if name == business.greeting_file:
        message = _("The active greeting cannot be deleted; activate another one first.")
        return refuse(f"delete-{name}", message, _page(business))
    path.unlink()
    flash(_("Greeting version deleted."), "info")
    return _back(business, "#greeting")


@bp.post("/businesses/<int:business_id>/greetings/deactivate")
@login_required
def deactivate_greeting(business_id: int) -> WerkzeugResponse:
    business = managed_business_or_404(business_id, me())
    business.greeting_file = None
    db().commit()
    flash(_("No MP3 is active: callers hear the greeting text."), "info")
    return _back(business, "#greeting")


@bp.post("/businesses/<int:business_id>/greeting-text")
@login_required
def greeting_text(business_id: int) -> WerkzeugResponse:
    business = managed_business_or_404(business_id, me())
    form = GreetingTextForm()
    if not form.validate_on_submit():
        return refuse("greeting-text-form", _("The greeting text is too long."), _page(business))
    business.greeting_text = " ".join((form.text.data or "").split()) or None
    db().commit()
    flash(_("Greeting text saved."), "success")
    return _back(business, "#greeting-text")


@bp.post("/businesses/<int:business_id>/numbers")
@login_required
def add_phone_number(business_id: int) -> WerkzeugResponse:
    business = managed_business_or_404(business_id, me())
    form = NumberForm()
    if not form.validate_on_submit():
        return _refused(business, "number-form", _("Enter a phone number."))
    try:
        number = add_number(db(), business, form.number.data or "")
    except InvalidPhoneNumber:
        db().rollback()
        return _refused(business, "number-form", _("That is not a valid phone number."))
    except BusinessError:
        # Never which business: an owner learns only that the number is taken.
        db().rollback()
        return _refused(
            business, "number-form", _("That number already belongs to another business.")
        )
    db().commit()
    flash(_("Number {number} added.", number=number.e164), "success")
    return _back(business, "#numbers")


def _refused(business: Business, form_id: str, message: str) -> WerkzeugResponse:
    """Back to the page, the error inside the form (or section) that caused it."""
    db().rollback()
    return refuse(form_id, message, url_for("businesses.show", business_id=business.id))


def _keeps_an_owner(business: Business) -> WerkzeugResponse:
    """The refusal of a team change that would leave the business without an owner."""
    message = _("A business keeps at least one owner: make someone else an owner first.")
    return _refused(business, "team", message)


@bp.post("/businesses/<int:business_id>/numbers/<int:number_id>/delete")
@login_required
def remove_phone_number(business_id: int, number_id: int) -> WerkzeugResponse:
    business = managed_business_or_404(business_id, me())
    ActionForm()
    e164 = remove_number(db(), business, number_id)
    if e164 is None:
        abort(404)
    db().commit()
    flash(_("Number {number} removed.", number=e164), "info")
    return _back(business, "#numbers")


@bp.post("/businesses/<int:business_id>/tags")
@login_required
def add_tag(business_id: int) -> WerkzeugResponse:
    business = managed_business_or_404(business_id, me())
    form = TagForm()
    name = " ".join((form.name.data or "").split())
    if not form.validate_on_submit() or not name:
        message = _("A tag needs a name of up to 64 characters.")
        return refuse("business-tag-form", message, _page(business))
    exists = db().scalar(
        select(Tag).where(Tag.business_id == business.id, func.lower(Tag.name) == name.lower())
    )
    if exists is None:
        db().add(Tag(business_id=business.id, name=name))
        db().commit()
    flash(_("Tag “{name}” added.", name=name), "success")
    return _back(business, "#tags")


@bp.post("/businesses/<int:business_id>/tags/<int:tag_id>/delete")
@login_required
def remove_tag(business_id: int, tag_id: int) -> WerkzeugResponse:
    business = managed_business_or_404(business_id, me())
    db().execute(delete(Tag).where(Tag.id == tag_id, Tag.business_id == business.id))
    db().commit()
    return _back(business, "#tags")


@bp.post("/businesses/<int:business_id>/members")
@login_required
def add_member(business_id: int) -> WerkzeugResponse | tuple[str, int]:
    """Give a person access (admins and owners); a new person gets a staff account and a
    password, shown once in this response (never in a flash or the session cookie)."""
    business = managed_business_or_404(business_id, me())
    form = MemberForm()
    if not form.validate_on_submit():
        return _refused(business, "member-form", _("Enter an e-mail address."))
    owner = form.role.data == MembershipRole.OWNER.value
    session = db()
    try:
        # No global role is given: a new person is staff, anyone else keeps theirs (an
        # owner can never make or unmake an admin). Only this business's membership.
        added = add_user(session, form.email.data or "", business=str(business.id), owner=owner)
        session.commit()
    except AccountError:
        return _refused(business, "member-form", _("That is not a valid e-mail address."))
    if not added.created:
        flash(_("{email} can now see this business.", email=added.email), "success")
        return _back(business, "#team")
    return _render(business, new_member=added), 201


@bp.post("/businesses/<int:business_id>/members/<int:user_id>/role")
@login_required
def member_role(business_id: int, user_id: int) -> WerkzeugResponse:
    """Owner ↔ member in this business (a demoted owner's next request has less access)."""
    business = managed_business_or_404(business_id, me())
    form = MemberRoleForm()
    if not form.validate_on_submit():
        abort(400)
    session = db()
    try:
        changed = set_membership_role(session, business.id, user_id, MembershipRole(form.role.data))
        session.commit()
    except LastOwner:
        return _keeps_an_owner(business)
    except AccountError:
        session.rollback()
        abort(404)  # not a member of this business
    if changed:
        flash(_("Role changed."), "success")
    return _back(business, "#team")


@bp.post("/businesses/<int:business_id>/members/<int:user_id>/remove")
@login_required
def remove_member(business_id: int, user_id: int) -> WerkzeugResponse:
    """Take this business away from the person: their next request no longer sees it."""
    business = managed_business_or_404(business_id, me())
    ActionForm()
    session = db()
    try:
        remove_membership(session, business.id, user_id)
        session.commit()
    except LastOwner:
        return _keeps_an_owner(business)
    except AccountError:
        session.rollback()
        abort(404)
    flash(_("Access removed."), "info")
    if user_id == me().id:
        return redirect(url_for("businesses.index"))
    return _back(business, "#team")
