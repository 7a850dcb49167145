"""A delivery's life: the one module that changes `NotificationDelivery.status`.

    (planned) ──▶ pending ──send ok──▶ sent ──Twilio: delivered/undelivered──▶ (provider_status)
        │           │  ▲ transient failure (backoff, up to NOTIFY_RETRY_HOURS)
        │           │  └────┘
        │           └─permanent failure / retry window over──▶ failed ──staff retry──▶ pending
        └─quiet hours──▶ held ──digest sent──▶ sent

Every change happens on a row the caller locked (`lock_due`, `lock_held`), inside the
caller's transaction. A job sends while it holds the row's lock and records the outcome
before it commits, so two jobs never send one delivery; the only window for a duplicate is
a crash after the provider accepted the message and before the commit (docs/notifications.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from moked.db.models import NotificationDelivery, NotificationRule
from moked.settings import Settings
from moked.statuses import AlertKind, DeliveryStatus

log = logging.getLogger(__name__)

D = DeliveryStatus
ERROR_LIMIT = 1000
MAX_BACKOFF = dt.timedelta(hours=1)

TWILIO_PROGRESS = ("accepted", "scheduled", "queued", "sending", "sent")
"""Twilio's message statuses before the handset's answer, in order."""
TWILIO_FINAL = ("delivered", "undelivered", "failed", "read", "canceled")
"""What Twilio reports last; `read` (WhatsApp) may follow `delivered`."""


class RetryRefused(ValueError):
    """Staff asked to send again what cannot be; the message says why."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_message_id() -> str:
    """Ours, fixed at planning: every attempt carries it (webhook-id, Message-ID)."""
    return f"msg_{uuid.uuid4().hex}"


def plan(
    session: Session,
    call_id: int,
    rule: NotificationRule,
    kind: AlertKind,
    *,
    trigger_at: dt.datetime | None,
    held_until: dt.datetime | None,
) -> int | None:
    """Create the delivery of `kind` about the call for the rule; the unique key makes a
    second plan of the same (call, channel, recipient) do nothing. Returns the new row's
    id, or None when it already existed."""
    values = {
        "call_id": call_id,
        "rule_id": rule.id,
        "channel": rule.channel.value,
        "recipient": rule.target,
        "kind": kind.value,
        "status": (D.HELD if held_until else D.PENDING).value,
        "message_id": new_message_id(),
        "attempts": 0,
        "held_until": held_until,
        "next_attempt_at": None,
        "trigger_at": trigger_at,
    }
    statement = (
        insert(NotificationDelivery)
        .values(**values)
        .on_conflict_do_nothing(constraint="uq_delivery_call_recipient")
        .returning(NotificationDelivery.id)
    )
    return session.scalar(statement)


def lock_due(session: Session, delivery_id: int) -> NotificationDelivery | None:
    """The delivery, locked, when it is pending; None when it is not, or when another job
    holds it (that job is sending it now)."""
    return session.scalar(
        select(NotificationDelivery)
        .where(NotificationDelivery.id == delivery_id, NotificationDelivery.status == D.PENDING)
        .with_for_update(skip_locked=True)
    )


def lock_held(session: Session, rule_id: int, now: dt.datetime) -> Sequence[NotificationDelivery]:
    """The rule's held deliveries whose quiet hours are over, locked, oldest first."""
    return session.scalars(
        select(NotificationDelivery)
        .where(
            NotificationDelivery.rule_id == rule_id,
            NotificationDelivery.status == D.HELD,
            NotificationDelivery.held_until <= now,
        )
        .order_by(NotificationDelivery.created_at, NotificationDelivery.id)
        .with_for_update(skip_locked=True)
    ).all()


def release(delivery: NotificationDelivery) -> None:
    """Quiet hours are over for a delivery sent on its own (not in a digest): pending."""
    if delivery.status is D.HELD:
        delivery.status = D.PENDING
        delivery.next_attempt_at = None
        # held_until stays until it is sent: the latency metric starts there, not at the
        # call (the hours the rule asked to wait are not delay).


def begin_attempt(delivery: NotificationDelivery) -> int:
    """Count an attempt; returns its number (1 for the first)."""
    delivery.attempts = (delivery.attempts or 0) + 1
    return delivery.attempts


def sent(delivery: NotificationDelivery, provider_id: str | None, now: dt.datetime) -> None:
    if delivery.status not in (D.PENDING, D.HELD):
        raise ValueError(f"delivery {delivery.id} is {delivery.status.value}, not sendable")
    delivery.status = D.SENT
    delivery.provider_id = (provider_id or "")[:200] or None
    delivery.sent_at = now
    delivery.last_error = None
    delivery.next_attempt_at = None
    delivery.held_until = None


def backoff(settings: Settings, attempts: int) -> dt.timedelta:
    """30 s, 1 min, 2 min … doubling, at most an hour (NOTIFY_RETRY_BASE_SECONDS)."""
    seconds = settings.notify_retry_base_seconds * 2 ** max(0, attempts - 1)
    return min(dt.timedelta(seconds=seconds), MAX_BACKOFF)


def failed_attempt(
    settings: Settings,
    delivery: NotificationDelivery,
    reason: str,
    *,
    permanent: bool,
    code: str | None,
    now: dt.datetime,
) -> DeliveryStatus:
    """Record a failed attempt: `failed` when permanent or past the retry window, else it
    stays pending (held: stays held) with the next attempt after a backoff."""
    delivery.last_error = reason[:ERROR_LIMIT]
    delivery.provider_error_code = code
    window_over = now - _first_due(delivery) >= dt.timedelta(hours=settings.notify_retry_hours)
    if permanent or window_over:
        if window_over and not permanent:
            delivery.last_error = f"gave up after {settings.notify_retry_hours:g} h: {reason}"[
                :ERROR_LIMIT
            ]
        delivery.status = D.FAILED
        delivery.next_attempt_at = None
        return D.FAILED
    next_at = now + backoff(settings, delivery.attempts)
    if delivery.status is D.HELD:
        delivery.held_until = next_at
    else:
        delivery.next_attempt_at = next_at
    return delivery.status


def _first_due(delivery: NotificationDelivery) -> dt.datetime:
    created = delivery.created_at or utcnow()
    return created if created.tzinfo else created.replace(tzinfo=dt.UTC)


def cancel_unsent(session: Session, rule_id: int, reason: str) -> int:
    """The rule is being removed: what it has not sent yet (pending, held) is not sent to
    someone who was taken off the list. Returns how many were cancelled (failed)."""
    unsent = session.scalars(
        select(NotificationDelivery)
        .where(
            NotificationDelivery.rule_id == rule_id,
            NotificationDelivery.status.in_((D.PENDING, D.HELD)),
        )
        .with_for_update()
    ).all()
    for delivery in unsent:
        delivery.status = D.FAILED
        delivery.last_error = reason
        delivery.next_attempt_at = None
        delivery.held_until = None
    return len(unsent)


def retry(session: Session, delivery_id: int) -> NotificationDelivery:
    """Staff send a failed delivery again: pending at once, with a fresh retry window.
    Raises RetryRefused."""
    delivery = session.scalar(
        select(NotificationDelivery).where(NotificationDelivery.id == delivery_id).with_for_update()
    )
    if delivery is None:
        raise RetryRefused(f"no notification {delivery_id}")
    if delivery.status is not D.FAILED:
        raise RetryRefused(
            f"notification {delivery_id} is {delivery.status.value};"
            " only failed ones are sent again"
        )
    delivery.status = D.PENDING
    delivery.next_attempt_at = None
    delivery.created_at = utcnow()  # the retry window starts again
    return delivery


def provider_reported(
    session: Session, provider_id: str, status: str, error_code: str | None
) -> bool:
    """Twilio's message status callback: record what the handset said on the delivery
    whose provider id it is. Never moves backwards (a late `sent` after `delivered` is
    ignored), so duplicates and callbacks out of order are harmless. False when no
    delivery has that id or nothing changed."""
    status = (status or "").strip().lower()
    if not provider_id or not status:
        return False
    delivery = session.scalar(
        select(NotificationDelivery)
        .where(NotificationDelivery.provider_id == provider_id)
        .with_for_update()
    )
    if delivery is None:
        return False
    if _rank(status) <= _rank(delivery.provider_status):
        return False
    delivery.provider_status = status[:32]
    if error_code:
        delivery.provider_error_code = error_code[:16]
    return True


def _rank(status: str | None) -> int:
    if not status:
        return -1
    if status in TWILIO_PROGRESS:
        return TWILIO_PROGRESS.index(status)
    if status == "read":
        return len(TWILIO_PROGRESS) + 1
    if status in TWILIO_FINAL:
        return len(TWILIO_PROGRESS)
    return -1
