"""Sign in and out, the language switch, and login throttling.

Sessions: the cookie names the user and users.session_generation as it was at sign-in;
the loader refuses any other generation, so signing out (which bumps it) ends every
session of the user on the server, copies of the cookie included.

Throttling: moked.login_throttle (per client address and per account, growing delays,
counted atomically in Postgres); a refused attempt answers 429 with when to retry.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as session_cookie
from flask_login import LoginManager, current_user, login_user, logout_user
from werkzeug.wrappers import Response as WerkzeugResponse

from crm_ui.access import CurrentUser, login_required, me
from crm_ui.db import db
from crm_ui.feedback import form_error
from crm_ui.forms import ActionForm, LoginForm
from crm_ui.i18n import COOKIE, LANGUAGES
from crm_ui.i18n import gettext as _
from moked import login_throttle, metrics
from moked.accounts import authenticate, end_sessions
from moked.db.models import User

bp = Blueprint("auth", __name__)


def init_login(app: Flask, manager: LoginManager) -> None:
    manager.init_app(app)
    manager.login_view = "auth.login"
    manager.session_protection = "basic"

    @manager.user_loader  # type: ignore[untyped-decorator]
    def load_user(user_id: str) -> CurrentUser | None:
        raw_id, _, generation = user_id.partition(":")
        if not raw_id.isdigit() or not generation.isdigit():
            return None
        user = db().get(User, int(raw_id))
        if user is None or not user.is_active or user.session_generation != int(generation):
            return None
        return CurrentUser.from_model(user)

    @manager.unauthorized_handler  # type: ignore[untyped-decorator]
    def unauthorized() -> WerkzeugResponse | tuple[str, int]:
        if request.path.startswith("/recordings/") or request.path.endswith(".json"):
            return "Unauthorized", 401
        if request.headers.get("X-Requested-With") == "fetch":
            return "Unauthorized", 401
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _client_address() -> str:
    # nginx's $remote_addr (ProxyFix trusts exactly one X-Forwarded-For hop), so a
    # client cannot pick its own address by sending the header itself.
    return (request.remote_addr or "unknown")[:64]


def _wait_text(seconds: int) -> str:
    if seconds == 1:
        return _("1 second")
    if seconds < 60:
        return _("{n} seconds", n=seconds)
    return _("{n} minutes", n=(seconds + 59) // 60)


def safe_next(target: str | None) -> str:
    """Only a local path: never an open redirect."""
    if not target:
        return url_for("inbox.index")
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target  # browsers read "/\\evil.example" as "//evil.example"
        or any(ord(c) < 32 for c in target)
    ):
        return url_for("inbox.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> WerkzeugResponse | tuple[str, int, dict[str, str]]:
    if request.method == "GET" and current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    status = 200
    headers: dict[str, str] = {}
    if form.validate_on_submit():
        email = (form.email.data or "").strip().lower()
        session = db()
        attempt = login_throttle.begin(session, address=_client_address(), account=email)
        if not attempt.allowed:
            metrics.CRM_LOGINS.labels("throttled").inc()
            status = 429
            wait = attempt.retry_after()
            headers["Retry-After"] = str(wait)
            message = _("Too many failed attempts. Try again in {wait}.", wait=_wait_text(wait))
            form_error("login-form", message)
        else:
            user = authenticate(session, email, form.password.data or "")
            if user is None:
                # The attempt was booked as a failure before the check: nothing to add.
                metrics.CRM_LOGINS.labels("failure").inc()
                status = 401
                form_error("login-form", _("Wrong e-mail or password."))
            else:
                metrics.CRM_LOGINS.labels("success").inc()
                login_throttle.succeeded(session, attempt)
                user.last_login_at = dt.datetime.now(dt.UTC)
                session.commit()
                session_cookie.clear()  # a fresh session at sign-in (no fixation)
                session_cookie.permanent = True  # PERMANENT_SESSION_LIFETIME applies
                login_user(CurrentUser.from_model(user))
                return redirect(safe_next(form.next.data))
    elif request.method == "POST":
        status = 400
        form_error("login-form", _("Enter a valid e-mail address and password."))
    return render_template("login.html", form=form), status, headers


@bp.post("/logout")
@login_required
def logout() -> WerkzeugResponse:
    ActionForm()  # CSRF is checked globally; the form only documents the intent
    # Ends the session on the server: this cookie, and any copy of it, opens nothing now.
    end_sessions(db(), me().id)
    db().commit()
    logout_user()
    flash(_("You have signed out on every device."), "info")
    return redirect(url_for("auth.login"))


@bp.post("/language")
def language() -> WerkzeugResponse:
    lang = request.form.get("lang", "")
    target = safe_next(request.form.get("next"))
    response = redirect(target)
    if lang in LANGUAGES:
        response.set_cookie(
            COOKIE,
            lang,
            max_age=365 * 24 * 3600,
            samesite="Lax",
            httponly=True,
            secure=request.is_secure,
        )
        if current_user.is_authenticated:
            user = db().get(User, me().id)
            if user is not None:
                user.language = lang
                db().commit()
    return response
