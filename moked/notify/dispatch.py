"""The notifications queue's jobs, and the sweep that keeps it honest.

- `plan_job(call_sid)`: the transcriber queues it when a transcript is final; it decides
  the call's alerts (moked.notify.planner) and queues each delivery.
- `deliver_job(delivery_id)`: one attempt at one delivery, sent while its row is locked
  and recorded before the commit (moked.notify.deliveries).
- `digest_job(rule_id)`: when a rule's quiet hours are over, what they held goes out as
  one message (webhooks: one request per call, as always).
- `sweep(settings, redis)`: the reconciler's step: plans calls that became due by waiting
  (the transcript is late, the call was missed), queues deliveries whose backoff is over
  or whose job was lost, and digests whose quiet hours ended.

RQ never retries these jobs: the delivery row holds the attempts and the next time, so a
lost job, a dead worker or a Redis restart cost at most one sweep interval.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
from collections.abc import Callable, Sequence

from redis import Redis
from redis.exceptions import RedisError
from rq.registry import StartedJobRegistry
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from moked import metrics
from moked.db.models import Call, NotificationDelivery, NotificationRule
from moked.db.session import settings_session
from moked.notify import alerts, deliveries, planner
from moked.notify.channels import DeliveryFailed, Envelope, Receipt
from moked.queue import enqueue_notification_job, notifications_queue
from moked.settings import Settings, get_settings
from moked.statuses import Channel, DeliveryStatus, Endpoint, NotificationOutcome

log = logging.getLogger(__name__)

PLAN_JOB = "moked.notify.dispatch.plan_job"
DELIVER_JOB = "moked.notify.dispatch.deliver_job"
DIGEST_JOB = "moked.notify.dispatch.digest_job"

Sender = Callable[[Settings, Envelope], Receipt]


CHANNEL_MODULES = {
    Channel.EMAIL: "moked.notify.channels.email",
    Channel.SMS: "moked.notify.channels.twilio_messages",
    Channel.WHATSAPP: "moked.notify.channels.twilio_messages",
    Channel.WEBHOOK: "moked.notify.channels.webhook",
}


def sender(channel: Channel) -> Sender:
    """The channel's `send`. Imported on first use: the reconciler and the transcriber
    queue notifications jobs but never send, so they do not load SMTP or Twilio clients."""
    send: Sender = importlib.import_module(CHANNEL_MODULES[channel]).send
    return send


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- queueing ----------------------------------------------------------------------------


def queue_plan(redis: Redis, call_sid: str) -> bool:
    return enqueue_notification_job(redis, PLAN_JOB, call_sid, f"plan-{call_sid}")


def queue_delivery(redis: Redis, delivery_id: int) -> bool:
    return enqueue_notification_job(redis, DELIVER_JOB, delivery_id, f"delivery-{delivery_id}")


def queue_digest(redis: Redis, rule_id: int) -> bool:
    return enqueue_notification_job(redis, DIGEST_JOB, rule_id, f"digest-{rule_id}")


def alert_soon(settings: Settings, redis: Redis, recording_sid: str) -> None:
    """The transcript is final: have the call's alerts decided now rather than at the next
    sweep. Never raises: the sweep does the same within RECONCILE_INTERVAL_SECONDS."""
    try:
        with settings_session(settings) as session:
            call_sid = planner.recording_call_sid(session, recording_sid)
        if call_sid is not None:
            queue_plan(redis, call_sid)
    except Exception as exc:
        log.warning("alert for %s left to the sweep: %s", recording_sid, exc)


# --- the jobs ----------------------------------------------------------------------------


def plan(
    settings: Settings, redis: Redis, call_sid: str, now: dt.datetime | None = None
) -> list[int]:
    """Decide the call's alerts (if due) and queue the deliveries to send now."""
    with settings_session(settings) as session:
        ids = planner.plan_call(session, settings, call_sid, now or utcnow())
    for delivery_id in ids:
        try:
            queue_delivery(redis, delivery_id)
        except RedisError as exc:
            log.warning("delivery %s left to the sweep: %s", delivery_id, exc)
    return ids


def _load_call(session: Session, call_id: int) -> Call:
    call = session.scalar(
        select(Call)
        .where(Call.id == call_id)
        .options(selectinload(Call.recordings), selectinload(Call.business))
    )
    if call is None:
        raise LookupError(f"call {call_id} is gone")
    return call


def _envelope(
    settings: Settings,
    delivery: NotificationDelivery,
    rule: NotificationRule | None,
    items: tuple[alerts.Alert, ...],
    call: Call,
    now: dt.datetime,
) -> Envelope:
    return Envelope(
        channel=delivery.channel,
        recipient=delivery.recipient,
        alerts=items,
        message_id=delivery.message_id,
        attempt=delivery.attempts,
        sent_at=now,
        secret=rule.secret if rule is not None else None,
        attach_audio=rule.attach_audio if rule is not None else True,
        sender=call.to_number,
        status_callback=settings.public_url(Endpoint.MESSAGE_STATUS.path),
    )


def _send(settings: Settings, envelope: Envelope) -> Receipt:
    try:
        return sender(envelope.channel)(settings, envelope)
    except DeliveryFailed:
        raise
    except Exception as exc:  # a bug or an odd answer: retried, and loud in the log
        log.exception("sending %s by %s failed", envelope.message_id, envelope.channel.value)
        raise DeliveryFailed(
            f"internal error: {type(exc).__name__}: {exc}", permanent=False
        ) from exc


def _record_sent(delivery: NotificationDelivery, receipt: Receipt, now: dt.datetime) -> None:
    # Held alerts are measured from the end of the quiet hours they were held for.
    trigger = delivery.held_until or delivery.trigger_at
    deliveries.sent(delivery, receipt.provider_id, now)
    channel = delivery.channel.value
    metrics.NOTIFICATIONS.labels(channel, NotificationOutcome.SENT.value).inc()
    if trigger is not None:
        metrics.NOTIFICATION_LATENCY.labels(channel).observe(
            max(0.0, (now - trigger).total_seconds())
        )


def _record_failure(
    settings: Settings, delivery: NotificationDelivery, failure: DeliveryFailed, now: dt.datetime
) -> DeliveryStatus:
    status = deliveries.failed_attempt(
        settings, delivery, failure.reason, permanent=failure.permanent, code=failure.code, now=now
    )
    outcome = (
        NotificationOutcome.FAILED if status is DeliveryStatus.FAILED else NotificationOutcome.RETRY
    )
    metrics.NOTIFICATIONS.labels(delivery.channel.value, outcome.value).inc()
    log.warning(
        "delivery %s (%s to %s) attempt %d: %s → %s",
        delivery.id,
        delivery.channel.value,
        delivery.recipient,
        delivery.attempts,
        failure.reason,
        status.value,
    )
    return status


def deliver(
    settings: Settings, delivery_id: int, now: dt.datetime | None = None, *, force: bool = False
) -> DeliveryStatus | None:
    """One attempt at a pending delivery whose time has come (`force`: whatever its
    backoff says). Returns its status after the attempt; None when there was nothing to
    do (sent, failed, held, not due, or another job is sending it now)."""
    now = now or utcnow()
    with settings_session(settings) as session:
        delivery = deliveries.lock_due(session, delivery_id)
        if delivery is None:
            return None
        if not force and delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            return None
        rule = delivery.rule
        if rule is None and delivery.channel is Channel.WEBHOOK:
            failure = DeliveryFailed(
                "the rule was removed (its signing secret with it)", permanent=True
            )
            return _record_failure(settings, delivery, failure, now)
        call = _load_call(session, delivery.call_id)
        alert = alerts.build(session, settings, call, delivery.kind)
        deliveries.begin_attempt(delivery)
        envelope = _envelope(settings, delivery, rule, (alert,), call, now)
        try:
            receipt = _send(settings, envelope)
        except DeliveryFailed as failure:
            return _record_failure(settings, delivery, failure, now)
        _record_sent(delivery, receipt, now)
        return DeliveryStatus.SENT


def release_digest(
    settings: Settings, redis: Redis | None, rule_id: int, now: dt.datetime | None = None
) -> int:
    """Send what the rule's quiet hours held: one message for email, SMS and WhatsApp;
    webhooks get each call as its own event. Returns how many deliveries were sent."""
    now = now or utcnow()
    with settings_session(settings) as session:
        held = list(deliveries.lock_held(session, rule_id, now))
        if not held:
            return 0
        rule = session.get(NotificationRule, rule_id)
        if rule is None:
            return 0
        if rule.channel is Channel.WEBHOOK or len(held) == 1:
            for delivery in held:
                deliveries.release(delivery)
            release = [d.id for d in held]
        else:
            release = []
    if release:
        for delivery_id in release:
            deliver(settings, delivery_id, now, force=True)
        return len(release)
    return _send_digest(settings, rule_id, now)


def _send_digest(settings: Settings, rule_id: int, now: dt.datetime) -> int:
    with settings_session(settings) as session:
        held = list(deliveries.lock_held(session, rule_id, now))
        rule = session.get(NotificationRule, rule_id)
        if not held or rule is None:
            return 0
        calls = [_load_call(session, d.call_id) for d in held]
        items = tuple(
            alerts.build(session, settings, c, d.kind) for c, d in zip(calls, held, strict=True)
        )
        for delivery in held:
            deliveries.begin_attempt(delivery)
        first = held[0]
        envelope = _envelope(settings, first, rule, items, calls[0], now)
        try:
            receipt = _send(settings, envelope)
        except DeliveryFailed as failure:
            for delivery in held:
                _record_failure(settings, delivery, failure, now)
            return 0
        for delivery in held:
            _record_sent(delivery, receipt, now)
        return len(held)


def initialise_metrics() -> None:
    """Every channel × outcome at 0 from the start, so an alert sees the first failure."""
    for channel in Channel:
        for outcome in NotificationOutcome:
            metrics.NOTIFICATIONS.labels(channel.value, outcome.value)


# --- RQ entry points (the notifier worker runs these) -------------------------------------


def _redis() -> Redis:
    from rq import get_current_job

    from moked.queue import redis_client

    job = get_current_job()
    return job.connection if job is not None else redis_client(get_settings().redis_url)


def plan_job(call_sid: str) -> dict[str, object]:
    ids = plan(get_settings(), _redis(), call_sid)
    return {"call_sid": call_sid, "deliveries": ids}


def deliver_job(delivery_id: int) -> dict[str, object]:
    status = deliver(get_settings(), int(delivery_id))
    return {"delivery_id": delivery_id, "status": status.value if status else None}


def digest_job(rule_id: int) -> dict[str, object]:
    sent = release_digest(get_settings(), _redis(), int(rule_id))
    return {"rule_id": rule_id, "sent": sent}


# --- the reconciler's step ----------------------------------------------------------------


def sweep(settings: Settings, redis: Redis, now: dt.datetime | None = None) -> int:
    """Queue whatever is due; returns how many jobs were queued."""
    now = now or utcnow()
    StartedJobRegistry(queue=notifications_queue(redis)).cleanup()
    queued = 0
    with settings_session(settings) as session:
        unplanned = planner.unplanned_calls(session, settings, now)
    for call_sid in unplanned:
        with settings_session(settings) as session:
            ids = planner.plan_call(session, settings, call_sid, now)
        queued += sum(queue_delivery(redis, delivery_id) for delivery_id in ids)
    with settings_session(settings) as session:
        due = _due_deliveries(session, now)
        held_rules = _rules_with_held_due(session, now)
        _measure(session)
    queued += sum(queue_delivery(redis, delivery_id) for delivery_id in due)
    queued += sum(queue_digest(redis, rule_id) for rule_id in held_rules)
    metrics.NOTIFICATION_QUEUE_DEPTH.set(notifications_queue(redis).count)
    return queued


def _due_deliveries(session: Session, now: dt.datetime) -> Sequence[int]:
    return session.scalars(
        select(NotificationDelivery.id).where(
            NotificationDelivery.status == DeliveryStatus.PENDING,
            or_(
                NotificationDelivery.next_attempt_at.is_(None),
                NotificationDelivery.next_attempt_at <= now,
            ),
        )
    ).all()


def _rules_with_held_due(session: Session, now: dt.datetime) -> Sequence[int]:
    return session.scalars(
        select(NotificationDelivery.rule_id)
        .where(
            NotificationDelivery.status == DeliveryStatus.HELD,
            NotificationDelivery.held_until <= now,
            NotificationDelivery.rule_id.is_not(None),
        )
        .distinct()
    ).all()  # type: ignore[return-value]


def _measure(session: Session) -> None:
    counts = dict(
        session.execute(
            select(NotificationDelivery.status, func.count())
            .where(NotificationDelivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.HELD)))
            .group_by(NotificationDelivery.status)
        ).all()
    )
    for status in (DeliveryStatus.PENDING, DeliveryStatus.HELD):
        metrics.NOTIFICATIONS_PENDING.labels(status.value).set(counts.get(status, 0))
