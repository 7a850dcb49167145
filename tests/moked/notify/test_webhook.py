"""Signed webhooks against a real receiver on 127.0.0.1: what it gets, how its answers are
judged (retry or give up), and where a webhook may point."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from moked.notify.alerts import Alert
from moked.notify.channels import DeliveryFailed, Envelope, Receipt, webhook
from moked.settings import Environment, Settings, load_settings
from moked.statuses import AlertKind, Channel, ProcessingStatus

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "docs/schemas/notification-webhook.json"
SECRET = webhook.new_secret()
CALL_SID = "CA" + "ab12" * 8


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers from a script
    (the last reply repeats once the script runs out)."""

    def __init__(self, *replies: Reply) -> None:
        self.script = list(replies) or [Reply(200)]
        self.requests: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                reply = receiver.script.pop(0) if len(receiver.script) > 1 else receiver.script[0]
                time.sleep(reply.delay)
                with contextlib.suppress(OSError):  # the sender may have given up already
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/moked"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def settings() -> Settings:
    base = load_settings(moked_env="development", public_host="http://127.0.0.1:8080")
    return base.model_copy(update={"notify_webhook_timeout_seconds": 2.0})


@pytest.fixture(scope="module")
def production(settings: Settings) -> Settings:
    # model_copy skips validation: only is_production matters to the checks under test.
    return settings.model_copy(update={"moked_env": Environment.PRODUCTION})


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def make_alert(
    kind: AlertKind = AlertKind.MESSAGE_READY, from_number: str | None = "+972501234567"
) -> Alert:
    ready = kind is AlertKind.MESSAGE_READY
    return Alert(
        kind=kind,
        call_sid=CALL_SID,
        business_id=7,
        business_name="אינסטלציה כהן",
        language="he",
        timezone="Asia/Jerusalem",
        from_number=from_number,
        to_number="+97237654321",
        started_at=dt.datetime(2026, 3, 1, 9, 13, 40, tzinfo=dt.UTC),
        duration_seconds=41 if ready else 6,
        transcript="שלום, יש נזילה במטבח" if ready else None,
        transcript_status=ProcessingStatus.READY if ready else None,
        transcript_language="he" if ready else None,
        calls_this_week=1,
        call_url=f"http://127.0.0.1:8080/calls/{CALL_SID}",
        recording_path=None,
        recording_bytes=None,
    )


def envelope(url: str, attempt: int = 1, alert: Alert | None = None, **kw: Any) -> Envelope:
    fields: dict[str, Any] = {
        "channel": Channel.WEBHOOK,
        "recipient": url,
        "alerts": (alert or make_alert(),),
        "message_id": "msg_delivery_42",
        "attempt": attempt,
        "sent_at": dt.datetime.now(dt.UTC),
        "secret": SECRET,
    }
    fields.update(kw)
    return Envelope(**fields)


def failure(settings: Settings, env: Envelope) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        webhook.send(settings, env)
    return caught.value


# --- sending --------------------------------------------------------------------------------


def test_retries_keep_the_webhook_id_and_every_attempt_verifies(settings: Settings) -> None:
    with Receiver(Reply(503, b"busy"), Reply(503, b"busy"), Reply(200, b"ok")) as receiver:
        first = failure(settings, envelope(receiver.url, attempt=1))
        second = failure(settings, envelope(receiver.url, attempt=2))
        receipt = webhook.send(settings, envelope(receiver.url, attempt=3))

    assert not first.permanent and not second.permanent
    assert first.code == "503" and "503" in first.reason
    assert receipt == Receipt(provider_id="HTTP 200")
    assert len(receiver.requests) == 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {"msg_delivery_42"}
    for request in receiver.requests:
        assert request.path == "/hooks/moked"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"] == "Moked-Webhooks/1"
        assert request.headers["webhook-signature"].startswith("v1,")
        event = Webhook(SECRET).verify(request.body, request.headers)
        assert event["data"]["transcript"] == "שלום, יש נזילה במטבח"
        assert "שלום".encode() in request.body  # UTF-8, not \\u escapes
        assert event["timestamp"].endswith("Z")
        stamp = dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        assert int(request.headers["webhook-timestamp"]) == int(stamp.timestamp())


def test_a_signature_with_another_secret_or_body_does_not_verify(settings: Settings) -> None:
    with Receiver(Reply(204)) as receiver:
        assert webhook.send(settings, envelope(receiver.url)).provider_id == "HTTP 204"
    request = receiver.requests[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook.new_secret()).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(request.body.replace(b"+972", b"+973"), request.headers)


def test_the_signature_uses_utc_whatever_zone_sent_at_is_in(settings: Settings) -> None:
    jerusalem_now = dt.datetime.now(dt.timezone(dt.timedelta(hours=2)))
    with Receiver(Reply(200)) as receiver:
        webhook.send(settings, envelope(receiver.url, sent_at=jerusalem_now))
    request = receiver.requests[0]
    assert int(request.headers["webhook-timestamp"]) == int(jerusalem_now.timestamp())
    Webhook(SECRET).verify(request.body, request.headers)


def test_a_bad_request_is_permanent_and_says_why(settings: Settings) -> None:
    answer = json.dumps({"error": "unknown business " + "x" * 400}).encode()
    with Receiver(Reply(400, answer)) as receiver:
        failed = failure(settings, envelope(receiver.url))
    assert failed.permanent
    assert failed.code == "400"
    assert "400" in failed.reason and "unknown business" in failed.reason
    assert len(failed.reason) < 300  # the receiver's answer is cut
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(("status", "permanent"), [(410, True), (408, False), (429, False)])
def test_which_statuses_are_worth_retrying(
    settings: Settings, status: int, permanent: bool
) -> None:
    with Receiver(Reply(status)) as receiver:
        failed = failure(settings, envelope(receiver.url))
    assert failed.permanent is permanent
    assert failed.code == str(status)


def test_a_redirect_is_permanent_and_not_followed(settings: Settings) -> None:
    target = Receiver(Reply(200))
    with target, Receiver(Reply(301, headers={"Location": target.url})) as receiver:
        failed = failure(settings, envelope(receiver.url))
    assert failed.permanent
    assert failed.code == "301"
    assert "redirects are not followed: 301 to " + target.url in failed.reason
    assert len(receiver.requests) == 1
    assert target.requests == []


def test_a_closed_port_is_transient(settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    failed = failure(settings, envelope(f"http://127.0.0.1:{port}/hook"))
    assert not failed.permanent
    assert failed.code is None


def test_a_receiver_that_does_not_answer_in_time_is_transient(settings: Settings) -> None:
    quick = settings.model_copy(update={"notify_webhook_timeout_seconds": 0.3})
    with Receiver(Reply(200, delay=1.5)) as receiver:
        started = time.monotonic()
        failed = failure(quick, envelope(receiver.url))
    assert not failed.permanent
    assert "did not answer" in failed.reason
    assert time.monotonic() - started < 1.4


def test_a_digest_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="one by one"):
        webhook.send(settings, envelope("http://127.0.0.1:9/", alerts=(make_alert(),) * 2))


def test_a_url_refused_at_send_time_is_permanent_and_nothing_is_sent(
    settings: Settings, production: Settings
) -> None:
    with Receiver(Reply(200)) as receiver:
        failed = failure(production, envelope(receiver.url))
    assert failed.permanent and "https" in failed.reason
    assert receiver.requests == []


def test_a_name_that_does_not_resolve_is_transient_at_send_time(production: Settings) -> None:
    failed = failure(production, envelope("https://receiver.invalid/hook"))
    assert not failed.permanent


def test_a_rule_without_a_usable_secret_fails_permanently(settings: Settings) -> None:
    with Receiver(Reply(200)) as receiver:
        assert failure(settings, envelope(receiver.url, secret=None)).permanent
    assert receiver.requests == []


# --- the payload ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alert",
    [
        make_alert(AlertKind.MESSAGE_READY),
        make_alert(AlertKind.MISSED),
        make_alert(AlertKind.MESSAGE_READY, from_number=None),
    ],
    ids=["message_ready", "missed", "withheld"],
)
def test_the_payload_matches_the_schema(
    settings: Settings, schema: dict[str, Any], alert: Alert
) -> None:
    with Receiver(Reply(200)) as receiver:
        webhook.send(settings, envelope(receiver.url, alert=alert))
    event = json.loads(receiver.requests[0].body)
    jsonschema.Draft202012Validator(schema).validate(event)
    assert event["type"] == alert.kind.event_type
    assert event["data"]["from"] == alert.from_number


def test_the_schema_can_refuse(schema: dict[str, Any]) -> None:
    from moked.notify import alerts

    good = alerts.payload(make_alert(), dt.datetime.now(dt.UTC))
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(good)
    for broken in (
        {**good, "extra": 1},
        {**good, "type": "call.answered"},
        {**good, "data": {**good["data"], "business": {"id": "7", "name": "x"}}},
        {**good, "data": {k: v for k, v in good["data"].items() if k != "call_url"}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)


# --- where a webhook may point --------------------------------------------------------------


PUBLIC = "93.184.216.34"
"""A public address written literally: only the check under test can refuse it (no DNS)."""


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"http://{PUBLIC}/moked", "https"),
        ("https://127.0.0.1/", "loopback"),
        ("https://10.0.0.1/", "private"),
        ("https://192.168.1.20/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://100.64.0.1/", "not public"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://224.0.0.1/", "multicast"),
        ("https://240.0.0.1/", "reserved"),
        ("https://[::1]/", "loopback"),
        ("https://[::]/", "unspecified"),
        ("https://[fe80::1]/", "link-local"),
        ("https://[fd00::1]/", "private"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://[2002:a00:1::]/", "private"),
        ("https://localhost/hook", "loopback"),
        (f"https://user@{PUBLIC}/", "user"),
        (f"https://user:pw@{PUBLIC}/", "user"),
        (f"https://{PUBLIC}\\@127.0.0.1/", "backslash"),
        (f"https://{PUBLIC}\\hook", "backslash"),
        (f"https://{PUBLIC}/#frag", "fragment"),
        ("https:///path-only", "no host"),
        ("https://[::1/", "parsed"),
        (f"ftp://{PUBLIC}/", "https://"),
        ("hooks.example.com/moked", "https://"),
        (f"https://{PUBLIC}:99999/", "port"),
        (f"https://{PUBLIC}/a b", "spaces"),
    ],
)
def test_production_refuses(production: Settings, url: str, says: str) -> None:
    with pytest.raises(ValueError) as refused:
        webhook.check_url(production, url)
    reason = str(refused.value)
    assert says in reason
    assert "\n" not in reason


def test_production_accepts_a_public_https_address(production: Settings) -> None:
    assert webhook.check_url(production, f"HTTPS://{PUBLIC}:443/Hook?x=1") == (
        f"https://{PUBLIC}/Hook?x=1"
    )
    assert webhook.check_url(production, " https://[2606:4700::1111]:8443 ") == (
        "https://[2606:4700::1111]:8443/"
    )


def test_a_name_is_refused_for_what_it_resolves_to(production: Settings) -> None:
    with pytest.raises(ValueError, match="loopback"):
        webhook.check_url(production, "https://localhost:8443/hook")
    with pytest.raises(webhook.UnresolvableHost):
        webhook.check_url(production, "https://receiver.invalid/")


def test_development_allows_loopback_receivers(settings: Settings) -> None:
    assert webhook.check_url(settings, "http://127.0.0.1:8099/hook") == (
        "http://127.0.0.1:8099/hook"
    )
    assert webhook.check_url(settings, "http://localhost:8099") == "http://localhost:8099/"
    for still_refused in ("ftp://127.0.0.1/", "http://u@127.0.0.1/", "http://127.0.0.1/#x"):
        with pytest.raises(ValueError):
            webhook.check_url(settings, still_refused)


# --- the secret -----------------------------------------------------------------------------


def test_secrets() -> None:
    for bad in ("abc", "whsec_", "whsec_" + "QUJD", "whsec_not*base64*at*all*!!", SECRET[6:]):
        with pytest.raises(ValueError) as refused:
            webhook.check_secret(bad)
        assert bad not in str(refused.value) or len(bad) < 8  # never echoes a secret
    # Outside base64's alphabet: the package itself would silently skip the "!".
    with pytest.raises(ValueError, match="base64"):
        webhook.check_secret("whsec_" + "A" * 20 + "!" + "A" * 20)
    fresh = webhook.new_secret()
    assert fresh.startswith("whsec_") and fresh != webhook.new_secret()
    assert webhook.check_secret(fresh) == fresh
    assert webhook.check_secret(f"  {fresh}\n") == fresh
    unpadded = "whsec_" + "A" * 32  # 24 bytes, no padding needed
    assert webhook.check_secret(unpadded) == unpadded
