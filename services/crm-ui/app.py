"""The CRM's Flask application: sessions, CSRF, security headers, blueprints."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, render_template, request, url_for
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from crm_ui import (
    account,
    api,
    auth,
    businesses,
    callbacks,
    callers,
    calls,
    db,
    feedback,
    i18n,
    inbox,
    notifications,
    present,
)
from moked import metrics, recordings
from moked.callers import caller_number
from moked.db.session import postgres_unavailable
from moked.settings import Settings, get_settings

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
"""Same as nginx's client_max_body_size; greetings are limited further (moked.greetings)."""

csrf = CSRFProtect()
login_manager = LoginManager()

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def _secret_key(settings: Settings) -> str:
    key = settings.secret_key.get_secret_value()
    if key:
        return key
    # Development without SECRET_KEY: a per-start key (the app is preloaded in gunicorn's
    # master, so every worker shares it); sessions end when the CRM restarts.
    log.warning("SECRET_KEY is not set; CRM sessions will not survive a restart")
    return secrets.token_hex(32)


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if request.endpoint != "static" and "Cache-Control" not in headers:
        headers["Cache-Control"] = "no-store"
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.endswith(".json")


def _error(exc: HTTPException) -> Response | tuple[Any, int]:
    code = exc.code or 500
    if _wants_json():
        return {"error": exc.name.lower().replace(" ", "_"), "message": exc.description}, code
    if request.path.startswith("/recordings/"):
        return Response(exc.name, status=code, content_type="text/plain; charset=utf-8")
    return render_template("error.html", code=code, error=exc), code


def _csrf_error(exc: CSRFError) -> tuple[str, int]:
    return render_template("error.html", code=400, error=exc, csrf=True), 400


UNAVAILABLE_PAGE = """<!doctype html>
<html lang="he" dir="rtl"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>המוקד אינו זמין כרגע</title></head>
<body><main><h1>המוקד אינו זמין כרגע</h1>
<p>נסו שוב בעוד דקה. השיחות ממשיכות להיקלט ולא הולכות לאיבוד.</p>
<p lang="en" dir="ltr">The CRM is briefly unavailable; calls are still being taken.</p>
</main></body></html>"""


def _unexpected(exc: Exception) -> Response | tuple[Any, int]:
    if isinstance(exc, HTTPException):
        return _error(exc)
    unavailable = postgres_unavailable(exc)  # a refused statement is a bug: 500, traceback
    code = 503 if unavailable else 500
    if unavailable:
        log.warning("database unavailable: %s", type(exc).__name__)
    else:
        log.exception("unhandled error in the CRM")
    if _wants_json():
        return {"error": "unavailable" if unavailable else "internal_error"}, code
    try:
        return render_template("error.html", code=code, error=None), code
    except Exception:  # the page itself needs the database (the signed-in user)
        return Response(UNAVAILABLE_PAGE, status=code, content_type="text/html; charset=utf-8")


@functools.cache
def _static_version(filename: str) -> str:
    """A short hash of a static file: its URL changes exactly when its content does."""
    return hashlib.sha256((HERE / "static" / filename).read_bytes()).hexdigest()[:12]


def static_url(filename: str) -> str:
    """The URL of a static file with its content's version, so browsers cache it for good
    and fetch it again after a release that changed it."""
    return url_for("static", filename=filename, v=_static_version(filename))


def create_app(settings: Settings | None = None, **config: Any) -> Flask:
    settings = settings or get_settings()
    app = Flask(
        __name__,
        template_folder=str(HERE / "templates"),
        static_folder=str(HERE / "static"),
        static_url_path="/static",
    )
    secure = settings.public_base.startswith("https://")
    app.config.update(
        MOKED_SETTINGS=settings,
        SECRET_KEY=_secret_key(settings),
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
        SESSION_COOKIE_NAME="moked_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=12 * 3600,
        WTF_CSRF_SSL_STRICT=secure,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    app.config.update(config)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    # nginx is the one proxy in front: trust its X-Forwarded-For/Proto once.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # no 308 to a URL built from the Host header

    db.init_app(app)
    csrf.init_app(app)
    auth.init_login(app, login_manager)
    i18n.init_app(app)
    feedback.init_app(app)  # a refused form's error shown inside the form
    app.jinja_env.filters.update(
        phone=present.phone,
        duration=present.duration,
        snippet=present.snippet,
        highlight=present.highlight,
        focused_snippet=present.focused_snippet,
    )
    app.jinja_env.globals.update(
        static_url=static_url,
        # A number staff can dial: E.164 and not withheld (Twilio's anonymous markers).
        dialable=caller_number,
        local_time=present.local_time,
        failure_reason=present.failure_reason,
        call_time=present.call_time,
        main_recording=present.main_recording,
        recording_pending=recordings.is_pending,
        recording_can_retry=recordings.can_retry,
        low_confidence_reasons=present.low_confidence_reasons,
        language_name=present.language_name,
        transcript_segments=present.transcript_segments,
        retry_languages=present.retry_languages,
        intent_label=present.intent_label,
        CALL_STATUS_LABELS=present.CALL_STATUS_LABELS,
        CALL_STATUS_TONE=present.CALL_STATUS_TONE,
        PROCESSING_LABELS=present.PROCESSING_LABELS,
        PROCESSING_TONE=present.PROCESSING_TONE,
    )

    app.register_blueprint(auth.bp)
    app.register_blueprint(inbox.bp)
    app.register_blueprint(calls.bp)
    app.register_blueprint(callbacks.bp)
    callers.init_app(app)  # its blueprint and the templates' caller helpers
    app.register_blueprint(businesses.bp)
    app.register_blueprint(notifications.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # bearer tokens, no cookies: CSRF cannot apply

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", content_type="text/plain; charset=utf-8")

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            with db.engine().connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return Response(f"not ready: postgres {type(exc).__name__}", status=503)
        return Response("ready", content_type="text/plain; charset=utf-8")

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.before_request
    def _start() -> None:
        g.settings = settings

    app.after_request(_security_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _error)
    app.register_error_handler(Exception, _unexpected)
    return app
