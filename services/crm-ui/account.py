"""The signed-in user's own account: password and personal API tokens."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response as WerkzeugResponse

from crm_ui.access import CurrentUser, login_required, me, visible_businesses
from crm_ui.auth import safe_next
from crm_ui.db import db
from crm_ui.feedback import form_error
from crm_ui.forms import ActionForm, PasswordForm, TokenForm
from crm_ui.i18n import gettext as _
from moked.accounts import (
    MIN_PASSWORD_LENGTH,
    AccountError,
    create_token,
    end_sessions,
    hash_password,
)
from moked.db.models import ApiToken, User

bp = Blueprint("account", __name__)


def _page(status: int = 200, **extra: object) -> tuple[str, int]:
    user = me()
    tokens = list(
        db().scalars(
            select(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.created_at.desc())
        )
    )
    context: dict[str, object] = {
        "password_form": PasswordForm(),
        "token_form": TokenForm(),
        "tokens": tokens,
        "businesses": visible_businesses(user),
        "min_length": MIN_PASSWORD_LENGTH,
        "new_token": None,
        "my_phone": db().scalar(select(User.phone).where(User.id == user.id)),
    }
    context.update(extra)
    return render_template("account.html", **context), status


@bp.get("/account")
@login_required
def show() -> tuple[str, int]:
    return _page()


@bp.post("/account/password")
@login_required
def change_password() -> WerkzeugResponse | tuple[str, int]:
    form = PasswordForm()
    user = db().get(User, me().id)
    if user is None:
        abort(404)
    if not form.validate_on_submit():
        form_error("password-form", _("Fill in every field."))
        return _page(400)
    if not check_password_hash(user.password_hash, form.current.data or ""):
        form_error("password-form", _("The current password is wrong."))
        return _page(400)
    if form.new.data != form.confirm.data:
        form_error("password-form", _("The new passwords do not match."))
        return _page(400)
    try:
        user.password_hash = hash_password(form.new.data or "")
    except AccountError:
        message = _("A password needs at least {n} characters.", n=MIN_PASSWORD_LENGTH)
        form_error("password-form", message)
        return _page(400)
    db().commit()
    # The new hash bumped the session generation (User's validator): every session ends;
    # this one goes on with the new generation.
    login_user(CurrentUser.from_model(user))
    flash(_("Password changed. Other sessions were signed out."), "success")
    return redirect(url_for("account.show"))


@bp.post("/account/tokens")
@login_required
def new_token() -> tuple[str, int]:
    form = TokenForm()
    if not form.validate_on_submit():
        form_error("token-form", _("The label is too long."))
        return _page(400)
    token = create_token(db(), me().email, label=(form.label.data or "").strip() or None)
    db().commit()
    # Shown once, in this response only (never in the session cookie or a flash).
    return _page(201, new_token=token)


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> WerkzeugResponse:
    token = db().get(ApiToken, token_id)
    if token is None or token.user_id != me().id:
        abort(404)
    token.revoked_at = dt.datetime.now(dt.UTC)
    db().commit()
    flash(_("Token revoked."), "info")
    return redirect(url_for("account.show"))


@bp.post("/users/<int:user_id>/signout")
@login_required
def sign_out_everywhere(user_id: int) -> WerkzeugResponse:
    """Admin: end every session of a user (a lost phone, someone who left)."""
    ActionForm()  # CSRF is checked globally
    if not me().is_admin:
        abort(403)
    user = db().get(User, user_id) if user_id < 2**31 else None  # users.id is an integer
    if user is None:
        abort(404)
    end_sessions(db(), user.id)
    db().commit()
    if user.id == me().id:
        logout_user()
        return redirect(url_for("auth.login"))
    flash(_("{email} was signed out on every device.", email=user.email), "success")
    return redirect(safe_next(request.form.get("next")))
