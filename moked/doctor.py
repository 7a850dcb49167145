"""`moked doctor`: the user's production checklist as one command against PUBLIC_HOST.

Each check plays Twilio's part over the public origin, exactly as Twilio would:

- tls            https, a certificate that verifies and is not about to expire
- app            /healthz through nginx answers 200 (the webhooks service is up)
- greetings      every business greeting: 200, audio/mpeg, MP3 bytes, no redirect
- incoming_call  a signed POST: 200 text/xml TwiML that parses, from the app, under 5 s
- call_status    a signed POST: 200 text/plain
- fallback       the VoiceFallbackUrl nginx serves: 200 text/xml TwiML that parses
- numbers        every Twilio number of every business points at this host
- alerts         no 11200/12300 in Twilio's Monitor Alerts API over the last hours
- counter        no 11200/12300 in moked_twilio_errors_total (the Debugger webhook)
- transcription  Hebrew businesses get a Hebrew model or OpenAI, not Whisper base

A result is pass, warn, fail or skip; any fail makes the exit status non-zero. Against a
development stack (http) the https checks are warnings, not failures.

The probe call uses one fixed CallSid (`DOCTOR_CALL_SID`), so repeated runs update one
call row instead of adding rows to the CRM.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import re
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from moked.greetings import greeting_url
from moked.settings import Settings
from moked.statuses import Endpoint
from moked.twilio.signature import SIGNATURE_HEADER, sign
from moked.twilio.twiml import TWIML_CONTENT_TYPE

WEBHOOK_BUDGET_SECONDS = 5.0
"""The user's limit for a webhook answer (Twilio's own is 15 s)."""
CERT_WARN_DAYS = 14
HTTP_TIMEOUT_SECONDS = 10.0
WATCHED_ERROR_CODES = ("11200", "12300")
"""HTTP retrieval failure and invalid Content-Type: the two the user's console showed."""
FALLBACK_HEADER = "X-Moked-Fallback"
"""nginx sets it on every answer it gives itself instead of the app."""
DOCTOR_CALL_SID = "CA" + hashlib.sha256(b"moked doctor probe").hexdigest()[:32]
DOCTOR_FROM = "+15005550006"
"""Twilio's documented valid test number."""
USER_AGENT = "TwilioProxy/1.1 (moked doctor)"
CHECK_NAMES = (
    "tls",
    "app",
    "greetings",
    "incoming_call",
    "call_status",
    "fallback",
    "numbers",
    "alerts",
    "counter",
    "transcription",
)
"""Every check, in the order they run."""


class Status(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a check status, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(slots=True)
class CheckResult:
    name: str
    status: Status
    summary: str
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(slots=True)
class DoctorReport:
    public_host: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status is not Status.FAIL for r in self.results)

    def result(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "public_host": self.public_host,
            "ok": self.ok,
            "checks": [{**asdict(r), "status": r.status.value} for r in self.results],
        }


@dataclass(frozen=True, slots=True)
class BusinessProbe:
    """What doctor needs of a business: its name, numbers and greeting file."""

    name: str
    numbers: tuple[str, ...]
    greeting_file: str | None
    language: str | None = None
    """BCP-47 (he-IL); None when unknown."""


class CheckFailed(Exception):
    """Raised inside a check: becomes a fail with this message."""


@dataclass
class Doctor:
    settings: Settings
    businesses: Callable[[], Sequence[BusinessProbe]] = field(default=lambda: load_businesses())
    twilio_client: Callable[[], Any] | None = None
    session: requests.Session = field(default_factory=requests.Session)
    alerts_hours: float = 24.0

    def __post_init__(self) -> None:
        self.session.headers["User-Agent"] = USER_AGENT
        self._businesses: Sequence[BusinessProbe] | None = None

    # --- plumbing ----------------------------------------------------------------------

    @property
    def is_https(self) -> bool:
        return urlsplit(self.settings.public_base).scheme == "https"

    def _soft(self) -> Status:
        """How an https-only problem counts: fail in production, warn on a dev stack."""
        return Status.FAIL if self.settings.is_production else Status.WARN

    def _business_list(self) -> Sequence[BusinessProbe]:
        if self._businesses is None:
            self._businesses = list(self.businesses())
        return self._businesses

    def _no_twilio_credentials(self, name: str) -> CheckResult | None:
        """A development stack with the placeholder account cannot ask Twilio anything."""
        if self.twilio_client is not None or self.settings.twilio_api_base:
            return None
        placeholder = not self.settings.twilio_account_sid.removeprefix("AC").strip("0")
        if placeholder or not self.settings.twilio_auth_token.get_secret_value():
            return CheckResult(
                name, self._soft(), "no Twilio credentials (TWILIO_ACCOUNT_SID/AUTH_TOKEN)"
            )
        return None

    def _client(self) -> Any:
        if self.twilio_client is not None:
            return self.twilio_client()
        from moked.twilio.routed import make_routed_client

        return make_routed_client(self.settings)

    def get(self, url: str) -> requests.Response:
        return self.session.get(url, timeout=HTTP_TIMEOUT_SECONDS, allow_redirects=False)

    def post_signed(self, path: str, params: Mapping[str, str]) -> requests.Response:
        url = self.settings.public_url(path)
        token = self.settings.require_auth_token()
        headers = {SIGNATURE_HEADER: sign(token, url, dict(params))}
        return self.session.post(
            url,
            data=dict(params),
            headers=headers,
            timeout=HTTP_TIMEOUT_SECONDS,
            allow_redirects=False,
        )

    # --- checks ------------------------------------------------------------------------

    def check_tls(self) -> CheckResult:
        base = self.settings.public_base
        if not self.is_https:
            return CheckResult(
                "tls", self._soft(), f"PUBLIC_HOST is {base}: Twilio needs https on a live domain"
            )
        parts = urlsplit(base)
        host, port = parts.hostname or "", parts.port or 443
        try:
            expires = certificate_expiry(host, port)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise CheckFailed(f"certificate of {host}:{port} does not verify: {exc}") from exc
        except OSError as exc:
            raise CheckFailed(f"cannot connect to {host}:{port}: {exc}") from exc
        days = (expires - dt.datetime.now(dt.UTC)).days
        summary = f"{host}: certificate valid until {expires:%Y-%m-%d} ({days} days)"
        if days < CERT_WARN_DAYS:
            return CheckResult("tls", Status.WARN, summary + ": renew it now")
        return CheckResult("tls", Status.PASS, summary)

    def check_app(self) -> CheckResult:
        url = self.settings.public_url("/healthz")
        try:
            response = self.get(url)
        except requests.RequestException as exc:
            raise CheckFailed(f"{url}: {describe_error(exc)}") from exc
        if response.status_code != 200:
            raise CheckFailed(
                f"{url} answered {response.status_code}: the webhooks service behind nginx "
                "is down or failing"
            )
        return CheckResult("app", Status.PASS, "the webhooks service answers behind nginx")

    def check_greetings(self) -> CheckResult:
        businesses = self._business_list()
        if not businesses:
            return CheckResult("greetings", Status.WARN, "no businesses in the database")
        problems, spoken, good = [], [], 0
        for business in businesses:
            if not business.greeting_file:
                spoken.append(business.name)
                continue
            url = greeting_url(self.settings.public_base, business.greeting_file)
            try:
                check_audio_url(self.session, url)
                good += 1
            except CheckFailed as exc:
                problems.append(f"{business.name}: {exc}")
        details = [f"{name}: no MP3 greeting, callers hear <Say> text" for name in spoken]
        if problems:
            return CheckResult(
                "greetings",
                Status.FAIL,
                f"{len(problems)} greeting(s) broken",
                problems + details,
            )
        return CheckResult(
            "greetings", Status.PASS, f"{good} greeting(s) are 200 audio/mpeg", details
        )

    def _probe_number(self) -> str:
        for business in self._business_list():
            if business.numbers:
                return business.numbers[0]
        return "+15005550006"

    def check_incoming_call(self) -> CheckResult:
        path = Endpoint.INCOMING_CALL.path
        params = {
            "AccountSid": self.settings.twilio_account_sid,
            "CallSid": DOCTOR_CALL_SID,
            "From": DOCTOR_FROM,
            "To": self._probe_number(),
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        started = time.perf_counter()
        try:
            response = self.post_signed(path, params)
        except requests.RequestException as exc:
            raise CheckFailed(f"{path}: {describe_error(exc)}") from exc
        elapsed = time.perf_counter() - started
        root = expect_twiml(response, path)
        if response.headers.get(FALLBACK_HEADER):
            raise CheckFailed(
                f"{path} was answered by nginx's static fallback, not the app: "
                "the webhooks service is down or failing"
            )
        if elapsed > WEBHOOK_BUDGET_SECONDS:
            raise CheckFailed(f"{path} took {elapsed:.2f} s (limit {WEBHOOK_BUDGET_SECONDS} s)")
        verbs = [child.tag for child in root]
        if "Record" not in verbs:
            raise CheckFailed(f"{path}: TwiML has no <Record> (verbs: {verbs})")
        details = [f"verbs: {' '.join(verbs)}"]
        for play in root.iter("Play"):
            url = (play.text or "").strip()
            details.append(f"plays {url}")
            check_audio_url(self.session, url)
        return CheckResult(
            "incoming_call",
            Status.PASS,
            f"200 text/xml TwiML in {elapsed * 1000:.0f} ms",
            details,
        )

    def check_call_status(self) -> CheckResult:
        path = Endpoint.CALL_STATUS.path
        params = {
            "AccountSid": self.settings.twilio_account_sid,
            "CallSid": DOCTOR_CALL_SID,
            "From": DOCTOR_FROM,
            "To": self._probe_number(),
            "CallStatus": "completed",
            "CallDuration": "0",
            "Direction": "inbound",
            "SequenceNumber": "0",
            "Timestamp": dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
            "ApiVersion": "2010-04-01",
        }
        started = time.perf_counter()
        try:
            response = self.post_signed(path, params)
        except requests.RequestException as exc:
            raise CheckFailed(f"{path}: {describe_error(exc)}") from exc
        elapsed = time.perf_counter() - started
        expect_response(response, path, "text/plain")
        if response.headers.get(FALLBACK_HEADER):
            raise CheckFailed(
                f"{path} was acknowledged by nginx's fallback, not the app: "
                "the webhooks service is down or failing"
            )
        if elapsed > WEBHOOK_BUDGET_SECONDS:
            raise CheckFailed(f"{path} took {elapsed:.2f} s (limit {WEBHOOK_BUDGET_SECONDS} s)")
        return CheckResult("call_status", Status.PASS, f"200 text/plain in {elapsed * 1000:.0f} ms")

    def check_fallback(self) -> CheckResult:
        from moked.provision import FALLBACK_PATH

        url = self.settings.public_url(FALLBACK_PATH)
        params = {"CallSid": DOCTOR_CALL_SID, "ErrorCode": "11200", "ErrorUrl": url}
        try:
            response = self.session.post(
                url, data=params, timeout=HTTP_TIMEOUT_SECONDS, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise CheckFailed(f"{FALLBACK_PATH}: {describe_error(exc)}") from exc
        root = expect_twiml(response, FALLBACK_PATH)
        return CheckResult(
            "fallback",
            Status.PASS,
            f"VoiceFallbackUrl answers TwiML ({' '.join(c.tag for c in root)})",
        )

    def check_numbers(self) -> CheckResult:
        from moked.provision import (
            NumberStatus,
            TwilioNumbersApi,
            iter_problems,
            plan,
        )

        if skipped := self._no_twilio_credentials("numbers"):
            return skipped
        owned = [(b.name, n) for b in self._business_list() for n in b.numbers]
        report = plan(self.settings, TwilioNumbersApi(self._client()), owned)
        problems = list(iter_problems(report))
        for entry in report.with_status(NumberStatus.MISSING):
            problems.append(f"{entry.phone_number} ({entry.business}): not in the account")
        elsewhere = [
            f"{n.phone_number}: points at {', '.join(n.other_hosts)}"
            for n in report.pointing_elsewhere
        ]
        if problems:
            return CheckResult(
                "numbers",
                Status.FAIL,
                f"{len(problems)} number problem(s): run `moked provision --apply`",
                problems + elsewhere,
            )
        ok = len(report.with_status(NumberStatus.OK))
        status = Status.WARN if elsewhere else Status.PASS
        summary = f"{ok} number(s) point at {self.settings.public_base}"
        if elsewhere:
            summary += f"; {len(elsewhere)} other number(s) in the account point elsewhere"
        return CheckResult("numbers", status, summary, elsewhere)

    def check_alerts(self) -> CheckResult:
        if skipped := self._no_twilio_credentials("alerts"):
            return skipped
        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=self.alerts_hours)
        client = self._client()
        alerts = client.monitor.v1.alerts.list(start_date=since, page_size=1000, limit=1000)
        bad = [a for a in alerts if str(getattr(a, "error_code", "")) in WATCHED_ERROR_CODES]
        window = f"the last {self.alerts_hours:g} h"
        if bad:
            details = [
                f"{a.error_code} {getattr(a, 'date_created', '')} "
                f"{getattr(a, 'request_url', '') or ''}".strip()
                for a in bad[:20]
            ]
            codes = sorted({str(a.error_code) for a in bad})
            return CheckResult(
                "alerts",
                Status.FAIL,
                f"{len(bad)} alert(s) {'/'.join(codes)} in Twilio's Monitor over {window}",
                details,
            )
        return CheckResult(
            "alerts",
            Status.PASS,
            f"no 11200/12300 among {len(alerts)} Twilio alert(s) over {window}",
        )

    def check_counter(self) -> CheckResult:
        if self.settings.prometheus_url:
            counts = twilio_errors_from_prometheus(
                self.session, self.settings.prometheus_url, self.alerts_hours
            )
            where = f"Prometheus, last {self.alerts_hours:g} h"
        else:
            url = f"http://127.0.0.1:{self.settings.webhooks_port}/metrics"
            try:
                response = self.session.get(url, timeout=HTTP_TIMEOUT_SECONDS)
                response.raise_for_status()
            except requests.RequestException as exc:
                raise CheckFailed(f"webhooks metrics at {url}: {describe_error(exc)}") from exc
            counts = twilio_errors_from_exposition(response.text)
            where = "webhooks /metrics, since it started"
        bad = {code: n for code, n in counts.items() if code in WATCHED_ERROR_CODES and n > 0}
        if bad:
            listed = ", ".join(f"{code}: {n:g}" for code, n in sorted(bad.items()))
            return CheckResult(
                "counter", Status.FAIL, f"moked_twilio_errors_total {listed} ({where})"
            )
        return CheckResult("counter", Status.PASS, f"no 11200/12300 reported ({where})")

    def check_transcription(self) -> CheckResult:
        from moked.models import ModelError, hebrew_warning, route_for

        hebrew = [
            b.name
            for b in self._business_list()
            if (b.language or "he").lower().replace("_", "-").split("-")[0] in ("he", "iw")
        ]
        try:
            route = route_for(self.settings, "he")
        except ModelError as exc:
            raise CheckFailed(f"the transcriber will not start: {exc}") from exc
        where = f"{route.backend.value}/{route.model} ({route.why})"
        if not hebrew:
            return CheckResult("transcription", Status.PASS, f"no Hebrew business; he → {where}")
        warning = hebrew_warning(self.settings)
        if warning:
            return CheckResult("transcription", Status.WARN, warning, sorted(hebrew))
        return CheckResult(
            "transcription",
            Status.PASS,
            f"{len(hebrew)} Hebrew business(es) transcribed by {where}",
        )

    # --- running -----------------------------------------------------------------------

    def checks(self) -> dict[str, Callable[[], CheckResult]]:
        return {name: getattr(self, f"check_{name}") for name in CHECK_NAMES}

    def run(self, only: Iterable[str] = (), skip: Iterable[str] = ()) -> DoctorReport:
        only, skip = set(only), set(skip)
        unknown = (only | skip) - set(self.checks())
        if unknown:
            raise ValueError(f"unknown check(s): {', '.join(sorted(unknown))}")
        report = DoctorReport(public_host=self.settings.public_base)
        for name, check in self.checks().items():
            if (only and name not in only) or name in skip:
                report.results.append(CheckResult(name, Status.SKIP, "skipped"))
                continue
            started = time.perf_counter()
            try:
                result = check()
            except CheckFailed as exc:
                result = CheckResult(name, Status.FAIL, str(exc))
            except Exception as exc:  # a check that cannot run is a failure, named
                result = CheckResult(name, Status.FAIL, f"{type(exc).__name__}: {exc}")
            result.seconds = round(time.perf_counter() - started, 3)
            report.results.append(result)
        return report


# --- helpers used by the checks -----------------------------------------------------------


def load_businesses() -> list[BusinessProbe]:
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from moked.db.models import Business
    from moked.db.session import session_scope

    with session_scope() as session:
        rows = session.scalars(
            select(Business).options(selectinload(Business.numbers)).order_by(Business.id)
        ).all()
        return [
            BusinessProbe(
                name=b.name,
                numbers=tuple(n.e164 for n in b.numbers),
                greeting_file=b.greeting_file,
                language=b.language,
            )
            for b in rows
        ]


def describe_error(exc: Exception) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"connection failed ({type(exc).__name__}): nothing answers"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {HTTP_TIMEOUT_SECONDS:g} s"
    return f"{type(exc).__name__}: {exc}"


def mime_of(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def expect_response(response: requests.Response, what: str, mime: str) -> None:
    if 300 <= response.status_code < 400:
        raise CheckFailed(
            f"{what} redirects ({response.status_code} to "
            f"{response.headers.get('Location', '?')}): Twilio does not follow it (11200)"
        )
    if response.status_code != 200:
        raise CheckFailed(f"{what} answered {response.status_code} (11200)")
    got = mime_of(response)
    if got != mime:
        raise CheckFailed(f"{what} is {got or 'missing a Content-Type'}, not {mime} (12300)")


def expect_twiml(response: requests.Response, what: str) -> ET.Element:
    expect_response(response, what, TWIML_CONTENT_TYPE.split(";")[0])
    body = response.content
    if body[:1].isspace():
        raise CheckFailed(f"{what}: TwiML starts with whitespace (12100)")
    try:
        root = ET.fromstring(body)  # noqa: S314 - our own server's answer
    except ET.ParseError as exc:
        raise CheckFailed(f"{what}: TwiML does not parse: {exc} (12100)") from exc
    if root.tag != "Response":
        raise CheckFailed(f"{what}: root element is <{root.tag}>, not <Response>")
    return root


def looks_like_mp3(head: bytes) -> bool:
    """An ID3 tag or an MPEG audio frame sync (11 set bits) at the start."""
    if head.startswith(b"ID3"):
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def check_audio_url(session: requests.Session, url: str) -> None:
    """What Twilio's <Play> needs: 200, audio/mpeg, MP3 bytes, no redirect."""
    try:
        response = session.get(
            url, timeout=HTTP_TIMEOUT_SECONDS, allow_redirects=False, stream=True
        )
    except requests.RequestException as exc:
        raise CheckFailed(f"{url}: {describe_error(exc)}") from exc
    with response:
        expect_response(response, url, "audio/mpeg")
        head = next(response.iter_content(16), b"")
    if not looks_like_mp3(head):
        raise CheckFailed(f"{url} is served as audio/mpeg but is not MP3 data (13420)")


def certificate_expiry(host: str, port: int) -> dt.datetime:
    """Verify the certificate chain and host name as Twilio does; return notAfter."""
    context = ssl.create_default_context()
    with (
        socket.create_connection((host, port), timeout=HTTP_TIMEOUT_SECONDS) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        cert = tls.getpeercert()
    not_after = str((cert or {}).get("notAfter", ""))
    return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), dt.UTC)


_SAMPLE = re.compile(r"^moked_twilio_errors_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_CODE = re.compile(r'code="(?P<code>[^"]*)"')


def twilio_errors_from_exposition(text: str) -> dict[str, float]:
    """code → count from a Prometheus text exposition of moked_twilio_errors_total."""
    counts: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        code = _CODE.search(match["labels"])
        if code:
            counts[code["code"]] = counts.get(code["code"], 0.0) + float(match["value"])
    return counts


def twilio_errors_from_prometheus(
    session: requests.Session, base: str, hours: float
) -> dict[str, float]:
    query = f"sum by (code) (increase(moked_twilio_errors_total[{max(1, round(hours * 60))}m]))"
    try:
        response = session.get(
            base.rstrip("/") + "/api/v1/query",
            params={"query": query},
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        response.raise_for_status()
        data = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise CheckFailed(f"Prometheus at {base}: {exc}") from exc
    counts: dict[str, float] = {}
    for sample in data.get("data", {}).get("result", []):
        code = sample.get("metric", {}).get("code", "unknown")
        counts[code] = float(sample.get("value", [0, "0"])[1])
    return counts


SYMBOLS = {Status.PASS: "PASS", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "skip"}


def format_report(report: DoctorReport) -> str:
    lines = [f"moked doctor: {report.public_host}", ""]
    for r in report.results:
        lines.append(f"  {SYMBOLS[r.status]:4}  {r.name:14} {r.summary}")
        lines += [f"{'':22}{detail}" for detail in r.details]
    failed = [r.name for r in report.results if r.status is Status.FAIL]
    warned = [r.name for r in report.results if r.status is Status.WARN]
    lines.append("")
    if failed:
        lines.append(f"FAILED: {', '.join(failed)}: Twilio would see 11200/12300 or worse")
    else:
        lines.append(
            "OK: no 11200/12300 expected" + (f" (warnings: {', '.join(warned)})" if warned else "")
        )
    return "\n".join(lines)


def to_json(report: DoctorReport) -> str:
    return json.dumps(report.as_dict(), ensure_ascii=False, indent=2)
