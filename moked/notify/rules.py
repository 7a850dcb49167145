"""Notification rules: who hears about a business's calls, how and when.

The command line (`moked notify`) and the CRM's notifications page both go through
here, so a rule is validated the same way wherever it is made.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from moked.db.models import Business, NotificationRule
from moked.notify import deliveries, quiet_hours
from moked.notify.channels import webhook
from moked.phone import InvalidPhoneNumber, to_e164
from moked.settings import Settings
from moked.statuses import Channel, NotifyWhen

EMAIL = re.compile(
    r"^[^@\s<>\"'(),;:\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
MAX_RULES_PER_BUSINESS = 50


class RuleError(ValueError):
    """A rule cannot be made as asked; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class NewRule:
    channel: Channel
    target: str
    when: NotifyWhen = NotifyWhen.MESSAGE
    secret: str | None = None
    quiet_hours: str | None = None
    """"22:00-07:00" in the business's zone; None or "" = none."""
    hold_in_quiet_hours: bool | None = None
    """None: the channel's default (SMS/WhatsApp held, email/webhook not)."""
    attach_audio: bool = True


def normalise_target(settings: Settings, channel: Channel, target: str) -> str:
    """The recipient as stored: a lower-cased email domain, E.164, a checked URL."""
    value = (target or "").strip()
    if not value:
        raise RuleError(f"a {channel.value} rule needs a recipient")
    if channel is Channel.EMAIL:
        if len(value) > 254 or not EMAIL.match(value):
            raise RuleError(f"not an email address: {value[:80]!r}")
        local, domain = value.rsplit("@", 1)
        return f"{local}@{domain.lower()}"
    if channel in (Channel.SMS, Channel.WHATSAPP):
        try:
            return to_e164(value.removeprefix("whatsapp:"))
        except InvalidPhoneNumber as exc:
            raise RuleError(f"not a phone number: {value[:40]!r} ({exc})") from None
    try:
        return webhook.check_url(settings, value)
    except ValueError as exc:
        raise RuleError(f"webhook URL refused: {exc}") from None


def add(session: Session, settings: Settings, business: Business, new: NewRule) -> NotificationRule:
    """Validate and add a rule (flushed, not committed). Raises RuleError."""
    target = normalise_target(settings, new.channel, new.target)
    secret = None
    if new.channel is Channel.WEBHOOK:
        if not new.secret:
            raise RuleError("a webhook rule needs --secret whsec_… (Standard Webhooks)")
        try:
            secret = webhook.check_secret(new.secret.strip())
        except ValueError as exc:
            raise RuleError(f"webhook secret refused: {exc}") from None
    elif new.secret:
        raise RuleError("only webhook rules take a secret")
    start = end = None
    if new.quiet_hours:
        try:
            start, end = quiet_hours.parse(new.quiet_hours)
        except ValueError as exc:
            raise RuleError(str(exc)) from None
    existing = rules_of(session, business.id)
    if len(existing) >= MAX_RULES_PER_BUSINESS:
        raise RuleError(f"a business has at most {MAX_RULES_PER_BUSINESS} rules")
    for rule in existing:
        if rule.channel is new.channel and rule.target == target:
            raise RuleError(f"{business.name} already notifies {target} by {new.channel.value}")
    hold = new.hold_in_quiet_hours
    rule = NotificationRule(
        business_id=business.id,
        channel=new.channel,
        target=target,
        secret=secret,
        when=new.when,
        quiet_start=start,
        quiet_end=end,
        hold_in_quiet_hours=new.channel.held_in_quiet_hours_by_default if hold is None else hold,
        attach_audio=new.attach_audio,
        enabled=True,
    )
    session.add(rule)
    session.flush()
    return rule


def rules_of(session: Session, business_id: int) -> Sequence[NotificationRule]:
    return session.scalars(
        select(NotificationRule)
        .where(NotificationRule.business_id == business_id)
        .order_by(NotificationRule.id)
    ).all()


def find(session: Session, business_id: int, rule_id: int) -> NotificationRule | None:
    """The business's rule (None for another business's: rules never cross tenants)."""
    rule = session.get(NotificationRule, rule_id)
    return rule if rule is not None and rule.business_id == business_id else None


def remove(session: Session, business_id: int, rule_id: int) -> bool:
    """Delete the rule; its past deliveries stay with their calls, and what it has not sent
    yet is cancelled. False when unknown."""
    rule = find(session, business_id, rule_id)
    if rule is None:
        return False
    deliveries.cancel_unsent(session, rule.id, "the rule was removed before it was sent")
    session.delete(rule)
    return True


def masked_secret(secret: str | None) -> str:
    return f"{secret[:10]}…" if secret else ""


def to_dict(rule: NotificationRule) -> dict[str, Any]:
    """One rule as the CLI prints it (the secret masked)."""
    return {
        "id": rule.id,
        "business_id": rule.business_id,
        "channel": rule.channel.value,
        "to": rule.target,
        "when": rule.when.value,
        "quiet_hours": quiet_hours.describe(rule.quiet_start, rule.quiet_end) or None,
        "hold_in_quiet_hours": rule.hold_in_quiet_hours,
        "attach_audio": rule.attach_audio,
        "enabled": rule.enabled,
        "secret": masked_secret(rule.secret) or None,
    }
