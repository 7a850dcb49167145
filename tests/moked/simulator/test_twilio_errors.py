"""The simulator fails the way Twilio fails: 11200, 11205, 12100, 12300, 13420.

A small loopback server answers what a broken deployment would; the last test breaks the
real stack (a greeting file gone after the TwiML named it: nginx 404s, Twilio logs 11200).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from moked.greetings import synthesize_mp3
from moked.simulator import audio
from moked.simulator.audio import Voicemail
from moked.simulator.call import AnsweredBy, Caller, Simulator, SimulatorConfig
from moked.simulator.inspector import Exchange, Inspector
from moked.simulator.media_server import MediaServer
from tests.harness import StackUnderTest

ACCOUNT = "AC" + "3" * 32
TOKEN = "fake-token"
VOICE = Voicemail(wav=b"w", mp3=b"m", seconds=2.0, label="test")
GOOD_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Play>/audio.mp3</Play>'
    '<Record action="/record" recordingStatusCallback="/status" maxLength="30" timeout="5"/>'
    "</Response>"
)
THANKS = '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Thanks</Say><Hangup/></Response>'

Route = tuple[int, str | None, bytes, float]


class FakeApp:
    """Routes path → (status, content type, body, delay); records what was asked."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {
            "/voice": (200, "text/xml", GOOD_TWIML.encode(), 0.0),
            "/audio.mp3": (200, "audio/mpeg", b"ID3" + b"\x00" * 64, 0.0),
            "/record": (200, "text/xml; charset=utf-8", THANKS.encode(), 0.0),
            "/status": (200, "text/plain", b"OK", 0.0),
            "/fallback": (200, "text/xml", THANKS.encode(), 0.0),
        }
        self.hits: list[str] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                path = self.path.split("?")[0]
                app.hits.append(path)
                status, content_type, body, delay = app.routes.get(
                    path, (404, "text/plain", b"nope", 0.0)
                )
                time.sleep(delay)
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                if status in (301, 302):
                    self.send_header("Location", "https://old.example.replit.app/voice")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError):  # the simulated Twilio gave up
                    self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def app() -> Iterator[FakeApp]:
    fake = FakeApp()
    yield fake
    fake.close()


def call(app: FakeApp, caller: Caller | None = None, **config: object):  # type: ignore[no-untyped-def]
    settings = SimulatorConfig(
        public_base=app.base,
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        voice_path="/voice",
        status_callback_path="/status",
        timeout=float(config.pop("timeout", 2.0)),  # type: ignore[arg-type]
        **config,  # type: ignore[arg-type]
    )
    with MediaServer(ACCOUNT, TOKEN) as media:
        return Simulator(settings, media).place_call("+97235550123", caller=caller)


def codes(result) -> list[int]:  # type: ignore[no-untyped-def]
    return [int(e.code) for e in result.failures]


def test_a_correct_app_gives_no_error(app: FakeApp):
    result = call(app, Caller(voicemail=VOICE))

    assert result.ok, result.errors
    assert result.answered_by is AnsweredBy.VOICE_URL
    assert app.hits[:3] == ["/status", "/voice", "/status"]
    assert "/record" in app.hits and result.said == ["Thanks"]


@pytest.mark.parametrize(
    ("content_type", "code"),
    [
        ("text/html; charset=utf-8", 12300),
        ("application/json", 12300),
        ("audio/mpeg", 12300),
        (None, 11200),
    ],
)
def test_twiml_with_the_wrong_content_type(app: FakeApp, content_type, code):  # type: ignore[no-untyped-def]
    app.routes["/voice"] = (200, content_type, GOOD_TWIML.encode(), 0.0)

    result = call(app)

    assert codes(result) == [code]
    assert result.answered_by is AnsweredBy.NOBODY
    assert "/audio.mp3" not in app.hits  # nothing of that TwiML was executed


def test_text_html_is_tolerated_only_when_not_strict(app: FakeApp):
    app.routes["/voice"] = (200, "text/html", GOOD_TWIML.encode(), 0.0)

    assert call(app, strict_content_type=False).ok


@pytest.mark.parametrize("status", [404, 500, 502, 301, 302])
def test_non_2xx_and_redirects_are_11200(app: FakeApp, status: int):
    app.routes["/voice"] = (status, "text/plain", b"", 0.0)

    result = call(app)

    assert codes(result) == [11200]
    assert "https://old.example.replit.app/voice" not in app.hits  # never followed


def test_slower_than_the_timeout_is_11200(app: FakeApp):
    app.routes["/voice"] = (200, "text/xml", GOOD_TWIML.encode(), 1.5)

    result = call(app, timeout=0.5)

    assert codes(result) == [11200]


def test_nobody_listening_is_11205():
    dead = FakeApp()
    dead.close()  # the port is free again: connection refused

    result = call(dead)

    assert set(codes(result)) == {11205}  # the voice URL and both status callbacks
    assert result.answered_by is AnsweredBy.NOBODY


@pytest.mark.parametrize(
    "body",
    [
        b"\n" + GOOD_TWIML.encode(),
        b"<Response><Say>Tom & Jerry</Say></Response>",
        b"<Response><Say>cut",
        b'{"twiml": "<Response/>"}',
        b"<html><body>Application error</body></html>",
    ],
)
def test_twiml_that_does_not_parse_is_12100(app: FakeApp, body: bytes):
    app.routes["/voice"] = (200, "text/xml", body, 0.0)

    assert codes(call(app)) == [12100]


def test_play_of_something_not_audio_is_13420_and_the_call_goes_on(app: FakeApp):
    app.routes["/audio.mp3"] = (200, "text/html; charset=utf-8", b"<html>SPA</html>", 0.0)

    result = call(app, Caller(voicemail=VOICE))

    assert codes(result) == [13420]
    assert result.recording_status == "completed"  # Twilio skips the <Play>, not the call


def test_play_of_a_missing_file_is_11200(app: FakeApp):
    app.routes["/audio.mp3"] = (404, "text/html", b"not found", 0.0)

    assert codes(call(app, Caller(voicemail=VOICE))) == [11200]


def test_record_action_failing_is_reported(app: FakeApp):
    app.routes["/record"] = (500, "text/plain", b"boom", 0.0)

    result = call(app, Caller(voicemail=VOICE))

    assert codes(result) == [11200]
    assert result.said == []  # the call ended with Twilio's application error


def test_voice_fallback_url_answers_after_an_error(app: FakeApp):
    app.routes["/voice"] = (503, "text/plain", b"", 0.0)

    result = call(app, voice_fallback_url=app.base + "/fallback")

    assert result.answered_by is AnsweredBy.VOICE_FALLBACK_URL
    assert codes(result) == [11200]  # the primary's failure is still logged


def test_unknown_verb_is_a_schema_warning_not_a_failure(app: FakeApp):
    app.routes["/voice"] = (200, "text/xml", b"<Response><Dance/><Hangup/></Response>", 0.0)

    result = call(app)

    assert result.ok
    assert [int(e.code) for e in result.errors] == [12200]


def test_greeting_gone_from_the_real_stack_is_11200(stack: StackUnderTest, make_business):
    """The TwiML names a greeting that vanished before Twilio fetched it: nginx 404s."""
    business = make_business(greeting_mp3=synthesize_mp3("gone soon", "en"))
    path = Path(stack.settings.greetings_dir) / business.greeting_file
    hidden = path.with_name(path.name + ".hidden")
    inspector = Inspector()

    def hide_greeting(exchange: Exchange) -> None:
        if exchange.name == "incoming_call" and path.exists():
            path.rename(hidden)

    inspector.subscribe(hide_greeting)
    settings = stack.settings
    config = SimulatorConfig(
        public_base=settings.public_base,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
    )
    try:
        with MediaServer(config.account_sid, config.auth_token) as media:
            result = Simulator(config, media, inspector).place_call(
                business.numbers[0].e164, caller=Caller(voicemail=VOICE)
            )
    finally:
        hidden.rename(path)

    assert codes(result) == [11200]
    assert result.failures[0].url.endswith(business.greeting_file)


def test_a_voicemail_longer_than_max_length_is_cut(app: FakeApp):
    app.routes["/voice"] = (
        200,
        "text/xml",
        GOOD_TWIML.replace('maxLength="30"', 'maxLength="1"').encode(),
        0.0,
    )
    long_message = audio.speak("This message goes on for longer than one second.", "en")

    result = call(app, Caller(voicemail=long_message))

    assert result.ok, result.errors
    assert result.recording_seconds == pytest.approx(1.0, abs=0.05)
