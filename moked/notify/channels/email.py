"""Email alerts over SMTP: a Hebrew-first HTML message with a plain-text twin, the
recording attached when it is small enough, sent to SMTP_URL.

SMTP_URL is `smtp://host:port` (plain: the development sink), `smtp+starttls://user:pass@
host:587` or `smtps://user:pass@host:465`. The message is sent with MAIL, RCPT and DATA one
by one, so each refusal is classified by the command it answered: a recipient or a
message the server refuses (5xx) is permanent; a 4xx, a dropped connection or a server
that cannot be reached is transient and retried.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import html
import re
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from moked.notify import alerts
from moked.notify.alerts import Alert
from moked.notify.channels import DeliveryFailed, Envelope, Receipt
from moked.settings import Settings

TIMEOUT_SECONDS = 15.0
MESSAGE_ID_DOMAIN = "moked"
_QUEUE_ID = re.compile(r"(?:queued as|\bid=)\s*<?([A-Za-z0-9][A-Za-z0-9._@-]*)>?", re.IGNORECASE)


# --- SMTP_URL ------------------------------------------------------------------------------


class SmtpSecurity(StrEnum):
    PLAIN = "smtp"
    STARTTLS = "smtp+starttls"
    SSL = "smtps"


DEFAULT_PORTS = {SmtpSecurity.PLAIN: 25, SmtpSecurity.STARTTLS: 587, SmtpSecurity.SSL: 465}


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    security: SmtpSecurity
    host: str
    port: int
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never the password, even in a traceback's locals
        return (
            f"SmtpTarget({self.security.value}://{self.host}:{self.port}, user={self.username!r})"
        )


def parse_smtp_url(url: str) -> SmtpTarget:
    """SMTP_URL as a target; ValueError names what is wrong (never the password)."""
    parts = urlsplit(url)
    try:
        security = SmtpSecurity(parts.scheme.lower())
    except ValueError:
        raise ValueError(
            f"SMTP_URL must start with smtp://, smtp+starttls:// or smtps://, got {parts.scheme!r}"
        ) from None
    try:
        port = parts.port or DEFAULT_PORTS[security]
    except ValueError:
        raise ValueError("SMTP_URL has an invalid port") from None
    if not parts.hostname:
        raise ValueError("SMTP_URL names no host")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return SmtpTarget(security, parts.hostname, port, username, password)


# --- the message ---------------------------------------------------------------------------


def _one_line(value: str) -> str:
    """A header value: a business name with a line break must not end the header."""
    return " ".join(value.split())


def _address(value: str) -> str:
    """The bare address of `Name <addr>` or `addr` (for MAIL FROM / RCPT TO)."""
    return parseaddr(value)[1] or value.strip()


def attachment_name(alert: Alert) -> str:
    """call-20261201-0930-972501234567.mp3: when and from whom, ASCII only."""
    when = alerts.local_time(alert, "%Y%m%d-%H%M") or "unknown"
    who = re.sub(r"\D", "", alert.from_number or "") or "withheld"
    return f"call-{when}-{who}.mp3"


def _attachment(settings: Settings, envelope: Envelope) -> tuple[bytes, str] | None:
    """The recording's bytes and file name, if this email should carry them."""
    if envelope.is_digest or not envelope.attach_audio:
        return None
    alert = envelope.alerts[0]
    path = alert.recording_path
    if path is None or alert.recording_bytes is None:
        return None
    if alert.recording_bytes > settings.notify_attachment_max_bytes:
        return None
    try:
        data = path.read_bytes()
    except OSError:  # deleted since the alert was built: the link is still there
        return None
    if len(data) > settings.notify_attachment_max_bytes:
        return None
    return data, attachment_name(alert)


def _plain_single(alert: Alert) -> str:
    lines = [alerts.title(alert), alert.business_name, "", *alerts.details(alert)]
    lines += ["", alerts.transcript_line(alert), "", f"{alerts.text(alert, 'open')}: "]
    lines[-1] += alert.call_url
    return "\n".join(lines) + "\n"


def _plain_digest(items: tuple[Alert, ...]) -> str:
    lines = [alerts.digest_title(items), ""]
    for number, alert in enumerate(items, start=1):
        lines += [
            f"{number}. {alerts.title(alert)}: {alerts.caller(alert)}, {alerts.local_time(alert)}",
            f"   {alerts.transcript_line(alert)}",
            f"   {alerts.text(alert, 'open')}: {alert.call_url}",
            "",
        ]
    return "\n".join(lines)


def _e(value: str) -> str:
    return html.escape(value, quote=True)


def _link(alert: Alert) -> str:
    return (
        f'<a href="{_e(alert.call_url)}" style="display:inline-block;padding:8px 16px;'
        'background:#1a56db;color:#ffffff;text-decoration:none;border-radius:4px">'
        f"{_e(alerts.text(alert, 'open'))}</a>"
    )


def _transcript_html(alert: Alert) -> str:
    # dir="auto": an English voicemail to a Hebrew business still reads left to right.
    return (
        '<blockquote dir="auto" style="margin:12px 0;padding:8px 12px;'
        'border-inline-start:4px solid #cccccc;background:#f6f6f6">'
        f"{_e(alerts.transcript_line(alert))}</blockquote>"
    )


def _html_page(lead: Alert, heading: str, body: list[str]) -> str:
    direction, lang = ("rtl", "he") if lead.is_hebrew else ("ltr", "en")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html dir="{direction}" lang="{lang}">',
            '<head><meta charset="utf-8">',
            f"<title>{_e(heading)}</title></head>",
            f'<body dir="{direction}" style="font-family:Arial,Helvetica,sans-serif;'
            'font-size:15px;line-height:1.5;color:#111111">',
            f'<h2 style="margin:0 0 4px">{_e(heading)}</h2>',
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def _html_single(alert: Alert) -> str:
    body = [f'<p style="margin:0 0 12px;color:#555555">{_e(alert.business_name)}</p>']
    body += [f'<p style="margin:0">{_e(line)}</p>' for line in alerts.details(alert)]
    body += [_transcript_html(alert), f"<p>{_link(alert)}</p>"]
    return _html_page(alert, alerts.title(alert), body)


def _html_digest(items: tuple[Alert, ...]) -> str:
    body = ['<ol style="padding-inline-start:20px">']
    for alert in items:
        body += [
            '<li style="margin-bottom:16px">',
            f"<strong>{_e(alerts.title(alert))}: {_e(alerts.caller(alert))}</strong>"
            f" · {_e(alerts.local_time(alert))}",
            _transcript_html(alert),
            _link(alert),
            "</li>",
        ]
    body.append("</ol>")
    return _html_page(items[0], alerts.digest_title(items), body)


def compose(settings: Settings, envelope: Envelope) -> EmailMessage:
    """The email for one alert or a digest of several. ValueError: an unusable address."""
    if not envelope.alerts:
        raise ValueError("an email needs at least one alert")
    items = envelope.alerts
    message = EmailMessage(policy=email.policy.SMTP)
    if envelope.is_digest:
        heading = alerts.digest_title(items)
        plain, rich = _plain_digest(items), _html_digest(items)
    else:
        heading = alerts.subject(items[0])
        plain, rich = _plain_single(items[0]), _html_single(items[0])
    message["From"] = settings.mail_from
    message["To"] = envelope.recipient
    message["Subject"] = _one_line(heading)
    message["Date"] = format_datetime(_aware(envelope.sent_at))
    message["Message-ID"] = f"<{envelope.message_id}@{MESSAGE_ID_DOMAIN}>"
    # base64: Hebrew text stays 7-bit on the wire whatever the server supports.
    message.set_content(plain, subtype="plain", charset="utf-8", cte="base64")
    message.add_alternative(rich, subtype="html", charset="utf-8", cte="base64")
    attachment = _attachment(settings, envelope)
    if attachment is not None:
        data, filename = attachment
        message.add_attachment(data, maintype="audio", subtype="mpeg", filename=filename)
    # After the parts: set_content drops every Content-* header set before it.
    message["Content-Language"] = "he" if items[0].is_hebrew else "en"
    return message


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


# --- sending -------------------------------------------------------------------------------


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _failed(what: str, code: int, text: bytes | str, *, refusal_is_final: bool) -> DeliveryFailed:
    """A refusal: 5xx to a recipient or a message is final; 4xx (busy, greylisting) not."""
    permanent = refusal_is_final and 500 <= code < 600
    return DeliveryFailed(f"{what}: {_reply(code, text)}", permanent=permanent, code=str(code))


@contextmanager
def _session(target: SmtpTarget) -> Iterator[smtplib.SMTP]:
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if target.security is SmtpSecurity.SSL:
        smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=TIMEOUT_SECONDS, context=context)
    else:
        smtp = smtplib.SMTP(target.host, target.port, timeout=TIMEOUT_SECONDS)
    try:
        smtp.ehlo_or_helo_if_needed()
        if target.security is SmtpSecurity.STARTTLS:
            smtp.starttls(context=context)
            smtp.ehlo()
        if target.username is not None:
            smtp.login(target.username, target.password or "")
        yield smtp
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()  # the message (if any) was already accepted; only the goodbye failed


def queue_id(reply: bytes | str) -> str | None:
    """The server's id for an accepted message ("250 2.0.0 Ok: queued as 4Xy7"), if it says."""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    match = _QUEUE_ID.search(reply)
    return match.group(1) if match else None


def send(settings: Settings, envelope: Envelope) -> Receipt:
    """Hand the email to SMTP_URL's server; its queue id (or our Message-ID) is the receipt."""
    try:
        target = parse_smtp_url(settings.smtp_url)
    except ValueError as exc:  # configuration: fixing it lets the retries through
        raise DeliveryFailed(str(exc), permanent=False) from None
    try:
        message = compose(settings, envelope)
        data = message.as_bytes(policy=email.policy.SMTP)
    except (ValueError, UnicodeError) as exc:
        raise DeliveryFailed(
            f"cannot write an email to {envelope.recipient!r}: {exc}", permanent=True
        ) from None
    sender, recipient = _address(settings.mail_from), _address(envelope.recipient)
    if not recipient.isascii() or "@" not in recipient:
        # An internationalized mailbox needs SMTPUTF8 end to end; rules take ASCII ones.
        raise DeliveryFailed(f"not a deliverable address: {recipient!r}", permanent=True)
    accepted: tuple[int, bytes] | None = None
    try:
        with _session(target) as smtp:
            code, text = smtp.mail(sender)
            if code != 250:
                # Our own sender refused: configuration (MAIL_FROM), so retried meanwhile.
                raise _failed(
                    f"the mail server refused the sender {sender}",
                    code,
                    text,
                    refusal_is_final=False,
                )
            code, text = smtp.rcpt(recipient)
            if code not in (250, 251):
                raise _failed(
                    f"the mail server refused {recipient}", code, text, refusal_is_final=True
                )
            try:
                accepted = smtp.data(data)
            except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354)
                raise _failed(
                    "the mail server refused the message",
                    exc.smtp_code,
                    exc.smtp_error,
                    refusal_is_final=True,
                ) from None
            code, text = accepted
            if code != 250:
                accepted = None
                raise _failed(
                    "the mail server refused the message", code, text, refusal_is_final=True
                )
    except DeliveryFailed:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise _failed(
            f"the mail server refused the login of {target.username}",
            exc.smtp_code,
            exc.smtp_error,
            refusal_is_final=False,
        ) from None
    except smtplib.SMTPResponseException as exc:  # HELO, STARTTLS, …: never the recipient's fault
        raise _failed(
            f"SMTP {target.host}:{target.port}",
            exc.smtp_code,
            exc.smtp_error,
            refusal_is_final=False,
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        if accepted is not None:  # accepted, then the connection dropped: it was sent
            return Receipt(provider_id=queue_id(accepted[1]) or str(message["Message-ID"]))
        detail = str(exc) or type(exc).__name__
        raise DeliveryFailed(
            f"cannot reach the mail server {target.host}:{target.port}: {detail}",
            permanent=False,
        ) from None
    assert accepted is not None
    return Receipt(provider_id=queue_id(accepted[1]) or str(message["Message-ID"]))
