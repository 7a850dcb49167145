"""Email alerts against a real SMTP server on loopback (the development mail sink)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest

from moked.mail_sink import MailSink, sink_address
from moked.notify import alerts
from moked.notify.alerts import Alert
from moked.notify.channels import DeliveryFailed, Envelope
from moked.notify.channels import email as email_channel
from moked.notify.channels.email import SmtpSecurity, parse_smtp_url, queue_id
from moked.settings import Environment, Settings
from moked.stack.config import REPO_ROOT, StackLayout, program_sections
from moked.stack.monitoring import program_names
from moked.statuses import AlertKind, Channel, ProcessingStatus
from tests.harness import StackUnderTest

REFUSED = "nobody@example.com"
BUSY = "busy@example.com"
TRANSCRIPT = "שלום, זה דני. הרכב עדיין במוסך? תחזרו אליי בבקשה."
VENV_BIN = Path(sys.executable).parent
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    with MailSink(
        tmp_path / "mail",
        refuse={REFUSED: "550 5.1.1 <nobody@example.com>: no such user", BUSY: "451 4.7.1 later"},
    ) as running:
        yield running


def settings_for(url: str, **extra: object) -> Settings:
    return Settings(_env_file=None, smtp_url=url, mail_from="מוקד <moked@example.com>", **extra)  # type: ignore[call-arg]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "CA1.mp3"
    path.write_bytes(MP3)
    return path


def make_alert(recording: Path | None, **changes: object) -> Alert:
    alert = Alert(
        kind=AlertKind.MESSAGE_READY,
        call_sid="CA" + "1" * 32,
        business_id=1,
        business_name="מוסך הצפון",
        language="he",
        timezone="Asia/Jerusalem",
        from_number="+972501234567",
        to_number="+97231234567",
        started_at=dt.datetime(2026, 12, 1, 7, 30, tzinfo=dt.UTC),
        duration_seconds=14,
        transcript=TRANSCRIPT,
        transcript_status=ProcessingStatus.READY,
        transcript_language="he",
        calls_this_week=1,
        call_url="http://127.0.0.1:8080/calls/CA" + "1" * 32,
        recording_path=recording,
        recording_bytes=recording.stat().st_size if recording else None,
    )
    return replace(alert, **changes)  # type: ignore[arg-type]


def envelope(*items: Alert, to: str = "owner@example.com", message_id: str = "d-1") -> Envelope:
    return Envelope(
        channel=Channel.EMAIL,
        recipient=to,
        alerts=items,
        message_id=message_id,
        attempt=1,
        sent_at=dt.datetime(2026, 12, 1, 7, 32, tzinfo=dt.UTC),
    )


def only_message(sink: MailSink) -> EmailMessage:
    messages = sink.messages()
    assert len(messages) == 1
    return messages[0]


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None and part.get_content_type() == f"text/{subtype}"
    content = part.get_content()
    assert isinstance(content, str)
    return content


def attachments(message: EmailMessage) -> list[EmailMessage]:
    return list(message.iter_attachments())  # type: ignore[arg-type]


def test_a_hebrew_alert_arrives_rtl_with_transcript_and_recording(
    sink: MailSink, recording: Path
) -> None:
    alert = make_alert(recording, calls_this_week=3)

    receipt = email_channel.send(settings_for(sink.url), envelope(alert))

    message = only_message(sink)
    # The sink's reply "250 OK: queued as <stem>" is the receipt.
    assert receipt.provider_id == sink.files()[0].stem
    assert message["Subject"] == alerts.subject(alert)
    assert "=?utf-8?" in sink.files()[0].read_text(encoding="ascii")  # RFC 2047 on the wire
    assert message["To"] == "owner@example.com"
    assert message["From"].addresses[0].display_name == "מוקד"
    assert message["Message-ID"] == "<d-1@moked>"
    assert message["Date"].datetime == dt.datetime(2026, 12, 1, 7, 32, tzinfo=dt.UTC)
    plain = body(message, "plain")
    assert TRANSCRIPT in plain and alert.call_url in plain
    assert all(line in plain for line in alerts.details(alert))
    rich = body(message, "html")
    assert '<html dir="rtl" lang="he">' in rich
    assert f'href="{alert.call_url}"' in rich and alerts.text(alert, "open") in rich
    assert TRANSCRIPT in rich
    (audio,) = attachments(message)
    assert audio.get_content_type() == "audio/mpeg"
    assert audio.get_filename() == "call-20261201-0930-972501234567.mp3"
    assert audio.get_content() == MP3


def test_an_english_alert_is_ltr_and_everything_is_escaped(sink: MailSink) -> None:
    alert = make_alert(
        None,
        language="en",
        business_name="Bob's <Garage> & Sons",
        transcript="<script>alert(1)</script> call me",
    )

    email_channel.send(settings_for(sink.url), envelope(alert))

    message = only_message(sink)
    rich = body(message, "html")
    assert '<html dir="ltr" lang="en">' in rich
    assert "<script>" not in rich and "&lt;script&gt;" in rich
    assert "Bob&#x27;s &lt;Garage&gt; &amp; Sons" in rich
    assert attachments(message) == []
    assert message["Subject"] == alerts.subject(alert)


def test_a_recording_over_the_limit_is_linked_not_attached(sink: MailSink, recording: Path) -> None:
    settings = settings_for(sink.url, notify_attachment_max_bytes=len(MP3) - 1)

    email_channel.send(settings, envelope(make_alert(recording)))

    message = only_message(sink)
    assert attachments(message) == []
    assert make_alert(recording).call_url in body(message, "plain")


def test_a_recording_exactly_at_the_limit_is_attached(sink: MailSink, recording: Path) -> None:
    settings = settings_for(sink.url, notify_attachment_max_bytes=len(MP3))

    email_channel.send(settings, envelope(make_alert(recording)))

    (audio,) = attachments(only_message(sink))
    assert audio.get_content() == MP3


def test_no_attachment_when_the_rule_says_so_or_the_file_is_gone(
    sink: MailSink, recording: Path, tmp_path: Path
) -> None:
    settings = settings_for(sink.url)
    without = replace(envelope(make_alert(recording)), attach_audio=False)
    email_channel.send(settings, without)
    gone = make_alert(recording, recording_path=tmp_path / "deleted.mp3")
    email_channel.send(settings, envelope(gone, message_id="d-2"))

    assert [attachments(m) for m in sink.messages()] == [[], []]


def test_a_digest_lists_every_call_in_one_email(sink: MailSink, recording: Path) -> None:
    calls = (
        make_alert(recording, call_sid="CA" + "a" * 32, call_url="http://h/calls/a"),
        make_alert(
            recording,
            call_sid="CA" + "b" * 32,
            call_url="http://h/calls/b",
            from_number="+972521112222",
            transcript="תתקשרו מחר",
        ),
        make_alert(
            None,
            kind=AlertKind.MISSED,
            call_sid="CA" + "c" * 32,
            call_url="http://h/calls/c",
            from_number=None,
            transcript=None,
        ),
    )

    email_channel.send(settings_for(sink.url), envelope(*calls))

    message = only_message(sink)
    assert message["Subject"] == alerts.digest_title(calls)
    assert "3" in message["Subject"]
    plain, rich = body(message, "plain"), body(message, "html")
    for alert in calls:
        assert alert.call_url in plain and f'href="{alert.call_url}"' in rich
        assert alerts.caller(alert) in plain and alerts.caller(alert) in rich
        assert alerts.transcript_line(alert) in plain
    assert '<html dir="rtl" lang="he">' in rich
    assert attachments(message) == []  # digests link, never attach


def test_a_server_that_is_down_is_a_transient_failure(tmp_path: Path) -> None:
    closed = free_port()

    with pytest.raises(DeliveryFailed) as failure:
        email_channel.send(settings_for(f"smtp://127.0.0.1:{closed}"), envelope(make_alert(None)))

    assert failure.value.permanent is False
    assert f"127.0.0.1:{closed}" in failure.value.reason


def test_a_refused_recipient_is_permanent_with_the_code(sink: MailSink) -> None:
    with pytest.raises(DeliveryFailed) as failure:
        email_channel.send(settings_for(sink.url), envelope(make_alert(None), to=REFUSED))

    assert failure.value.permanent is True
    assert failure.value.code == "550"
    assert REFUSED in failure.value.reason and "no such user" in failure.value.reason
    assert sink.messages() == []


def test_a_4xx_to_the_recipient_is_transient(sink: MailSink) -> None:
    with pytest.raises(DeliveryFailed) as failure:
        email_channel.send(settings_for(sink.url), envelope(make_alert(None), to=BUSY))

    assert failure.value.permanent is False
    assert failure.value.code == "451"
    assert sink.messages() == []


def test_an_address_smtp_cannot_carry_is_permanent(sink: MailSink) -> None:
    with pytest.raises(DeliveryFailed) as failure:
        email_channel.send(settings_for(sink.url), envelope(make_alert(None), to="no-at-sign"))

    assert failure.value.permanent is True
    assert sink.messages() == []


@pytest.mark.parametrize(
    ("url", "security", "host", "port", "user", "password"),
    [
        ("smtp://127.0.0.1:8025", SmtpSecurity.PLAIN, "127.0.0.1", 8025, None, None),
        ("smtp://mail.internal", SmtpSecurity.PLAIN, "mail.internal", 25, None, None),
        (
            "smtp+starttls://alerts%40example.com:p%40ss%3Aw%2Frd@smtp.example.com:587",
            SmtpSecurity.STARTTLS,
            "smtp.example.com",
            587,
            "alerts@example.com",
            "p@ss:w/rd",
        ),
        (
            "smtp+starttls://smtp.example.com",
            SmtpSecurity.STARTTLS,
            "smtp.example.com",
            587,
            None,
            None,
        ),
        ("smtps://u:pw@smtp.example.com:465", SmtpSecurity.SSL, "smtp.example.com", 465, "u", "pw"),
        ("SMTPS://u:pw@smtp.example.com", SmtpSecurity.SSL, "smtp.example.com", 465, "u", "pw"),
    ],
)
def test_smtp_url_parsing(
    url: str, security: SmtpSecurity, host: str, port: int, user: str | None, password: str | None
) -> None:
    target = parse_smtp_url(url)

    assert (target.security, target.host, target.port) == (security, host, port)
    assert (target.username, target.password) == (user, password)
    if password:
        assert password not in repr(target)


@pytest.mark.parametrize(
    "url", ["http://x:25", "smtp://:25", "smtp://host:99999", "mail.example.com"]
)
def test_a_bad_smtp_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="SMTP_URL"):
        parse_smtp_url(url)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("2.0.0 Ok: queued as 4Xy7Lm0abcz", "4Xy7Lm0abcz"),
        ("OK id=1rABcD-0001aB-Xy", "1rABcD-0001aB-Xy"),
        ("OK: queued as 20261201T030250-007dc3c6", "20261201T030250-007dc3c6"),
        ("2.0.0 OK  1700000000 a1-20020a.5 - gsmtp", None),
    ],
)
def test_queue_id(reply: str, expected: str | None) -> None:
    assert queue_id(reply.encode()) == expected


def test_without_a_queue_id_the_message_id_is_the_receipt(sink: MailSink) -> None:
    sink.handler.data_reply = "250 2.0.0 Ok"
    receipt = email_channel.send(
        settings_for(sink.url), envelope(make_alert(None), message_id="x9")
    )
    assert receipt.provider_id == "<x9@moked>"
    assert len(sink.messages()) == 1


@pytest.mark.parametrize(
    ("reply", "permanent"), [("554 5.7.1 spam", True), ("452 4.3.1 full", False)]
)
def test_a_refused_message_is_classified_by_its_code(
    sink: MailSink, reply: str, permanent: bool
) -> None:
    sink.handler.data_reply = reply
    with pytest.raises(DeliveryFailed) as failure:
        email_channel.send(settings_for(sink.url), envelope(make_alert(None)))

    assert failure.value.permanent is permanent
    assert failure.value.code == reply[:3]
    assert reply.split()[-1] in failure.value.reason
    assert sink.messages() == []


# --- the development mail sink ---------------------------------------------------------------


def test_the_sink_stores_each_message_as_a_private_eml(sink: MailSink) -> None:
    email_channel.send(settings_for(sink.url), envelope(make_alert(None)))

    (path,) = sink.files()
    assert path.suffix == ".eml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(sink.directory.stat().st_mode) == 0o700
    assert not list(sink.directory.glob(".*"))  # no temporary file left behind
    stored = sink.messages()[0]
    assert stored["Delivered-To"] == "owner@example.com"
    assert stored["Return-Path"] == "<moked@example.com>"


def test_the_sink_listens_on_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        MailSink(tmp_path, host="0.0.0.0")  # noqa: S104 - it must refuse this


def test_the_sink_runs_only_for_a_plain_loopback_smtp_url() -> None:
    assert sink_address(settings_for("smtp://127.0.0.1:8025")) == ("127.0.0.1", 8025)
    assert sink_address(settings_for("smtp://localhost")) == ("localhost", 25)
    assert sink_address(settings_for("smtp://mail.example.com:25")) is None
    assert sink_address(settings_for("smtp+starttls://u:p@127.0.0.1:587")) is None


def test_the_stack_runs_the_sink_only_in_development_for_a_loopback_url(tmp_path: Path) -> None:
    def programs(settings: Settings) -> list[str]:
        return program_names(program_sections(StackLayout(settings, tmp_path)))

    development = settings_for("smtp://127.0.0.1:8025")
    assert "mail-sink" in programs(development)
    assert "mail-sink" not in programs(settings_for("smtp+starttls://u:p@smtp.example.com:587"))
    production = development.model_copy(update={"moked_env": Environment.PRODUCTION})
    assert "mail-sink" not in programs(production)


def test_the_service_stores_what_it_is_sent(tmp_path: Path) -> None:
    port = free_port()
    mail_dir = tmp_path / "mail"
    env_file = tmp_path / "stack.env"
    env_file.write_text(f"SMTP_URL=smtp://127.0.0.1:{port}\nMAIL_DIR={mail_dir}\n")
    env = {
        **os.environ,
        "MOKED_ENV_FILE": str(env_file),
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
    }
    service = subprocess.Popen(
        [str(REPO_ROOT / "scripts" / "run-service"), "mail-sink"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        settings = settings_for(f"smtp://127.0.0.1:{port}")
        deadline = time.monotonic() + 20
        while True:
            try:
                receipt = email_channel.send(settings, envelope(make_alert(None)))
                break
            except DeliveryFailed:
                assert service.poll() is None, service.communicate()[0]
                assert time.monotonic() < deadline, "the mail sink did not start"
                time.sleep(0.1)
        assert [path.stem for path in mail_dir.glob("*.eml")] == [receipt.provider_id]
        assert stat.S_IMODE(mail_dir.stat().st_mode) == 0o700
    finally:
        service.terminate()
        output = service.communicate(timeout=10)[0]
    assert service.returncode == 0, output


def test_the_stacks_mail_sink_takes_the_mail(stack: StackUnderTest) -> None:
    settings = stack.settings
    assert sink_address(settings) is not None

    receipt = email_channel.send(settings, envelope(make_alert(None), message_id="stack-1"))

    stored = settings.mail_dir / f"{receipt.provider_id}.eml"
    assert stored.is_file() and stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.mail_dir.stat().st_mode) == 0o700
