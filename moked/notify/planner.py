"""When a call's alerts are due, and the deliveries that follows from them (decided once).

A call is due
- as a voicemail (`message_ready`) when its recording's transcript is final (ready, empty
  or failed), or NOTIFY_TRANSCRIPT_WAIT_SECONDS after Twilio completed the recording
  without one, whichever comes first: a slow transcriber never silences an alert;
- as `missed` when the call ended with no recording, NOTIFY_MISSED_GRACE_SECONDS after its
  end (Twilio's recording callback may arrive after the call's).

Planning locks the call, creates one delivery per matching rule (held when inside the
rule's quiet hours) and stamps `alerts_planned_at`, so a transcript that arrives after
the wait, a retried job, a duplicate callback or the reconciler never alert twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from moked import metrics
from moked.db.models import Call, NotificationRule, Recording
from moked.notify import deliveries, quiet_hours
from moked.settings import Settings
from moked.statuses import AlertKind, NotificationOutcome, ProcessingStatus, RecordingStatus

log = logging.getLogger(__name__)

HAS_MESSAGE = (RecordingStatus.COMPLETED, RecordingStatus.FAILED)
"""Twilio recorded something (a failed recording still means the caller spoke)."""
PLAN_BATCH = 200


@dataclass(frozen=True, slots=True)
class Due:
    kind: AlertKind
    trigger_at: dt.datetime | None
    """When what the alert reports happened: the latency the metrics measure starts here."""


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def due(call: Call, settings: Settings, now: dt.datetime) -> Due | None:
    """What the call's alert is, if it is due now; None while it is not (yet)."""
    wait = dt.timedelta(seconds=settings.notify_transcript_wait_seconds)
    recorded = [r for r in call.recordings if r.twilio_status in HAS_MESSAGE]
    if recorded:
        recording = recorded[-1]
        completed = _aware(recording.completed_at) or _aware(recording.created_at)
        if recording.processing_status.is_final:
            return Due(AlertKind.MESSAGE_READY, completed)
        if completed is not None and completed + wait <= now:
            return Due(AlertKind.MESSAGE_READY, completed)
        return None
    ended = _aware(call.ended_at)
    if not call.status.is_terminal or ended is None:
        return None
    if any(r.processing_status is ProcessingStatus.AWAITING_MEDIA for r in call.recordings):
        # Twilio announced a recording and has not said how it ended: wait for it, but not
        # forever (twilio_sync asks Twilio; an alert without transcript beats none).
        return Due(AlertKind.MESSAGE_READY, ended) if ended + wait <= now else None
    grace = dt.timedelta(seconds=settings.notify_missed_grace_seconds)
    return Due(AlertKind.MISSED, ended) if ended + grace <= now else None


def _lock_call(session: Session, call_sid: str) -> Call | None:
    return session.scalar(
        select(Call)
        .where(Call.call_sid == call_sid)
        .options(selectinload(Call.recordings), selectinload(Call.business))
        .with_for_update(of=Call)
    )


def plan_call(session: Session, settings: Settings, call_sid: str, now: dt.datetime) -> list[int]:
    """Decide the call's alerts if they are due: returns the ids of new deliveries to send
    now (held ones wait for their digest). Does nothing when already decided or not due."""
    call = _lock_call(session, call_sid)
    if call is None or call.alerts_planned_at is not None:
        return []
    at = _aware(call.started_at) or _aware(call.created_at) or now
    if call.business is None or at < now - dt.timedelta(hours=settings.notify_lookback_hours):
        call.alerts_planned_at = now  # nobody to tell, or too old to page anyone about
        return []
    if call.blocked:
        call.alerts_planned_at = now  # a blocked caller's call alerts nobody (moked.callers)
        return []
    decided = due(call, settings, now)
    if decided is None:
        return []
    call.alerts_planned_at = now
    created = _aware(call.created_at) or now
    to_send: list[int] = []
    for rule in _rules(session, call.business.id):
        # A rule covers the calls that come after it: adding one does not page anyone about
        # the last day's calls.
        if not rule.when.wants(decided.kind) or (_aware(rule.created_at) or now) > created:
            continue
        held_until = None
        if rule.hold_in_quiet_hours:
            held_until = quiet_hours.ends_at(
                now, rule.quiet_start, rule.quiet_end, call.business.timezone
            )
        delivery_id = deliveries.plan(
            session,
            call.id,
            rule,
            decided.kind,
            trigger_at=decided.trigger_at,
            held_until=held_until,
        )
        if delivery_id is None:
            continue
        if held_until is None:
            to_send.append(delivery_id)
        else:
            metrics.NOTIFICATIONS.labels(rule.channel.value, NotificationOutcome.HELD.value).inc()
    log.info("%s: %s, %d deliveries to send", call_sid, decided.kind.value, len(to_send))
    return to_send


def _rules(session: Session, business_id: int) -> Sequence[NotificationRule]:
    return session.scalars(
        select(NotificationRule)
        .where(NotificationRule.business_id == business_id, NotificationRule.enabled.is_(True))
        .order_by(NotificationRule.id)
    ).all()


def unplanned_calls(session: Session, settings: Settings, now: dt.datetime) -> list[str]:
    """Calls whose alerts are undecided, of businesses with rules, within the lookback."""
    since = now - dt.timedelta(hours=settings.notify_lookback_hours)
    with_rules = select(NotificationRule.business_id).where(NotificationRule.enabled.is_(True))
    return list(
        session.scalars(
            select(Call.call_sid)
            .where(
                Call.alerts_planned_at.is_(None),
                Call.created_at > since,
                Call.business_id.in_(with_rules),
            )
            .order_by(Call.created_at)
            .limit(PLAN_BATCH)
        )
    )


def recording_call_sid(session: Session, recording_sid: str) -> str | None:
    return session.scalar(
        select(Call.call_sid)
        .join(Recording, Recording.call_id == Call.id)
        .where(Recording.recording_sid == recording_sid)
    )
