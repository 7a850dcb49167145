"""Webhook channel: one signed JSON POST per alert (Standard Webhooks).

The body is `alerts.payload` (docs/schemas/notification-webhook.json); the signature
headers come from the `standardwebhooks` package, keyed by the rule's `whsec_…` secret.
`webhook-id` is the delivery's message id, the same on every retry, so a receiver can
drop duplicates. Redirects are never followed: a redirect could point anywhere, and the
URL was checked, not where it leads.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import json
import math
import secrets
import socket
import string
from urllib.parse import urlsplit, urlunsplit

import requests
from standardwebhooks.webhooks import Webhook

from moked.notify import alerts
from moked.notify.channels import DeliveryFailed, Envelope, Receipt
from moked.settings import Settings

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_MIN_BYTES = 24
USER_AGENT = "Moked-Webhooks/1"
BODY_EXCERPT_CHARS = 200
_TRANSIENT_STATUSES = frozenset({408, 429})
_DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnresolvableHost(ValueError):
    """The host name did not resolve: refused when a rule is added, retried at send time
    (DNS can be down for a while)."""


# --- the URL --------------------------------------------------------------------------------


def _refusal(address: IPAddress) -> str | None:
    """Why a production webhook may not reach this address, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:10.0.0.1 and 6to4's 2002:a00:1:: reach the IPv4 address inside them.
        inner = address.ipv4_mapped or address.sixtofour
        if inner is not None:
            return _refusal(inner)
    for label, hit in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if hit:
            return label
    # Shared (carrier-grade NAT) and other special-purpose ranges are neither of the above.
    return None if address.is_global else "not public"


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnresolvableHost(f"the host {host} does not resolve ({exc})") from None
    found: list[IPAddress] = []
    for info in infos:
        # IPv6 link-local answers carry a scope ("fe80::1%eth0").
        address = _literal(str(info[4][0]).split("%", 1)[0])
        if address is not None:
            found.append(address)
    if not found:
        raise UnresolvableHost(f"the host {host} has no IP address")
    return found


def check_url(settings: Settings, url: str) -> str:
    """Where a webhook rule may point; the URL normalized, or ValueError saying why not.

    Production: https only, and never an address inside the server's own networks
    (private, loopback, link-local, multicast, reserved, unspecified), whether written
    literally or behind a name. Development allows http and any address (receivers on
    127.0.0.1). `UnresolvableHost` (a ValueError) when the name does not resolve.
    """
    url = url.strip()
    if any(ch in url for ch in string.whitespace) or any(ord(ch) < 32 for ch in url):
        raise ValueError("the webhook URL may not contain spaces or control characters")
    if "\\" in url:
        raise ValueError("the webhook URL may not contain a backslash")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "[::1" and the like
        raise ValueError(f"the webhook URL cannot be parsed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        got = parts.scheme or url[:40]
        raise ValueError(f"the webhook URL must start with https:// (got {got!r})")
    if "@" in parts.netloc:
        raise ValueError("the webhook URL may not carry a user name or password (user@host)")
    if "#" in url:
        raise ValueError("the webhook URL may not have a #fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError("the webhook URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the webhook URL's port is not a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("the webhook URL's port is not a number from 1 to 65535")
    try:
        # IDNA (punycode) for international names, so the check and the request agree.
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"the webhook URL's host {host!r} is not a valid name") from None
    ascii_host = ascii_host.lower()
    literal = _literal(ascii_host)

    if settings.is_production:
        if scheme != "https":
            raise ValueError("webhooks must use https:// in production")
        addresses = (
            [literal]
            if literal is not None
            else _resolve(ascii_host, port or _DEFAULT_PORTS[scheme])
        )
        for address in addresses:
            why = _refusal(address)
            if why is not None:
                shown = "" if literal is not None else f" ({ascii_host} resolves to it)"
                raise ValueError(f"webhooks may not reach {why} addresses such as {address}{shown}")

    netloc = f"[{ascii_host}]" if isinstance(literal, ipaddress.IPv6Address) else ascii_host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


# --- the secret -----------------------------------------------------------------------------


def check_secret(secret: str) -> str:
    """A Standard Webhooks signing secret, `whsec_` and base64 of at least 24 bytes.

    ValueError says what is wrong without repeating the secret (messages reach logs).
    """
    value = secret.strip()
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX} (generate one)")
    encoded = value[len(SECRET_PREFIX) :]
    try:
        # Strict: the package's own decoding skips characters outside base64 silently.
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a webhook secret is {SECRET_PREFIX} followed by base64") from None
    if len(raw) < SECRET_MIN_BYTES:
        raise ValueError(
            f"a webhook secret needs at least {SECRET_MIN_BYTES} random bytes "
            f"(this one has {len(raw)}); generate one"
        )
    try:
        Webhook(value)
    except Exception as exc:  # the package raises several unrelated types
        raise ValueError(f"the webhook secret is not usable: {type(exc).__name__}") from None
    return value


def new_secret() -> str:
    """A fresh signing secret for a new webhook rule."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


# --- sending --------------------------------------------------------------------------------


def _utc(moment: dt.datetime) -> dt.datetime:
    # The package's `sign` replaces the zone instead of converting: hand it UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def signed_request(envelope: Envelope) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the POST for a single-alert envelope (tests read it too)."""
    if len(envelope.alerts) != 1:
        raise ValueError("a webhook carries exactly one alert (held webhooks go one by one)")
    if not envelope.secret:
        raise ValueError("a webhook needs its rule's signing secret")
    sent_at = _utc(envelope.sent_at)
    body = json.dumps(alerts.payload(envelope.alerts[0], sent_at), ensure_ascii=False).encode()
    signature = Webhook(envelope.secret).sign(
        msg_id=envelope.message_id, timestamp=sent_at, data=body.decode()
    )
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": envelope.message_id,
        "webhook-timestamp": str(math.floor(sent_at.timestamp())),
        "webhook-signature": signature,
    }
    return body, headers


def _excerpt(response: requests.Response) -> str:
    """The start of the receiver's answer, on one line, for the delivery's error."""
    try:
        chunk = next(response.iter_content(chunk_size=4 * BODY_EXCERPT_CHARS), b"")
    except requests.RequestException:
        return ""
    text = chunk.decode(response.encoding or "utf-8", errors="replace")
    return " ".join(text.split())[:BODY_EXCERPT_CHARS]


def _reason(status: int, excerpt: str) -> str:
    return f"the receiver answered HTTP {status}" + (f": {excerpt}" if excerpt else "")


def send(settings: Settings, envelope: Envelope) -> Receipt:
    """POST one signed alert. DeliveryFailed: permanent for a refused URL, a redirect and
    4xx other than 408/429; transient for 408, 429, 5xx, timeouts and connection errors."""
    if envelope.is_digest:
        raise ValueError("webhooks are never digests: dispatch sends held webhooks one by one")
    try:
        # Checked again now: the name may resolve elsewhere than when the rule was added.
        url = check_url(settings, envelope.recipient)
    except UnresolvableHost as exc:
        raise DeliveryFailed(str(exc), permanent=False) from None
    except ValueError as exc:
        raise DeliveryFailed(f"the URL is not allowed: {exc}", permanent=True) from None
    try:
        body, headers = signed_request(envelope)
    except Exception as exc:  # a missing or broken secret: no retry can fix the rule
        raise DeliveryFailed(f"cannot sign the webhook: {exc}", permanent=True) from None

    with requests.Session() as session:
        # No proxies or .netrc from the environment: the request goes where check_url looked,
        # and no stored credentials travel to a URL somebody typed into a rule.
        session.trust_env = False
        try:
            response = session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=settings.notify_webhook_timeout_seconds,
                stream=True,
            )
        except requests.Timeout:
            waited = settings.notify_webhook_timeout_seconds
            raise DeliveryFailed(
                f"the receiver did not answer within {waited:g} s", permanent=False
            ) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
            raise DeliveryFailed(f"the URL cannot be used: {exc}", permanent=True) from None
        except requests.RequestException as exc:
            raise DeliveryFailed(
                f"cannot reach the receiver: {type(exc).__name__}", permanent=False
            ) from None
        with response:
            status = response.status_code
            code = str(status)
            if 200 <= status < 300:
                return Receipt(provider_id=f"HTTP {status}")
            if 300 <= status < 400:
                location = response.headers.get("Location") or "no Location"
                raise DeliveryFailed(
                    f"redirects are not followed: {status} to {location[:BODY_EXCERPT_CHARS]}",
                    permanent=True,
                    code=code,
                )
            excerpt = _excerpt(response)
            if 400 <= status < 500 and status not in _TRANSIENT_STATUSES:
                raise DeliveryFailed(_reason(status, excerpt), permanent=True, code=code)
            # 408, 429, 5xx (and anything outside HTTP's classes): try again later.
            raise DeliveryFailed(_reason(status, excerpt), permanent=False, code=code)
