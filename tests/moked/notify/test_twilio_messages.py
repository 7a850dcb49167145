"""SMS and WhatsApp alerts: the text cut to fit what phones join, and the send through
twilio's client to the Messaging API simulator on 127.0.0.1 (moked.simulator.twilio_api)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import replace

import pytest

from moked.notify.alerts import Alert
from moked.notify.channels import DeliveryFailed, Envelope, twilio_messages
from moked.settings import Settings, load_settings
from moked.simulator.twilio_api import TwilioApiSimulator
from moked.statuses import AlertKind, Channel, ProcessingStatus
from moked.twilio import rest, segments
from tests.harness import free_port

ACCOUNT_SID = "AC" + "5e" * 16
AUTH_TOKEN = secrets.token_hex(16)
CALL_URL = "http://127.0.0.1:8080/calls/CA" + "ab12" * 8
SENDER = "+97235550100"
RECIPIENT = "+972541234567"
HEBREW_TRANSCRIPT = (
    "שלום, מדברת דנה כהן מרחוב הרצל. רציתי לקבוע תור לתספורת ביום שלישי בבוקר אם אפשר, "
    "ואם לא אז ביום רביעי אחרי הצהריים. תחזרו אליי בבקשה למספר הזה, תודה רבה ויום טוב."
)
ENGLISH_TRANSCRIPT = (
    "Hello, this is Dana Cohen from Herzl Street. I’d like to book a haircut on Tuesday "
    "morning if possible, and if not then Wednesday afternoon. Please call me back on this "
    "number — thanks a lot and have a good day. " * 3
)


def utf16_units(text: str) -> int:
    """Counted independently of moked.twilio.segments: what UCS-2 segments are made of."""
    return len(text.encode("utf-16-le")) // 2


def make_alert(
    language: str = "he", transcript: str | None = HEBREW_TRANSCRIPT, **extra: object
) -> Alert:
    alert = Alert(
        kind=AlertKind.MESSAGE_READY,
        call_sid="CA" + "ab12" * 8,
        business_id=1,
        business_name="מספרת דנה" if language == "he" else "Dana's Salon",
        language=language,
        timezone="Asia/Jerusalem",
        from_number="+972541112233",
        to_number=SENDER,
        started_at=dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC),
        duration_seconds=31,
        transcript=transcript,
        transcript_status=ProcessingStatus.READY,
        transcript_language=language,
        calls_this_week=1,
        call_url=CALL_URL,
        recording_path=None,
        recording_bytes=None,
    )
    return replace(alert, **extra)  # type: ignore[arg-type]


def envelope(
    *alerts: Alert, channel: Channel = Channel.SMS, recipient: str = RECIPIENT, **extra: object
) -> Envelope:
    values: dict[str, object] = {
        "channel": channel,
        "recipient": recipient,
        "alerts": alerts or (make_alert(),),
        "message_id": "msg_" + secrets.token_hex(8),
        "attempt": 1,
        "sent_at": dt.datetime.now(dt.UTC),
        "sender": SENDER,
        "status_callback": None,
    }
    values.update(extra)
    return Envelope(**values)  # type: ignore[arg-type]


def settings_for(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "moked_env": "development",
        "public_host": "http://127.0.0.1:8080",
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_api_base": "http://127.0.0.1:9",
        "notify_sms_segments": 3,
    }
    values.update(overrides)
    return load_settings(**values)


# --- how an SMS is counted ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # the extension table: two septets each
        ("€" * 81, 2),
        ("א" * 70, 1),
        ("א" * 71, 2),
        ("א" * 134, 2),
        ("א" * 135, 3),
        ("a" * 69 + "😀", 2),  # outside the BMP: a surrogate pair, two UTF-16 units
        ("", 0),
    ],
)
def test_segments_are_counted_as_phones_join_them(text: str, count: int) -> None:
    assert segments.count(text) == count


def test_one_non_gsm_character_makes_the_whole_text_ucs2() -> None:
    assert segments.encoding("Hello @ £5 [ok]") is segments.Encoding.GSM7
    assert segments.encoding("Hello · there") is segments.Encoding.UCS2


# --- the text -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_a_hebrew_sms_fits_n_ucs2_segments_keeping_the_link_and_cutting_the_transcript(
    n: int,
) -> None:
    transcript = HEBREW_TRANSCRIPT * 4
    alert = make_alert(transcript=transcript)
    settings = settings_for(notify_sms_segments=n)

    text = twilio_messages.body(settings, envelope(alert))

    limit = 70 if n == 1 else 67 * n
    assert utf16_units(text) <= limit
    lines = text.split("\n")
    assert lines[-1] == CALL_URL
    if n >= 3:  # room for the transcript: cut, not dropped, and the room used
        assert lines[0] == "הודעה חדשה: 054-111-2233 · מספרת דנה"
        cut = lines[-2]
        assert cut.endswith("…")
        assert transcript.startswith(cut.removesuffix("…"))
        assert utf16_units(text) > limit - 20


def test_an_english_sms_uses_gsm7_limits() -> None:
    """Typographic marks (’ — ·) would make it UCS-2: they are replaced, and the message
    gets 153 characters a segment instead of 67."""
    alert = make_alert("en", ENGLISH_TRANSCRIPT, calls_this_week=3)
    settings = settings_for(notify_sms_segments=3)

    text = twilio_messages.body(settings, envelope(alert))

    assert text.isascii()
    assert 3 * 67 < len(text) <= 3 * 153
    lines = text.split("\n")
    assert lines[0] == "New voicemail: 054-111-2233 - Dana's Salon"
    assert lines[1] == "01/12/2026 10:30"
    assert lines[2] == "3rd call this week from this number"
    assert lines[3].startswith("Hello, this is Dana Cohen from Herzl Street. I'd like")
    assert lines[3].endswith("...")
    assert lines[-1] == CALL_URL


def test_a_short_sms_is_whole() -> None:
    alert = make_alert("en", "Call me back please.")

    text = twilio_messages.body(settings_for(notify_sms_segments=2), envelope(alert))

    assert text == (
        "New voicemail: 054-111-2233 - Dana's Salon\n01/12/2026 10:30\n"
        f"Call me back please.\n{CALL_URL}"
    )
    assert len(text) <= 2 * 153


def test_a_missed_call_says_so() -> None:
    alert = make_alert(kind=AlertKind.MISSED, transcript=None, transcript_status=None)

    text = twilio_messages.body(settings_for(), envelope(alert))

    assert text.startswith("שיחה שלא נענתה: 054-111-2233")
    assert "המתקשר לא השאיר הודעה." in text


def test_whatsapp_takes_up_to_1600_characters() -> None:
    short = twilio_messages.body(settings_for(), envelope(channel=Channel.WHATSAPP))
    assert HEBREW_TRANSCRIPT in short  # no SMS cut on WhatsApp
    assert "·" in short

    long_alert = make_alert("en", ENGLISH_TRANSCRIPT * 10)
    text = twilio_messages.body(settings_for(), envelope(long_alert, channel=Channel.WHATSAPP))

    assert 1500 < utf16_units(text) <= 1600
    lines = text.split("\n")
    assert lines[-1] == CALL_URL
    assert lines[-2].endswith("…")


def test_a_digest_lists_each_call_and_links_the_first() -> None:
    calls = [
        make_alert(
            "en", f"Message {i}", started_at=dt.datetime(2026, 12, 1, 20 + i, 5, tzinfo=dt.UTC)
        )
        for i in range(3)
    ]
    first = replace(calls[0], call_url=CALL_URL + "?first")
    text = twilio_messages.body(settings_for(), envelope(first, *calls[1:]))

    assert text.split("\n") == [
        "3 calls during quiet hours - Dana's Salon",
        "054-111-2233, 01/12 22:05",
        "054-111-2233, 01/12 23:05",
        "054-111-2233, 02/12 00:05",
        CALL_URL + "?first",
    ]


def test_a_long_digest_is_cut_to_fit_and_says_how_many_more() -> None:
    calls = [make_alert() for _ in range(40)]

    text = twilio_messages.body(settings_for(notify_sms_segments=2), envelope(*calls))

    assert utf16_units(text) <= 2 * 67
    lines = text.split("\n")
    assert lines[0].startswith("40 שיחות בשעות השקט")
    assert lines[-1] == CALL_URL
    shown = len(lines) - 3
    assert shown >= 1
    assert lines[-2] == f"(+{40 - shown})"


# --- sending ------------------------------------------------------------------------------


@pytest.fixture
def simulator() -> Iterator[TwilioApiSimulator]:
    with TwilioApiSimulator(ACCOUNT_SID, AUTH_TOKEN, callback_delay=0.0) as running:
        yield running


@pytest.fixture
def sim_settings(simulator: TwilioApiSimulator) -> Settings:
    return settings_for(twilio_api_base=simulator.url)


def test_an_sms_reaches_twilio_as_twilio_takes_it(
    simulator: TwilioApiSimulator, sim_settings: Settings
) -> None:
    callback = "http://127.0.0.1:9/webhook/message_status"
    message = envelope(status_callback=callback)

    receipt = twilio_messages.send(sim_settings, message)

    [sent] = simulator.messages()
    assert receipt.provider_id == sent.sid
    assert sent.sid.startswith("SM") and len(sent.sid) == 34
    assert (sent.to, sent.from_) == (RECIPIENT, SENDER)
    assert sent.body == twilio_messages.body(sim_settings, message)
    assert sent.status_callback == callback
    assert sent.num_segments <= sim_settings.notify_sms_segments


def test_whatsapp_goes_from_the_configured_sender_or_the_business_number(
    simulator: TwilioApiSimulator, sim_settings: Settings
) -> None:
    twilio_messages.send(sim_settings, envelope(channel=Channel.WHATSAPP))
    configured = sim_settings.model_copy(update={"twilio_whatsapp_from": "+14155238886"})
    twilio_messages.send(configured, envelope(channel=Channel.WHATSAPP))

    first, second = simulator.messages()
    assert (first.to, first.from_) == (f"whatsapp:{RECIPIENT}", f"whatsapp:{SENDER}")
    assert (second.to, second.from_) == (f"whatsapp:{RECIPIENT}", "whatsapp:+14155238886")


def test_an_invalid_number_is_a_permanent_failure(sim_settings: Settings) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        twilio_messages.send(sim_settings, envelope(recipient="054-not-a-number"))

    assert caught.value.permanent
    assert caught.value.code == "21211"
    assert "21211" in caught.value.reason and "not a valid phone number" in caught.value.reason


@pytest.mark.parametrize(
    ("status", "code", "permanent"),
    [
        (503, None, False),
        (500, 20500, False),
        (429, 20429, False),
        (400, 21610, True),
        (400, 21614, True),
        (400, 63016, True),
        (403, 20003, True),
    ],
)
def test_twilios_refusals_are_judged_by_status_and_code(
    simulator: TwilioApiSimulator,
    sim_settings: Settings,
    status: int,
    code: int | None,
    permanent: bool,
) -> None:
    simulator.fail_next(status, code=code, message="scripted")

    with pytest.raises(DeliveryFailed) as caught:
        twilio_messages.send(sim_settings, envelope())

    assert caught.value.permanent is permanent
    assert caught.value.code == str(code or status)
    assert str(code or status) in caught.value.reason
    assert simulator.messages() == []


def test_unsubscribed_says_so(simulator: TwilioApiSimulator, sim_settings: Settings) -> None:
    simulator.fail_next(400, code=21610, message="Attempt to send to unsubscribed recipient")

    with pytest.raises(DeliveryFailed) as caught:
        twilio_messages.send(sim_settings, envelope())

    assert "unsubscribed" in caught.value.reason


def test_twilio_unreachable_is_transient() -> None:
    closed = settings_for(twilio_api_base=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(DeliveryFailed) as caught:
        twilio_messages.send(closed, envelope())

    assert not caught.value.permanent


def test_no_sender_number_is_permanent(sim_settings: Settings) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        twilio_messages.send(sim_settings, envelope(sender=None))

    assert caught.value.permanent


# --- where messages go --------------------------------------------------------------------


def test_development_without_credentials_sends_to_the_simulator() -> None:
    port = free_port()
    placeholder = settings_for(
        twilio_account_sid=rest.PLACEHOLDER_ACCOUNT_SID,
        twilio_auth_token="change-me",
        twilio_api_base="",
        twilio_sim_port=port,
    )
    assert not rest.rest_enabled(placeholder)
    assert rest.messaging_settings(placeholder).twilio_api_base == f"http://127.0.0.1:{port}"

    with TwilioApiSimulator(rest.PLACEHOLDER_ACCOUNT_SID, "change-me", port=port) as simulator:
        receipt = twilio_messages.send(placeholder, envelope())

    assert [m.sid for m in simulator.messages()] == [receipt.provider_id]


def test_an_explicit_api_base_or_real_credentials_are_left_alone() -> None:
    explicit = settings_for(
        twilio_account_sid=rest.PLACEHOLDER_ACCOUNT_SID, twilio_api_base="http://127.0.0.1:4010"
    )
    assert rest.messaging_settings(explicit) is explicit
    real = settings_for(twilio_api_base="")
    assert rest.rest_enabled(real)
    assert rest.messaging_settings(real) is real
