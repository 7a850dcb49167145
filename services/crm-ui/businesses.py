"""Per business: greetings (upload, preview, make active), greeting text, numbers, tags.

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

from crm_ui.access import business_or_404, login_required, me, visible_businesses
from crm_ui.db import app_settings, db
from crm_ui.forms import (
    ActionForm,
    GreetingTextForm,
    GreetingUploadForm,
    MemberForm,
    NumberForm,
    TagForm,
)
from crm_ui.i18n import gettext as _
from moked.accounts import AccountError, add_user
from moked.businesses import BusinessError, add_number
from moked.db.models import Business, Call, Membership, PhoneNumber, Tag, User
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


def _back(business: Business, anchor: str = "") -> WerkzeugResponse:
    return redirect(url_for("businesses.show", business_id=business.id) + anchor)


def _require_admin() -> None:
    if not me().is_admin:
        abort(403)


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


def _render(business: Business, **extra: object) -> str:
    members = list(
        db().scalars(
            select(User)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.business_id == business.id)
            .order_by(User.email)
        )
    )
    owners = set(
        db().scalars(
            select(Membership.user_id).where(
                Membership.business_id == business.id, Membership.role == MembershipRole.OWNER
            )
        )
    )
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
        owners=owners,
        tags=tags,
        max_mb=MAX_GREETING_BYTES // (1024 * 1024),
        max_seconds=int(MAX_GREETING_SECONDS),
        default_text=app_settings().default_greeting_text,
        member_form=MemberForm(),
        **{"new_member": None, **extra},
    )


@bp.post("/businesses/<int:business_id>/greetings")
@login_required
def upload_greeting(business_id: int) -> WerkzeugResponse:
    business = business_or_404(business_id, me())
    form = GreetingUploadForm()
    if not form.validate_on_submit():
        flash(_("Choose an MP3 file to upload."), "error")
        return _back(business, "#greeting")
    upload = form.file.data
    data = upload.read(MAX_GREETING_BYTES + 1)
    if len(data) > MAX_GREETING_BYTES:
        limit_mb = MAX_GREETING_BYTES // (1024 * 1024)
        flash(_("The file is larger than {mb} MB.", mb=limit_mb), "error")
        return _back(business, "#greeting")
    settings = app_settings()
    try:
        info = inspect_mp3(data)
        name = store_greeting(settings.greetings_dir, business.id, data)
    except InvalidGreeting as exc:
        flash(_("This is not a usable MP3 greeting: {reason}", reason=_(str(exc))), "error")
        return _back(business, "#greeting")
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
    business = business_or_404(business_id, me())
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
    business = business_or_404(business_id, me())
    path = app_settings().greetings_dir / name
    own = is_safe_name(name) and name.startswith(f"business_{business.id}_")
    if not own or not path.exists():
        abort(404)
    if name == business.greeting_file:
        flash(_("The active greeting cannot be deleted; activate another one first."), "error")
        return _back(business, "#greeting")
    path.unlink()
    flash(_("Greeting version deleted."), "info")
    return _back(business, "#greeting")


@bp.post("/businesses/<int:business_id>/greetings/deactivate")
@login_required
def deactivate_greeting(business_id: int) -> WerkzeugResponse:
    business = business_or_404(business_id, me())
    business.greeting_file = None
    db().commit()
    flash(_("No MP3 is active: callers hear the greeting text."), "info")
    return _back(business, "#greeting")


@bp.post("/businesses/<int:business_id>/greeting-text")
@login_required
def greeting_text(business_id: int) -> WerkzeugResponse:
    business = business_or_404(business_id, me())
    form = GreetingTextForm()
    if form.validate_on_submit():
        business.greeting_text = " ".join((form.text.data or "").split()) or None
        db().commit()
        flash(_("Greeting text saved."), "success")
    else:
        flash(_("The greeting text is too long."), "error")
    return _back(business, "#greeting-text")


@bp.post("/businesses/<int:business_id>/numbers")
@login_required
def add_phone_number(business_id: int) -> WerkzeugResponse:
    _require_admin()
    business = business_or_404(business_id, me())
    form = NumberForm()
    if form.validate_on_submit():
        try:
            number = add_number(db(), business, form.number.data or "")
            db().commit()
            flash(_("Number {number} added.", number=number.e164), "success")
        except InvalidPhoneNumber:
            db().rollback()
            flash(_("That is not a valid phone number."), "error")
        except BusinessError:
            db().rollback()
            flash(_("That number already belongs to another business."), "error")
    else:
        flash(_("Enter a phone number."), "error")
    return _back(business, "#numbers")


@bp.post("/businesses/<int:business_id>/numbers/<int:number_id>/delete")
@login_required
def remove_phone_number(business_id: int, number_id: int) -> WerkzeugResponse:
    _require_admin()
    business = business_or_404(business_id, me())
    number = db().get(PhoneNumber, number_id)
    if number is None or number.business_id != business.id:
        abort(404)
    e164 = number.e164
    db().delete(number)
    db().commit()
    flash(_("Number {number} removed.", number=e164), "info")
    return _back(business, "#numbers")


@bp.post("/businesses/<int:business_id>/tags")
@login_required
def add_tag(business_id: int) -> WerkzeugResponse:
    business = business_or_404(business_id, me())
    form = TagForm()
    if form.validate_on_submit():
        name = " ".join((form.name.data or "").split())
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
    business = business_or_404(business_id, me())
    db().execute(delete(Tag).where(Tag.id == tag_id, Tag.business_id == business.id))
    db().commit()
    return _back(business, "#tags")


@bp.post("/businesses/<int:business_id>/members")
@login_required
def add_member(business_id: int) -> WerkzeugResponse | tuple[str, int]:
    """Admin: give a person access; a new person gets a staff account and a password,
    shown once in this response (never in a flash or the session cookie)."""
    _require_admin()
    business = business_or_404(business_id, me())
    form = MemberForm()
    if not form.validate_on_submit():
        flash(_("Enter an e-mail address."), "error")
        return _back(business, "#team")
    session = db()
    try:
        # The CLI's rule: no role given, so a new person is staff and an admin stays admin.
        added = add_user(session, form.email.data or "", business=str(business.id))
        session.commit()
    except AccountError:
        session.rollback()
        flash(_("That is not a valid e-mail address."), "error")
        return _back(business, "#team")
    if not added.created:
        flash(_("{email} can now see this business.", email=added.email), "success")
        return _back(business, "#team")
    return _render(business, new_member=added), 201


@bp.post("/businesses/<int:business_id>/members/<int:user_id>/remove")
@login_required
def remove_member(business_id: int, user_id: int) -> WerkzeugResponse:
    _require_admin()
    business = business_or_404(business_id, me())
    db().execute(
        delete(Membership).where(
            Membership.business_id == business.id, Membership.user_id == user_id
        )
    )
    db().commit()
    flash(_("Access removed."), "info")
    return _back(business, "#team")
