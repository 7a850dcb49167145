"""The ways an alert leaves Moked. Each channel module has one function,
`send(settings, envelope) -> Receipt`, and raises `DeliveryFailed` saying whether trying
again can help. Channels never touch the database: `moked.notify.dispatch` records what
they return."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from moked.notify.alerts import Alert
from moked.statuses import Channel


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to one recipient: a single alert, or a digest of several."""

    channel: Channel
    recipient: str
    """Email address, E.164 number, or webhook URL."""
    alerts: tuple[Alert, ...]
    """One alert; more than one is a quiet-hours digest (email, SMS, WhatsApp only)."""
    message_id: str
    """The same on every attempt: webhook-id, email Message-ID."""
    attempt: int
    """1 for the first attempt."""
    sent_at: dt.datetime
    """Now, as the attempt sees it (webhook-timestamp; tests control it)."""
    secret: str | None = None
    """Webhook: the rule's `whsec_…` secret."""
    attach_audio: bool = True
    """Email: attach the recording when it is within NOTIFY_ATTACHMENT_MAX_BYTES."""
    sender: str | None = None
    """SMS/WhatsApp: the business's own Twilio number (E.164), unless overridden."""
    status_callback: str | None = None
    """SMS/WhatsApp: the signed /webhook/message_status URL Twilio reports delivery to."""

    @property
    def is_digest(self) -> bool:
        return len(self.alerts) > 1


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the provider said when it accepted the message."""

    provider_id: str | None
    """Twilio's MessageSid, the SMTP server's queue id (or our Message-ID), the receiver's
    status line for a webhook."""


class DeliveryFailed(Exception):
    """The provider did not take the message. `permanent`: trying again cannot help (an
    address the SMTP server refuses, Twilio 21211/21610, a webhook's 4xx other than
    408/429); otherwise the delivery is retried with backoff."""

    def __init__(self, reason: str, *, permanent: bool, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.code = code
