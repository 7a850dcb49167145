"""Every Prometheus metric Moked exports, defined once.

The web services run under gunicorn with several worker processes, so prometheus-client
runs in multiprocess mode: PROMETHEUS_MULTIPROC_DIR is set (and emptied) by the launcher
before gunicorn starts, and `/metrics` aggregates the per-process files.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Webhooks: Twilio allows 15 s; the user allows 5 s; we aim for tens of milliseconds.
WEBHOOK_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)

WEBHOOK_DURATION = Histogram(
    "moked_webhook_request_duration_seconds",
    "Time to answer a Twilio webhook, by endpoint.",
    ["endpoint"],
    buckets=WEBHOOK_LATENCY_BUCKETS,
)
WEBHOOK_RESPONSES = Counter(
    "moked_webhook_responses_total",
    "Webhook answers by endpoint, HTTP status and content type.",
    ["endpoint", "status", "content_type"],
)
WEBHOOK_SIGNATURE_FAILURES = Counter(
    "moked_webhook_signature_failures_total",
    "Webhook requests refused because X-Twilio-Signature was missing or wrong.",
    ["endpoint"],
)
WEBHOOK_SLOW = Counter(
    "moked_webhook_slow_responses_total",
    "Webhook answers slower than WEBHOOK_SLOW_SECONDS.",
    ["endpoint"],
)
WEBHOOK_NON_TWIML = Counter(
    "moked_webhook_non_twiml_responses_total",
    "Answers on a TwiML endpoint that were not text/xml (Twilio error 12300).",
    ["endpoint"],
)
WEBHOOK_EVENTS_SPOOLED = Counter(
    "moked_webhook_events_spooled_total",
    "Webhook events kept on disk because Postgres was unreachable.",
    ["endpoint"],
)
WEBHOOK_EVENTS_REPLAYED = Counter(
    "moked_webhook_events_replayed_total",
    "Spooled or nginx-fallback events applied to Postgres later.",
    ["source"],
)
CALLS_RECEIVED = Counter(
    "moked_calls_received_total",
    "Incoming calls answered, by business (unassigned for unknown numbers).",
    ["business"],
)
TRANSCRIPTION_ENQUEUE_FAILURES = Counter(
    "moked_transcription_enqueue_failures_total",
    "Transcription jobs that could not be queued (Redis down); the reconciler retries.",
)
TWILIO_ERRORS = Counter(
    "moked_twilio_errors_total",
    "Errors and warnings Twilio reported through its Debugger webhook.",
    ["code", "level"],
)
NGINX_FALLBACK_ANSWERS = Counter(
    "moked_nginx_fallback_answers_total",
    "Webhooks nginx answered with static fallback TwiML while the app was down.",
    ["endpoint"],
)

# Transcription.
TRANSCRIPTION_JOBS = Counter(
    "moked_transcription_jobs_total",
    "Transcription jobs finished, by outcome (ready, empty, failed, retry, skipped).",
    ["outcome", "backend"],
)
TRANSCRIPTION_SECONDS = Histogram(
    "moked_transcription_duration_seconds",
    "Wall time spent transcribing one recording.",
    ["backend"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320),
)
TRANSCRIPTION_RTF = Histogram(
    "moked_transcription_real_time_factor",
    "Transcription time divided by audio duration.",
    ["backend"],
    buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0),
)
TRANSCRIPTION_LAG = Histogram(
    "moked_transcription_lag_seconds",
    "From Twilio reporting the recording completed to the transcript stored.",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
TRANSCRIPTION_QUEUE_DEPTH = Gauge(
    "moked_transcription_queue_depth",
    "Jobs waiting on the transcription queue.",
    multiprocess_mode="livemax",
)
TRANSCRIPTION_OLDEST_WAITING = Gauge(
    "moked_transcription_oldest_waiting_seconds",
    "Age of the oldest recording still waiting for its transcript.",
    multiprocess_mode="livemax",
)
TRANSCRIPTION_WORKERS = Gauge(
    "moked_transcription_workers",
    "Live transcription workers registered in Redis.",
    multiprocess_mode="livemax",
)
TRANSCRIPTION_MODEL_LOADS = Counter(
    "moked_transcription_model_loads_total",
    "Speech models loaded by transcriber processes (once per process, never per job).",
    ["backend", "model"],
)
TRANSCRIPTION_DOWNLOAD_SECONDS = Histogram(
    "moked_transcription_download_duration_seconds",
    "Time to fetch one recording from Twilio, 404 retries included.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40),
)
TWILIO_RECORDINGS_DELETED = Counter(
    "moked_twilio_recordings_deleted_total",
    "Recordings deleted from Twilio after the local copy was verified, by result.",
    ["result"],
)
RECONCILER_TWILIO_RECOVERED = Counter(
    "moked_reconciler_twilio_recovered_total",
    "Recordings found through Twilio's REST API whose status callback never arrived.",
)
RECONCILER_REQUEUED = Counter(
    "moked_reconciler_requeued_total",
    "Recordings the reconciler put back on the queue, by reason.",
    ["reason"],
)

# Notifications (moked.notify.dispatch): the notifier's jobs and the reconciler's sweep.
NOTIFICATIONS = Counter(
    "moked_notifications_total",
    "Attempts to send an alert, by channel and outcome (sent, retry, failed, held).",
    ["channel", "outcome"],
)
NOTIFICATION_LATENCY = Histogram(
    "moked_notification_latency_seconds",
    "From Twilio completing the recording (or the call ending, when missed) to the provider"
    " accepting the alert.",
    ["channel"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 1800, 3600),
)
NOTIFICATION_QUEUE_DEPTH = Gauge(
    "moked_notification_queue_depth",
    "Jobs waiting on the notifications queue.",
    multiprocess_mode="livemax",
)
NOTIFICATIONS_PENDING = Gauge(
    "moked_notifications_pending",
    "Deliveries not sent yet, by status (pending: being retried or about to go; held:"
    " waiting for the end of quiet hours).",
    ["status"],
    multiprocess_mode="livemax",
)

# Callbacks (moked.callbacks; the gauge from the reconciler, moked.callback_wait).
CALLBACKS = Counter(
    "moked_callbacks_total",
    "Callback attempts that ended, by outcome (reached, no_answer, busy, failed).",
    ["outcome"],
)
TIME_TO_CALLBACK = Histogram(
    "moked_time_to_callback_seconds",
    "From the end of a call to the first callback that reached the caller, by business id.",
    ["business"],
    buckets=(60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800),
)
CALLBACKS_OVERDUE = Gauge(
    "moked_callbacks_overdue",
    "Voicemails waiting for a callback longer than their business's limit, counted in"
    " business hours, by business id.",
    ["business"],
    multiprocess_mode="livemax",
)
CALLBACKS_WAITING_OLDEST = Gauge(
    "moked_callbacks_waiting_oldest_business_seconds",
    "Business-hours seconds the oldest voicemail still waiting for a callback has waited,"
    " by business id.",
    ["business"],
    multiprocess_mode="livemax",
)

# CRM.
CRM_LOGINS = Counter(
    "moked_crm_logins_total",
    "CRM sign-in attempts by outcome (success, failure, throttled).",
    ["outcome"],
)


def render() -> tuple[bytes, str]:
    """The exposition for this process tree (all gunicorn workers in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Called from gunicorn's child_exit so a dead worker's live gauges disappear."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
