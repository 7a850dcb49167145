"""The service Twilio talks to. Every answer is TwiML (text/xml) or text/plain, fast.

Nothing slow happens here: the event is logged and folded into Postgres in one short
transaction (or spooled to disk when Postgres is down), transcription is queued, and the
answer goes back. Unknown failures still answer valid TwiML: a caller is never dropped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from moked import callbacks, callers, metrics
from moked.answers import CallAnswer, LastKnownAnswers, answer_for, default_answer, playable
from moked.db.models import Business
from moked.db.session import (
    autocommit_connection,
    engine_for,
    postgres_unavailable,
    session_scope,
)
from moked.intake import Effects, InboundEvent, RawParams, apply_event, apply_new_call, log_event
from moked.queue import enqueue_transcription, redis_client
from moked.settings import Settings, get_settings
from moked.spool import Spool
from moked.statuses import CALLBACK_OUTCOMES, Endpoint
from moked.twilio import debugger, signature, twiml

log = logging.getLogger(__name__)

TEXT_PLAIN = "text/plain; charset=utf-8"
bp = Blueprint("webhooks", __name__)


def _settings() -> Settings:
    settings: Settings = current_app.config["MOKED_SETTINGS"]
    return settings


def _redis() -> Redis:
    client: Redis = current_app.config["MOKED_REDIS"]
    return client


def _engine() -> Engine:
    """The engine of the settings the app was created with (`create_app(settings)`)."""
    return engine_for(_settings().database_url)


def _last_known() -> LastKnownAnswers:
    answers: LastKnownAnswers = current_app.config["MOKED_LAST_KNOWN_ANSWERS"]
    return answers


def _xml(body: str) -> Response:
    return Response(body, status=200, content_type=twiml.TWIML_CONTENT_TYPE)


def _plain(body: str, status: int = 200) -> Response:
    return Response(body, status=status, content_type=TEXT_PLAIN)


def _raw_params() -> RawParams:
    """The form as sent; a name sent twice keeps both values (Twilio signs both)."""
    params: RawParams = {}
    for key, values in request.form.lists():
        params[key] = values[0] if len(values) == 1 else list(values)
    return params


def _raw_path() -> str:
    """The path exactly as sent (gunicorn's RAW_URI), percent-escapes intact."""
    raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
    return raw_uri.split("?", 1)[0] or request.path


def _signature_ok() -> bool:
    settings = _settings()
    raw_query = request.query_string.decode("latin-1")
    url = signature.signed_url(settings.public_base, _raw_path(), raw_query)
    return signature.is_valid(
        settings.twilio_auth_token.get_secret_value(),
        url,
        request.form,
        request.headers.get(signature.SIGNATURE_HEADER),
    )


def _apply(event: InboundEvent) -> tuple[Effects, CallAnswer | None]:
    settings = _settings()
    if event.endpoint is Endpoint.INCOMING_CALL:
        # Most calls are new: one statement stores them and finds the business.
        with autocommit_connection(settings.database_url) as connection:
            new_call = apply_new_call(connection, event)
        if new_call is not None:
            return new_call.effects, answer_for(settings, new_call.business)
    with session_scope(_engine()) as session:
        effects = apply_event(session, event)
        answer = None
        if event.endpoint is Endpoint.INCOMING_CALL:
            business = session.get(Business, effects.business_id) if effects.business_id else None
            answer = answer_for(settings, business)
    return effects, answer


def _keep_for_replay(event: InboundEvent, exc: Exception) -> None:
    """Postgres did not take the event: keep it in the spool, the reconciler applies it."""
    if postgres_unavailable(exc):
        log.warning("postgres unavailable (%s); spooling %s", type(exc).__name__, event.event_id)
    else:  # a bug or an event Postgres refuses: the replay sets it aside if it refuses again
        log.error("could not apply %s; spooling it for replay", event.event_id, exc_info=exc)
    try:
        Spool(_settings().spool_dir).put(event)
        metrics.WEBHOOK_EVENTS_SPOOLED.labels(event.endpoint.value).inc()
    except OSError:
        log.exception("could not spool %s: %s", event.event_id, json.dumps(event.to_json()))


def _store(event: InboundEvent) -> tuple[Effects | None, CallAnswer | None]:
    """Apply the event; on a database failure keep it in the spool. Never raises."""
    try:
        return _apply(event)
    except Exception as exc:
        _keep_for_replay(event, exc)
        return None, None


def _enqueue(recording_sid: str) -> None:
    try:
        enqueue_transcription(_redis(), recording_sid)
    except RedisError as exc:
        # The recording row says "awaiting transcription"; the reconciler queues it later.
        metrics.TRANSCRIPTION_ENQUEUE_FAILURES.inc()
        log.warning("redis unavailable (%s); %s left to the reconciler", exc, recording_sid)


def _incoming_call(event: InboundEvent) -> Response:
    settings = _settings()
    to_number = event.flat.get("To", "")
    caller = callers.caller_number(event.flat.get("From"))
    effects, answer = _store(event)
    if caller is not None and effects is not None and effects.business_id is not None:
        _last_known().remember_blocked(to_number, caller, effects.blocked)
    if effects is not None and effects.blocked:
        # A blocked caller: stored as blocked, rejected (busy), never greeted, recorded or
        # alerted about; its business's greeting is neither remembered nor recalled here.
        metrics.CALLS_RECEIVED.labels(str(effects.business_id or "unassigned")).inc()
        return _xml(twiml.reject())
    if answer is not None:
        _last_known().remember(to_number, answer)
    elif _last_known().is_blocked(to_number, caller):
        return _xml(twiml.reject())  # Postgres is down; the caller was blocked when last known
    else:
        remembered = _last_known().recall(to_number)
        answer = playable(settings, remembered) if remembered else default_answer(settings)
    if effects is not None and effects.new_call:
        metrics.CALLS_RECEIVED.labels(str(effects.business_id or "unassigned")).inc()
    return _xml(twiml.incoming_call(answer.greeting, answer.record, settings.no_message_text))


def _handle_recording(event: InboundEvent) -> Response:
    _store(event)
    return _xml(twiml.thanks_and_hangup(_settings().thanks_text))


def _recording_status(event: InboundEvent) -> Response:
    effects, _ = _store(event)
    if effects is not None and effects.enqueue_recording_sid:
        _enqueue(effects.enqueue_recording_sid)
    return _plain("OK")


def _call_status(event: InboundEvent) -> Response:
    _store(event)
    return _plain("OK")


def _message_status(event: InboundEvent) -> Response:
    """Twilio Messaging's delivery report on an alert: recorded on the delivery."""
    _store(event)
    return _plain("OK")


def _callback_connect(event: InboundEvent) -> Response:
    """A callback's staff leg answered: dial the caller from the business's number. An
    unknown or finished attempt, or Postgres down, hangs up (the event is kept)."""
    effects, _ = _store(event)
    dialling = effects.dialling if effects is not None else None
    if dialling is None:
        return _xml(twiml.hangup())
    action = f"{Endpoint.CALLBACK_DIAL.path}?attempt={dialling.attempt_id}"
    return _xml(
        twiml.callback_dial(
            dialling.caller, dialling.caller_id, action, timeout=callbacks.RING_SECONDS
        )
    )


def _callback_dial(event: InboundEvent) -> Response:
    """The `<Dial>` to the caller ended: the staff leg is done."""
    _store(event)
    return _xml(twiml.hangup())


def _callback_status(event: InboundEvent) -> Response:
    _store(event)
    return _plain("OK")


def _log_alert(event: InboundEvent) -> bool:
    """Log a Debugger event; False when the same event (Twilio's Sid) was logged before."""
    try:
        with session_scope(_engine()) as session:
            return log_event(session, event)
    except Exception as exc:
        _keep_for_replay(event, exc)
        return True  # cannot tell a retry from a new event now: count it rather than miss it


def _twilio_alerts(event: InboundEvent) -> Response:
    """Twilio's Debugger webhook: log each event once and count its error code.

    Twilio retries a delivery it considers failed; keyed on the event's Sid, a retry is
    acknowledged without being counted again. Label values are bounded (digits, known levels).
    """
    alert = debugger.parse(event.flat)
    stable_id = debugger.event_id(alert)
    if stable_id is not None:
        event = dataclasses.replace(event, event_id=stable_id)
    if _log_alert(event):
        debugger.count(alert)
        log.warning(
            "Twilio reported %s %s on %s (Debugger event %s)",
            alert.level,
            alert.code,
            alert.resource_sid or "-",
            alert.sid or "-",
        )
    else:
        log.info("Debugger event %s delivered again; counted once", alert.sid)
    return _plain("OK")


HANDLERS = {
    Endpoint.INCOMING_CALL: _incoming_call,
    Endpoint.HANDLE_RECORDING: _handle_recording,
    Endpoint.RECORDING_STATUS: _recording_status,
    Endpoint.CALL_STATUS: _call_status,
    Endpoint.TWILIO_ALERTS: _twilio_alerts,
    Endpoint.MESSAGE_STATUS: _message_status,
    Endpoint.CALLBACK_CONNECT: _callback_connect,
    Endpoint.CALLBACK_DIAL: _callback_dial,
    Endpoint.CALLBACK_STATUS: _callback_status,
}


@bp.post("/webhook/<name>")
def webhook(name: str) -> Response:
    try:
        endpoint = Endpoint(name)
    except ValueError:
        return _plain("Not Found", 404)
    g.endpoint = endpoint
    if not _signature_ok():
        metrics.WEBHOOK_SIGNATURE_FAILURES.labels(endpoint.value).inc()
        return _plain("Forbidden: invalid X-Twilio-Signature", 403)
    # Keyed on what Twilio signed: an exact replay is applied (idempotently) but logged once.
    event = InboundEvent.signed(
        endpoint,
        callbacks.with_attempt(endpoint, _raw_params(), request.query_string.decode("latin-1")),
        request.headers.get(signature.SIGNATURE_HEADER, ""),
        received_at=dt.datetime.now(dt.UTC),
    )
    return HANDLERS[endpoint](event)


@bp.route("/webhook/ping", methods=["GET", "POST"])
def ping() -> Response:
    """Constant TwiML, no signature, no database: the baseline `make bench` compares with."""
    return _xml(twiml.empty())


@bp.get("/healthz")
def healthz() -> Response:
    return _plain("ok")


@bp.get("/readyz")
def readyz() -> Response:
    problems = []
    try:
        with _engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        problems.append(f"postgres: {type(exc).__name__}")
    try:
        _redis().ping()
    except RedisError as exc:
        problems.append(f"redis: {type(exc).__name__}")
    if problems:
        return _plain("not ready: " + "; ".join(problems), 503)
    return _plain("ready")


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


def _fallback_for(endpoint: Endpoint | None) -> Response:
    settings = _settings()
    if endpoint is Endpoint.INCOMING_CALL:
        answer = default_answer(settings)
        return _xml(twiml.incoming_call(answer.greeting, answer.record, settings.no_message_text))
    if endpoint is Endpoint.HANDLE_RECORDING:
        return _xml(twiml.thanks_and_hangup(settings.thanks_text))
    if endpoint in (Endpoint.CALLBACK_CONNECT, Endpoint.CALLBACK_DIAL):
        return _xml(twiml.hangup())
    return _plain("OK")


def _before() -> None:
    g.started = time.perf_counter()


def _after(response: Response) -> Response:
    endpoint: Endpoint | None = g.get("endpoint")
    if endpoint is None:
        return response
    elapsed = time.perf_counter() - g.started
    metrics.WEBHOOK_DURATION.labels(endpoint.value).observe(elapsed)
    metrics.WEBHOOK_RESPONSES.labels(
        endpoint.value, str(response.status_code), response.mimetype or "none"
    ).inc()
    if elapsed > _settings().webhook_slow_seconds:
        metrics.WEBHOOK_SLOW.labels(endpoint.value).inc()
    if endpoint.answers_twiml and response.status_code == 200 and response.mimetype != "text/xml":
        metrics.WEBHOOK_NON_TWIML.labels(endpoint.value).inc()
    return response


def _on_error(exc: Exception) -> Response:
    """Last resort: a bug must not become an 11200 for a caller."""
    if isinstance(exc, HTTPException):
        return _plain(exc.name, exc.code or 400)
    log.exception("unhandled error in webhook")
    endpoint = g.get("endpoint")
    if isinstance(endpoint, Endpoint):
        return _fallback_for(endpoint)
    return _plain("Internal error", 200 if request.path.startswith("/webhook/") else 500)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(
        MOKED_SETTINGS=settings,
        MOKED_REDIS=redis_client(settings.redis_url),
        MOKED_LAST_KNOWN_ANSWERS=LastKnownAnswers(settings.last_known_answers_dir),
        MAX_CONTENT_LENGTH=256 * 1024,
    )
    app.url_map.strict_slashes = False  # never a redirect for a trailing slash
    app.url_map.merge_slashes = False  # nor for a doubled slash: a 308 to the Host header
    app.register_blueprint(bp)
    app.before_request(_before)
    app.after_request(_after)
    app.register_error_handler(Exception, _on_error)
    _initialise_metrics()
    return app


def _initialise_metrics() -> None:
    """Create the series alerts watch at 0, so their first increase is visible to rate()."""
    debugger.initialise_metrics()
    for endpoint in Endpoint:
        metrics.WEBHOOK_DURATION.labels(endpoint.value)
        metrics.WEBHOOK_SIGNATURE_FAILURES.labels(endpoint.value)
        metrics.WEBHOOK_SLOW.labels(endpoint.value)
        metrics.WEBHOOK_EVENTS_SPOOLED.labels(endpoint.value)
        if endpoint.answers_twiml:
            metrics.WEBHOOK_NON_TWIML.labels(endpoint.value)
    for outcome in CALLBACK_OUTCOMES:  # callbacks end here, on Twilio's reports
        metrics.CALLBACKS.labels(outcome.value)
