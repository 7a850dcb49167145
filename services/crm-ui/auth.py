"""Sign in and out, the language switch, and login throttling.

Throttling: failed attempts are kept in Postgres (shared by every gunicorn worker); after
MAX_FAILURES_PER_EMAIL failures for one address, or MAX_FAILURES_PER_IP from one client,
within THROTTLE_WINDOW, sign-in answers 429 until the window slides past them.
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
from sqlalchemy import ColumnElement, delete, func, select
from werkzeug.wrappers import Response as WerkzeugResponse

from crm_ui.access import CurrentUser, login_required, me, session_key
from crm_ui.db import db
from crm_ui.forms import ActionForm, LoginForm
from crm_ui.i18n import COOKIE, LANGUAGES
from crm_ui.i18n import gettext as _
from moked import metrics
from moked.accounts import authenticate
from moked.db.models import LoginAttempt, User

bp = Blueprint("auth", __name__)

THROTTLE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_IP = 30
KEEP_ATTEMPTS = dt.timedelta(days=1)


def init_login(app: Flask, manager: LoginManager) -> None:
    manager.init_app(app)
    manager.login_view = "auth.login"
    manager.session_protection = "basic"

    @manager.user_loader  # type: ignore[untyped-decorator]
    def load_user(user_id: str) -> CurrentUser | None:
        raw_id, _, key = user_id.partition(":")
        if not raw_id.isdigit():
            return None
        user = db().get(User, int(raw_id))
        if user is None or not user.is_active or session_key(user) != key:
            return None
        return CurrentUser.from_model(user)

    @manager.unauthorized_handler  # type: ignore[untyped-decorator]
    def unauthorized() -> WerkzeugResponse | tuple[str, int]:
        if request.path.startswith("/recordings/") or request.path.endswith(".json"):
            return "Unauthorized", 401
        if request.headers.get("X-Requested-With") == "fetch":
            return "Unauthorized", 401
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _client_ip() -> str:
    return (request.remote_addr or "unknown")[:64]


def _recent_failures(condition: ColumnElement[bool]) -> int:
    since = dt.datetime.now(dt.UTC) - THROTTLE_WINDOW
    query = (
        select(func.count())
        .select_from(LoginAttempt)
        .where(condition, LoginAttempt.attempted_at >= since)
    )
    return int(db().scalar(query) or 0)


def is_throttled(email: str, ip: str) -> bool:
    return (
        _recent_failures(LoginAttempt.email == email) >= MAX_FAILURES_PER_EMAIL
        or _recent_failures(LoginAttempt.ip == ip) >= MAX_FAILURES_PER_IP
    )


def _safe_next(target: str | None) -> str:
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
def login() -> WerkzeugResponse | tuple[str, int] | str:
    if request.method == "GET" and current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    status = 200
    if form.validate_on_submit():
        email = (form.email.data or "").strip().lower()
        ip = _client_ip()
        session = db()
        if is_throttled(email, ip):
            metrics.CRM_LOGINS.labels("throttled").inc()
            status = 429
            flash(_("Too many failed attempts. Try again in a few minutes."), "error")
        else:
            user = authenticate(session, email, form.password.data or "")
            if user is None:
                metrics.CRM_LOGINS.labels("failure").inc()
                session.add(LoginAttempt(email=email, ip=ip))
                # Keep the table small: nothing older than a day is ever counted.
                expired = dt.datetime.now(dt.UTC) - KEEP_ATTEMPTS
                session.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at < expired))
                session.commit()
                status = 401
                flash(_("Wrong e-mail or password."), "error")
            else:
                metrics.CRM_LOGINS.labels("success").inc()
                session.execute(delete(LoginAttempt).where(LoginAttempt.email == email))
                user.last_login_at = dt.datetime.now(dt.UTC)
                session.commit()
                session_cookie.clear()  # a fresh session at sign-in (no fixation)
                session_cookie.permanent = True  # PERMANENT_SESSION_LIFETIME applies
                login_user(CurrentUser.from_model(user))
                return redirect(_safe_next(form.next.data))
    elif request.method == "POST":
        status = 400
    return render_template("login.html", form=form), status


@bp.post("/logout")
@login_required
def logout() -> WerkzeugResponse:
    ActionForm()  # CSRF is checked globally; the form only documents the intent
    logout_user()
    flash(_("You have signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.post("/language")
def language() -> WerkzeugResponse:
    lang = request.form.get("lang", "")
    target = _safe_next(request.form.get("next"))
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
