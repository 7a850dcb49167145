"""SMS and WhatsApp alerts through Twilio's Messaging API (the official client).

An SMS is cut to NOTIFY_SMS_SEGMENTS segments (moked.twilio.segments counts them as phones
do): the transcript goes first, then the time and the repeat note, then the first line;
the link to the call is always kept. A WhatsApp message may be up to 1600 characters.

Twilio reports the handset's answer later, to `envelope.status_callback`
(/webhook/message_status); `moked.notify.deliveries.provider_reported` records it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from twilio.base.exceptions import TwilioException, TwilioRestException

from moked.notify import alerts
from moked.notify.alerts import Alert
from moked.notify.channels import DeliveryFailed, Envelope, Receipt
from moked.settings import ConfigurationError, Settings
from moked.statuses import Channel
from moked.twilio import rest, segments

log = logging.getLogger(__name__)

WHATSAPP_PREFIX = "whatsapp:"
DIGEST_TIME_FORMAT = "%d/%m %H:%M"
WORD_BOUNDARY_LOOKBACK = 15
"""A cut transcript ends at a word boundary when there is one this close to the cut."""

_GSM_FRIENDLY = str.maketrans(
    {
        "·": "-",
        "…": "...",
        "‘": "'",
        "’": "'",
        "“": '"',
        "”": '"',
        "„": '"',
        "–": "-",
        "—": "-",
        "\u00a0": " ",
    }
)
"""Typographic marks with a GSM-7 look-alike. An English alert uses them (the subject's
"·") and so would be sent as UCS-2, in less than half the characters per segment; as
Twilio's smart encoding does, they are replaced when that makes the whole text GSM-7."""

PERMANENT_CODES: dict[int, str] = {
    21211: "the 'To' number is not a valid phone number",
    21212: "the 'From' number is not a valid phone number",
    21408: "sending to this region is not enabled on the Twilio account",
    21606: "the 'From' number cannot send messages",
    21610: "the recipient has unsubscribed (replied STOP)",
    21612: "Twilio cannot route messages from this 'From' to this 'To'",
    21614: "the 'To' number is not a mobile number",
    21617: "the message body is too long",
    63003: "the WhatsApp recipient is not a valid WhatsApp user",
    63007: "the WhatsApp sender is not configured on the Twilio account",
    63016: "outside WhatsApp's 24-hour window a pre-approved template is required",
}
"""Codes whose retry cannot help, with what to tell staff (any other 4xx is permanent too)."""


# --- the text ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Draft:
    """A message's pieces, in the order they are given up when it is too long."""

    head: str
    """The first line: cut last."""
    extras: tuple[str, ...]
    """Time, repeat note, a digest's call lines: dropped from the end, after the cut."""
    cuttable: str
    """The transcript: cut first, with an ellipsis."""
    link: str
    """The call's page: always kept."""

    def render(self) -> str:
        return "\n".join(p for p in (self.head, *self.extras, self.cuttable, self.link) if p)

    def translate(self, table: dict[int, str]) -> _Draft:
        return _Draft(
            head=self.head.translate(table),
            extras=tuple(e.translate(table) for e in self.extras),
            cuttable=self.cuttable.translate(table),
            link=self.link,
        )


def _cut(text: str, keep: int, ellipsis: str) -> str:
    if keep <= 0:
        return ""
    if keep >= len(text):
        return text
    kept = text[:keep]
    space = kept.rfind(" ", max(0, keep - WORD_BOUNDARY_LOOKBACK))
    if space > 0:
        kept = kept[:space]
    return kept.rstrip() + ellipsis


def _longest(text: str, fits: Callable[[str], bool], ellipsis: str) -> str | None:
    """The longest cut of `text` that `fits` accepts (binary search), or None: not even ""."""
    if fits(text):
        return text
    low, high = 0, len(text) - 1  # keep `low` characters: fits; `high` + 1: does not
    if not fits(_cut(text, 0, ellipsis)):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(_cut(text, middle, ellipsis)):
            low = middle
        else:
            high = middle - 1
    return _cut(text, low, ellipsis)


def _fit(draft: _Draft, fits: Callable[[str], bool], ellipsis: str) -> str:
    if fits(draft.render()):
        return draft.render()
    transcript = _longest(
        draft.cuttable, lambda t: fits(replace(draft, cuttable=t).render()), ellipsis
    )
    if transcript is not None:
        return replace(draft, cuttable=transcript).render()
    draft = replace(draft, cuttable="")
    while draft.extras:
        draft = replace(draft, extras=draft.extras[:-1])
        if fits(draft.render()):
            return draft.render()
    head = _longest(draft.head, lambda h: fits(replace(draft, head=h).render()), ellipsis)
    return replace(draft, head=head or "").render()


def _single(alert: Alert) -> _Draft:
    extras = [alerts.local_time(alert)]
    note = alerts.repeat_note(alert)
    if note:
        extras.append(note)
    return _Draft(
        head=alerts.subject(alert),
        extras=tuple(e for e in extras if e),
        cuttable=alerts.transcript_line(alert),
        link=alert.call_url,
    )


def _digest_lines(items: Sequence[Alert]) -> list[str]:
    return [f"{alerts.caller(a)}, {alerts.local_time(a, DIGEST_TIME_FORMAT)}" for a in items]


def _fit_digest(
    items: Sequence[Alert], fits: Callable[[str], bool], ellipsis: str, table: dict[int, str]
) -> str:
    lines = _digest_lines(items)
    draft = _Draft(alerts.digest_title(items), tuple(lines), "", items[0].call_url)
    draft = draft.translate(table)
    for shown in range(len(lines), 0, -1):
        hidden = len(lines) - shown
        candidate = replace(
            draft, extras=draft.extras[:shown] + ((f"(+{hidden})",) if hidden else ())
        )
        if fits(candidate.render()):
            return candidate.render()
    return _fit(replace(draft, extras=()), fits, ellipsis)


def _sms_fits(settings: Settings) -> Callable[[str], bool]:
    return lambda text: segments.fits(text, settings.notify_sms_segments)


def _whatsapp_fits(text: str) -> bool:
    return segments.length(text, segments.Encoding.UCS2) <= segments.WHATSAPP_MAX_CHARACTERS


def body(settings: Settings, envelope: Envelope) -> str:
    """The message text: an SMS within NOTIFY_SMS_SEGMENTS segments, a WhatsApp message
    within 1600 characters."""
    items = envelope.alerts
    if not items:
        raise ValueError(f"{envelope.message_id} carries no alert")
    whatsapp = envelope.channel is Channel.WHATSAPP
    fits = _whatsapp_fits if whatsapp else _sms_fits(settings)
    table: dict[int, str] = {}
    if not whatsapp:
        # GSM-7 only if the whole message can be (the uncut text decides, once).
        whole = (
            "\n".join([alerts.digest_title(items), *_digest_lines(items)])
            if envelope.is_digest
            else _single(items[0]).render()
        )
        if segments.is_gsm(whole.translate(_GSM_FRIENDLY)):
            table = _GSM_FRIENDLY
    ellipsis = "..." if table else "…"
    if envelope.is_digest:
        return _fit_digest(items, fits, ellipsis, table)
    return _fit(_single(items[0]).translate(table), fits, ellipsis)


# --- sending -------------------------------------------------------------------------------


def _address(channel: Channel, number: str) -> str:
    number = number.strip().removeprefix(WHATSAPP_PREFIX)
    return WHATSAPP_PREFIX + number if channel is Channel.WHATSAPP else number


def _sender(settings: Settings, envelope: Envelope) -> str:
    if envelope.channel is Channel.WHATSAPP and settings.twilio_whatsapp_from:
        return settings.twilio_whatsapp_from
    if not envelope.sender:
        raise DeliveryFailed(
            "no sender number: the call's business has no Twilio number to send from",
            permanent=True,
        )
    return envelope.sender


def failure(exc: TwilioRestException) -> DeliveryFailed:
    """What Twilio's refusal means for the delivery: retried (429, 5xx) or failed."""
    code = int(exc.code) if isinstance(exc.code, int) else None
    label = f"Twilio {code}" if code is not None else f"Twilio HTTP {exc.status}"
    detail = (exc.msg or "").strip()
    if exc.status == 429 or exc.status >= 500:
        return DeliveryFailed(
            f"{label}: Twilio is busy or failing, will retry" + (f" ({detail})" if detail else ""),
            permanent=False,
            code=str(code) if code is not None else str(exc.status),
        )
    meaning = PERMANENT_CODES.get(code or 0)
    reason = f"{label}: {meaning}" if meaning else f"{label}: {detail or 'refused'}"
    if meaning and detail:
        reason += f" ({detail})"
    return DeliveryFailed(
        reason, permanent=True, code=str(code) if code is not None else str(exc.status)
    )


def send(settings: Settings, envelope: Envelope) -> Receipt:
    """One SMS or WhatsApp message; Receipt.provider_id is Twilio's MessageSid."""
    if envelope.channel not in (Channel.SMS, Channel.WHATSAPP):
        raise ValueError(f"{envelope.channel.value} is not a Twilio Messaging channel")
    to = _address(envelope.channel, envelope.recipient)
    from_ = _address(envelope.channel, _sender(settings, envelope))
    text = body(settings, envelope)
    routed = rest.messaging_settings(settings)
    try:
        client = rest.make_client(routed)
    except ConfigurationError as exc:
        raise DeliveryFailed(str(exc), permanent=True) from exc
    extra: dict[str, str] = {}
    if envelope.status_callback:
        extra["status_callback"] = envelope.status_callback
    try:
        message = client.messages.create(to=to, from_=from_, body=text, **extra)
    except TwilioRestException as exc:
        raise failure(exc) from exc
    except TwilioException as exc:  # no HTTP status: the answer could not be read
        raise DeliveryFailed(f"Twilio's answer was unusable: {exc}", permanent=False) from exc
    except OSError as exc:  # requests' connection errors and timeouts
        raise DeliveryFailed(f"Twilio's API is unreachable: {exc}", permanent=False) from exc
    sid = str(message.sid or "")
    log.info(
        "%s %s sent to Twilio as %s (%d characters)",
        envelope.channel.value,
        envelope.message_id,
        sid or "?",
        len(text),
    )
    return Receipt(provider_id=sid or None)
