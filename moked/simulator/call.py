"""One inbound call, played as Twilio plays it: webhooks, TwiML, media and callbacks.

The simulator asks the voice URL for TwiML and executes it verb by verb, the way Twilio's
call engine does, failing the way Twilio fails:
- 11200: a TwiML or `<Play>` URL answered non-2xx, a redirect, nothing within 15 s, or
  no Content-Type; 11205: the connection failed;
- 12300: TwiML came with a Content-Type Twilio does not parse as TwiML;
- 13420: `<Play>` fetched something that is not audio;
- 12100: the TwiML is not well-formed (leading whitespace, unescaped `&`, not <Response>).
Then, like Twilio, it tries the VoiceFallbackUrl (with ErrorCode and ErrorUrl) if one is set.

`<Record>` is played by a caller following a script: speak a voicemail then press the
finishOnKey (or hang up, or fall silent), say nothing (Twilio reports the recording
`absent` and runs the next verb, without an action request) or hang up before the beep
(no recording at all). The recording's media is published to a MediaHost only when the
recording status callback says `completed`: the action request comes before the file.

Time: the call has its own clock (greeting length, pauses, speech), which sets CallDuration
and the Timestamps; `time_scale` says how much of it to really wait (0 = none, 1 = real time).
"""

from __future__ import annotations

import datetime as dt
import enum
import io
import logging
import random
import threading
import time
import uuid
import wave
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin, urlsplit

import requests
from mutagen import MutagenError
from mutagen.mp3 import MP3

from moked.simulator.audio import SILENCE, Voicemail, cut, silence, wav_seconds
from moked.simulator.errors import TwilioError, TwilioErrorCode
from moked.simulator.inspector import Exchange, Inspector
from moked.simulator.media_server import MediaHost
from moked.simulator.params import CallIdentity, new_call_sid, new_recording_sid
from moked.twilio.signature import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

TWILIO_TIMEOUT_SECONDS = 15.0
"""Twilio waits this long for a webhook's whole answer."""
TWILIO_CONNECT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "TwilioProxy/1.1"
TWIML_TYPES = frozenset({"text/xml", "application/xml"})
"""What Moked promises (and Twilio parses). Twilio also tolerates text/html."""
LENIENT_TWIML_TYPES = TWIML_TYPES | {"text/html"}
AUDIO_TYPES = frozenset(
    {
        "audio/mpeg",
        "audio/mp3",
        "audio/wav",
        "audio/wave",
        "audio/x-wav",
        "audio/aiff",
        "audio/x-aifc",
        "audio/x-aiff",
        "audio/x-gsm",
        "audio/gsm",
        "audio/ulaw",
        "audio/basic",
    }
)
"""The media types `<Play>` accepts (Twilio's list)."""
SAY_CHARS_PER_SECOND = 14.0
UNKNOWN_AUDIO_SECONDS = 3.0
DEFAULT_FINISH_ON_KEY = "1234567890*#"
KNOWN_UNSIMULATED_VERBS = frozenset(
    {"Gather", "Dial", "Enqueue", "Leave", "Reject", "Sms", "Message", "Connect", "Pay", "Start"}
)


class Finish(enum.StrEnum):
    """How the caller ends the recording."""

    KEY = "key"
    """Presses the finishOnKey (Digits=*)."""
    HANGUP = "hangup"
    """Hangs up (Digits=hangup); Twilio requests the action but runs none of its TwiML."""
    SILENCE = "silence"
    """Stops talking; Twilio ends the recording after `timeout` seconds of silence."""


class AnsweredBy(enum.StrEnum):
    VOICE_URL = "voice_url"
    VOICE_FALLBACK_URL = "voice_fallback_url"
    NOBODY = "nobody"
    """Both failed: Twilio told the caller "an application error has occurred"."""


@dataclass(frozen=True, slots=True)
class Caller:
    """What the person calling does."""

    voicemail: Voicemail = SILENCE
    finish: Finish = Finish.KEY
    hangup_before_beep: bool = False


@dataclass(frozen=True)
class SimulatorConfig:
    """Twilio's side of the number: its URLs, the account, and how callbacks are delivered."""

    public_base: str
    account_sid: str
    auth_token: str
    voice_path: str = "/webhook/incoming_call"
    status_callback_path: str | None = "/webhook/call_status"
    voice_fallback_url: str | None = None
    status_callback_events: tuple[str, ...] = ("ringing", "in-progress", "completed")
    """A number's plain StatusCallback sends only `completed`; with statusCallbackEvent
    set (as here) Twilio sends each of these."""
    time_scale: float = 0.0
    timeout: float = TWILIO_TIMEOUT_SECONDS
    connect_timeout: float = TWILIO_CONNECT_TIMEOUT_SECONDS
    duplicate_callbacks: bool = False
    shuffle_callbacks: bool = False
    strict_content_type: bool = True
    """Report 12300 for text/html TwiML too: Moked promises text/xml."""
    caller_name: str | None = "DANA COHEN"
    seed: int | None = None

    @property
    def voice_url(self) -> str:
        return self.public_base.rstrip("/") + self.voice_path

    @property
    def status_callback_url(self) -> str | None:
        if self.status_callback_path is None:
            return None
        return self.public_base.rstrip("/") + self.status_callback_path


@dataclass(slots=True)
class Document:
    """A TwiML document Twilio fetched: where from, what it said."""

    url: str
    status: int | None
    content_type: str | None
    body: bytes
    root: ET.Element | None


@dataclass
class CallResult:
    call_sid: str
    from_number: str
    to_number: str
    answered_by: AnsweredBy = AnsweredBy.NOBODY
    documents: list[Document] = field(default_factory=list)
    played: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    recording_sid: str | None = None
    recording_status: str | None = None
    """"completed", "absent" or None (no recording was started)."""
    recording_url: str | None = None
    recording_seconds: float = 0.0
    duration: float = 0.0
    """The call's own clock when it ended (CallDuration is its ceiling)."""
    hung_up_at: dt.datetime | None = None
    """Wall-clock time the call ended (the start of the hang-up → transcript lag)."""
    errors: list[TwilioError] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[TwilioError]:
        return [e for e in self.errors if not e.is_warning]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_document(self) -> Document | None:
        return self.documents[0] if self.documents else None


@dataclass(slots=True)
class _Callback:
    name: str
    url: str
    params: dict[str, str]
    idempotency_token: str


class _CallEnded(Exception):
    """The caller hung up or Twilio ended the call; no more TwiML runs."""


class Simulator:
    """Places simulated calls; thread-safe (one HTTP session per thread)."""

    def __init__(
        self, config: SimulatorConfig, media: MediaHost, inspector: Inspector | None = None
    ) -> None:
        self.config = config
        self.media = media
        self.inspector = inspector or Inspector()
        self._local = threading.local()
        self._rng = random.Random(config.seed)
        self._rng_lock = threading.Lock()

    # --- HTTP ---------------------------------------------------------------------------

    @property
    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update({"User-Agent": USER_AGENT})
            self._local.session = session
        return session

    def _signed_request(
        self,
        run: _Run,
        kind: str,
        name: str,
        method: str,
        url: str,
        params: Mapping[str, str],
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[requests.Response | None, float, TwilioError | None]:
        """POST (or GET) a webhook as Twilio does: signed over the full URL and the params."""
        headers = {"X-Home-Region": "us1", **(extra_headers or {})}
        data: dict[str, str] | None = dict(params)
        if method == "GET":
            joiner = "&" if urlsplit(url).query else "?"
            url = url + joiner + urlencode(params)
            data = None
        headers[SIGNATURE_HEADER] = sign(self.config.auth_token, url, data or {})
        return self._http(run, kind, name, method, url, data, headers)

    def _http(
        self,
        run: _Run,
        kind: str,
        name: str,
        method: str,
        url: str,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str],
    ) -> tuple[requests.Response | None, float, TwilioError | None]:
        started = time.perf_counter()
        offset = started - run.t0
        response: requests.Response | None = None
        error: TwilioError | None = None
        try:
            response = self._session.request(
                method,
                url,
                data=data,
                headers=dict(headers),
                timeout=(self.config.connect_timeout, self.config.timeout),
                allow_redirects=False,
            )
            _ = response.content
        except requests.Timeout:
            error = TwilioError(
                TwilioErrorCode.HTTP_RETRIEVAL_FAILURE,
                url,
                f"no answer within {self.config.timeout:.0f} s",
            )
        except requests.RequestException as exc:
            error = TwilioError(
                TwilioErrorCode.HTTP_CONNECTION_FAILURE, url, f"{type(exc).__name__}: {exc}"
            )
        elapsed = time.perf_counter() - started
        if response is not None:
            if elapsed > self.config.timeout:
                error = TwilioError(
                    TwilioErrorCode.HTTP_RETRIEVAL_FAILURE, url, f"answered after {elapsed:.1f} s"
                )
            elif 300 <= response.status_code < 400:
                where = response.headers.get("Location", "?")
                error = TwilioError(
                    TwilioErrorCode.HTTP_RETRIEVAL_FAILURE,
                    url,
                    f"redirect {response.status_code} to {where}",
                )
            elif not 200 <= response.status_code < 300:
                error = TwilioError(
                    TwilioErrorCode.HTTP_RETRIEVAL_FAILURE, url, f"HTTP {response.status_code}"
                )
        return (
            response,
            elapsed,
            self._log(run, kind, name, method, url, offset, elapsed, response, error, data),
        )

    def _log(
        self,
        run: _Run,
        kind: str,
        name: str,
        method: str,
        url: str,
        offset: float,
        elapsed: float,
        response: requests.Response | None,
        error: TwilioError | None,
        data: Mapping[str, str] | None,
    ) -> TwilioError | None:
        self.inspector.record(
            Exchange(
                call_sid=run.identity.call_sid,
                kind=kind,
                name=name,
                method=method,
                url=url,
                started=offset,
                elapsed=elapsed,
                status=response.status_code if response is not None else None,
                content_type=response.headers.get("Content-Type") if response else None,
                body_bytes=len(response.content) if response is not None else 0,
                error=error,
                params=dict(data or {}),
            )
        )
        if error is not None:
            run.result.errors.append(error)
        return error

    def _fail(self, run: _Run, code: TwilioErrorCode, url: str, message: str) -> TwilioError:
        error = TwilioError(code, url, message)
        run.result.errors.append(error)
        # The exchange was logged already; the Debugger's entry is this error.
        self.inspector.note(f"! {error}")
        return error

    # --- TwiML --------------------------------------------------------------------------

    def _fetch_twiml(
        self, run: _Run, name: str, method: str, url: str, params: Mapping[str, str]
    ) -> tuple[Document | None, TwilioError | None]:
        response, _, error = self._signed_request(run, "webhook", name, method, url, params)
        if response is None or error is not None:
            return None, error
        content_type = response.headers.get("Content-Type")
        document = Document(url, response.status_code, content_type, response.content, None)
        run.result.documents.append(document)
        if not content_type:
            return document, self._fail(
                run, TwilioErrorCode.HTTP_RETRIEVAL_FAILURE, url, "no Content-Type"
            )
        mimetype = content_type.split(";")[0].strip().lower()
        allowed = TWIML_TYPES if self.config.strict_content_type else LENIENT_TWIML_TYPES
        if mimetype not in allowed:
            return document, self._fail(
                run,
                TwilioErrorCode.INVALID_CONTENT_TYPE,
                url,
                f"Content-Type {mimetype} is not TwiML",
            )
        body = response.content
        if body[:1].isspace() or body.startswith(b"\xef\xbb\xbf"):
            return document, self._fail(
                run, TwilioErrorCode.DOCUMENT_PARSE_FAILURE, url, "whitespace before the XML"
            )
        try:
            # The simulator parses what the server under test answers, like Twilio does.
            root = ET.fromstring(body)  # noqa: S314
        except ET.ParseError as exc:
            return document, self._fail(
                run, TwilioErrorCode.DOCUMENT_PARSE_FAILURE, url, f"not XML: {exc}"
            )
        if root.tag != "Response":
            return document, self._fail(
                run,
                TwilioErrorCode.DOCUMENT_PARSE_FAILURE,
                url,
                f"root element is <{root.tag}>, not <Response>",
            )
        document.root = root
        return document, None

    def _play(self, run: _Run, url: str, loop: int) -> None:
        response, _, error = self._http(run, "media", "Play", "GET", url, None, {})
        if error is not None or response is None:
            self.inspector.note(f"<Play> {url} skipped")
            return
        mimetype = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if mimetype not in AUDIO_TYPES:
            self._fail(
                run,
                TwilioErrorCode.PLAY_INVALID_CONTENT_TYPE,
                url,
                f"Content-Type {mimetype or 'missing'} is not audio",
            )
            return
        if not response.content:
            self._fail(run, TwilioErrorCode.PLAY_INVALID_CONTENT_TYPE, url, "empty audio file")
            return
        run.result.played.append(url)
        seconds = _audio_seconds(response.content, mimetype)
        run.advance(seconds * max(1, loop))
        self.inspector.note(f"caller hears {url.rsplit('/', 1)[-1]} ({seconds:.1f} s)")

    def _execute(self, run: _Run, document: Document) -> None:
        """Run a document's verbs; a verb that moves to another document recurses."""
        assert document.root is not None
        for verb in document.root:
            tag = verb.tag
            if tag == "Play":
                url = urljoin(document.url, (verb.text or "").strip())
                self._play(run, url, int(verb.get("loop", "1") or 1))
            elif tag == "Say":
                text = (verb.text or "").strip()
                run.result.said.append(text)
                run.advance(len(text) / SAY_CHARS_PER_SECOND)
                self.inspector.note(f"caller hears <Say language={verb.get('language')}> {text}")
            elif tag == "Pause":
                run.advance(float(verb.get("length", "1") or 1))
            elif tag == "Record":
                if run.caller.hangup_before_beep:
                    raise self._hang_up(run, "the caller hung up before the beep")
                next_document = self._record(run, document, verb)
                if next_document is not None:
                    self._execute(run, next_document)
                    return
            elif tag == "Hangup":
                raise self._hang_up(run, "<Hangup>")
            elif tag == "Redirect":
                url = urljoin(document.url, (verb.text or "").strip())
                method = (verb.get("method") or "POST").upper()
                params = run.identity.base("in-progress")
                next_document, error = self._fetch_twiml(run, "Redirect", method, url, params)
                if error is not None or next_document is None:
                    raise self._hang_up(run, "an application error has occurred")
                self._execute(run, next_document)
                return
            elif tag in KNOWN_UNSIMULATED_VERBS:
                self.inspector.note(f"<{tag}> is not simulated; skipped")
            else:
                self._fail(
                    run,
                    TwilioErrorCode.SCHEMA_VALIDATION_WARNING,
                    document.url,
                    f"unknown verb <{tag}>",
                )
        raise self._hang_up(run, "end of TwiML")

    def _record(self, run: _Run, document: Document, verb: ET.Element) -> Document | None:
        """Play the caller's part of `<Record>`; the next document, if the action gave one."""
        attrs = verb.attrib
        action = urljoin(document.url, attrs.get("action") or document.url)
        method = (attrs.get("method") or "POST").upper()
        timeout = float(attrs.get("timeout", "5") or 5)
        max_length = float(attrs.get("maxLength", "3600") or 3600)
        finish_on_key = attrs.get("finishOnKey", DEFAULT_FINISH_ON_KEY)
        trim = attrs.get("trim", "trim-silence") != "do-not-trim"
        status_url = attrs.get("recordingStatusCallback")
        status_method = (attrs.get("recordingStatusCallbackMethod") or "POST").upper()
        events = set((attrs.get("recordingStatusCallbackEvent") or "completed").split())
        if attrs.get("playBeep", "true") != "false":
            self.inspector.note("beep")
        recording_sid = new_recording_sid()
        recording_url = self.media.url_for(recording_sid)
        started = run.now()
        run.result.recording_sid = recording_sid
        if status_url and "in-progress" in events:
            self._callback(
                run,
                "recording_status",
                urljoin(document.url, status_url),
                run.identity.recording_status(
                    "in-progress", recording_sid, recording_url, 0, started
                ),
                status_method,
            )

        voicemail = run.caller.voicemail
        if voicemail.is_silent:
            run.advance(timeout)
            self.inspector.note(f"caller says nothing; silence for {timeout:.0f} s")
            if trim:
                # Twilio trims the silence away: nothing to keep, no action request,
                # the recording is reported absent and the next verb runs.
                run.result.recording_status = "absent"
                if status_url and "absent" in events:
                    self._callback(
                        run,
                        "recording_status",
                        urljoin(document.url, status_url),
                        run.identity.recording_status(
                            "absent", recording_sid, None, 0, started, error_code="16102"
                        ),
                        status_method,
                    )
                return None
            voicemail = silence(timeout)
            digits: str | None = None
        else:
            spoken = min(voicemail.seconds, max_length)
            run.advance(spoken)
            self.inspector.note(f"caller speaks {spoken:.1f} s ({voicemail.label})")
            if voicemail.seconds >= max_length:
                digits = None  # cut at maxLength
            elif run.caller.finish is Finish.KEY and finish_on_key:
                digits = finish_on_key[0]
                self.inspector.note(f"caller presses {digits}")
            elif run.caller.finish is Finish.SILENCE:
                run.advance(timeout)
                digits = None
            else:
                digits = "hangup"
        hung_up = digits == "hangup"
        voicemail = cut(voicemail, max_length)
        seconds = voicemail.seconds
        run.result.recording_url = recording_url
        run.result.recording_seconds = seconds
        if hung_up:
            run.end()
        params = run.identity.record_action(
            "completed" if hung_up else "in-progress", recording_sid, recording_url, seconds, digits
        )
        next_document, error = self._fetch_twiml(run, "handle_recording", method, action, params)

        # The file exists only now; Twilio then tells the recordingStatusCallback.
        self.media.publish(recording_sid, voicemail)
        run.result.recording_status = "completed"
        if status_url and "completed" in events:
            self._callback(
                run,
                "recording_status",
                urljoin(document.url, status_url),
                run.identity.recording_status(
                    "completed", recording_sid, recording_url, seconds, started
                ),
                status_method,
            )
        if hung_up:
            raise _CallEnded("the caller hung up")
        if error is not None or next_document is None:
            raise self._hang_up(run, "an application error has occurred")
        return next_document

    # --- callbacks ----------------------------------------------------------------------

    def _callback(
        self, run: _Run, name: str, url: str, params: dict[str, str], method: str = "POST"
    ) -> None:
        callback = _Callback(name, url, params, uuid.uuid4().hex)
        copies = [callback, callback] if self.config.duplicate_callbacks else [callback]
        if self.config.shuffle_callbacks:
            run.held.extend(copies)
            return
        for copy in copies:
            self._send_callback(run, copy, method)

    def _send_callback(self, run: _Run, callback: _Callback, method: str = "POST") -> None:
        self._signed_request(
            run,
            "callback",
            callback.name,
            method,
            callback.url,
            callback.params,
            {"I-Twilio-Idempotency-Token": callback.idempotency_token},
        )

    def _status(self, run: _Run, call_status: str) -> None:
        url = self.config.status_callback_url
        if url is None or call_status not in self.config.status_callback_events:
            return
        duration = run.clock if call_status == "completed" else None
        params = run.identity.status_callback(call_status, run.sequence, run.now(), duration)
        run.sequence += 1
        self._callback(run, "call_status", url, params)

    def _hang_up(self, run: _Run, why: str) -> _CallEnded:
        run.end()
        self.inspector.note(f"call ends: {why}")
        return _CallEnded(why)

    # --- the call -----------------------------------------------------------------------

    def place_call(
        self, to: str, from_: str = "+972545550100", caller: Caller | None = None
    ) -> CallResult:
        identity = CallIdentity(
            call_sid=new_call_sid(),
            account_sid=self.config.account_sid,
            from_number=from_,
            to_number=to,
            caller_name=self.config.caller_name,
        )
        run = _Run(identity, caller or Caller(), self.config.time_scale)
        result = run.result
        self.inspector.note(f"{identity.call_sid}: {from_} calls {to}")
        self._status(run, "ringing")
        document, error = self._fetch_twiml(
            run, "incoming_call", "POST", self.config.voice_url, identity.base("ringing")
        )
        if error is not None and self.config.voice_fallback_url:
            params = identity.base("ringing")
            params.update({"ErrorCode": str(int(error.code)), "ErrorUrl": error.url})
            document, fallback_error = self._fetch_twiml(
                run, "voice_fallback", "POST", self.config.voice_fallback_url, params
            )
            if fallback_error is None:
                result.answered_by = AnsweredBy.VOICE_FALLBACK_URL
        elif error is None:
            result.answered_by = AnsweredBy.VOICE_URL
        try:
            if result.answered_by is AnsweredBy.NOBODY or document is None:
                self.inspector.note('caller hears "an application error has occurred"')
                run.advance(3)
                raise self._hang_up(run, "application error")
            self._status(run, "in-progress")
            self._execute(run, document)
        except _CallEnded:
            pass
        run.end()
        result.duration = run.clock
        self._status(run, "completed")
        if run.held:
            with self._rng_lock:
                self._rng.shuffle(run.held)
            for callback in run.held:
                self._send_callback(run, callback)
        return result


class _Run:
    """The state of one call in progress."""

    def __init__(self, identity: CallIdentity, caller: Caller, time_scale: float) -> None:
        self.identity = identity
        self.caller = caller
        self.time_scale = time_scale
        self.t0 = time.perf_counter()
        self.started_at = dt.datetime.now(dt.UTC)
        self.clock = 0.0
        self.sequence = 0
        self.ended = False
        self.held: list[_Callback] = []
        self.result = CallResult(
            call_sid=identity.call_sid,
            from_number=identity.from_number,
            to_number=identity.to_number,
        )

    def advance(self, seconds: float) -> None:
        if self.ended or seconds <= 0:
            return
        self.clock += seconds
        if self.time_scale > 0:
            time.sleep(seconds * self.time_scale)

    def now(self) -> dt.datetime:
        return self.started_at + dt.timedelta(seconds=self.clock)

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.result.hung_up_at = dt.datetime.now(dt.UTC)


def _audio_seconds(data: bytes, mimetype: str) -> float:
    """How long the caller listens to a `<Play>` file (a guess when it cannot be read)."""
    try:
        if mimetype in ("audio/mpeg", "audio/mp3"):
            info = MP3(io.BytesIO(data)).info  # type: ignore[no-untyped-call]
            return float(info.length) if info is not None else UNKNOWN_AUDIO_SECONDS
        if "wav" in mimetype or "wave" in mimetype:
            return wav_seconds(data)
    except (MutagenError, wave.Error, EOFError, ValueError) as exc:
        log.debug("could not read the length of a <Play> file: %s", exc)
    return UNKNOWN_AUDIO_SECONDS
