"""`moked doctor` against the running native stack and the Twilio API mock."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from moked import cli
from moked.doctor import (
    CHECK_NAMES,
    BusinessProbe,
    CheckFailed,
    Doctor,
    DoctorReport,
    Status,
    check_audio_url,
    format_report,
    twilio_errors_from_exposition,
)
from moked.greetings import synthesize_mp3
from moked.settings import Settings, get_settings
from tests.deploy.twilio_mock import TwilioMock
from tests.harness import StackUnderTest


@pytest.fixture
def settings(stack: StackUnderTest, twilio_mock: TwilioMock) -> Settings:
    return stack.settings.model_copy(update={"twilio_api_base": twilio_mock.base})


@pytest.fixture
def greeted(make_business):  # type: ignore[no-untyped-def]
    business = make_business(greeting_mp3=synthesize_mp3("shalom", "he"))
    return BusinessProbe(
        name=business.name,
        numbers=tuple(n.e164 for n in business.numbers),
        greeting_file=business.greeting_file,
    )


def run(settings: Settings, businesses: list[BusinessProbe], **kwargs: object) -> DoctorReport:
    doctor = Doctor(settings, businesses=lambda: businesses)
    return doctor.run(**kwargs)  # type: ignore[arg-type]


def statuses(report: DoctorReport) -> dict[str, Status]:
    return {r.name: r.status for r in report.results}


def test_passes_against_the_running_stack(settings: Settings, greeted: BusinessProbe) -> None:
    # The Prism mock lists the spec's example number, not ours: numbers are tested below.
    report = run(settings, [greeted], skip=("numbers",))
    print(format_report(report))
    assert report.ok, format_report(report)
    got = statuses(report)
    assert got["tls"] is Status.WARN  # http development stack: a warning, not a failure
    for name in ("app", "greetings", "incoming_call", "call_status", "fallback"):
        assert got[name] is Status.PASS, name
    assert got["alerts"] is Status.PASS  # Monitor Alerts API (mock): no alerts
    assert got["counter"] is Status.PASS  # the webhooks service's own /metrics
    incoming = report.result("incoming_call")
    assert any(greeted.greeting_file in d for d in incoming.details if d.startswith("plays "))


def test_a_whole_database_run_through_the_cli(
    settings: Settings,
    greeted: BusinessProbe,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TWILIO_API_BASE", settings.twilio_api_base)
    get_settings.cache_clear()
    try:
        code = cli.main(["doctor", "--json", "--only", "greetings", "--only", "fallback"])
    finally:
        monkeypatch.delenv("TWILIO_API_BASE")
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert '"ok"' in out and '"fallback"' in out
    assert code in (0, 1)  # other tests' businesses are in the same database
    if code == 0:
        assert '"fail"' not in out


def test_a_greeting_replaced_by_something_else_fails_by_name(
    settings: Settings, greeted: BusinessProbe
) -> None:
    assert greeted.greeting_file
    path = settings.greetings_dir / greeted.greeting_file
    original = path.read_bytes()
    path.write_bytes(b"<html><body>Not Found</body></html>")
    try:
        report = run(settings, [greeted], only=("greetings",))
    finally:
        path.write_bytes(original)
    result = report.result("greetings")
    assert result.status is Status.FAIL and not report.ok
    assert greeted.name in result.details[0] and "not MP3 data" in result.details[0]


def test_a_missing_greeting_fails_with_its_status(
    settings: Settings, greeted: BusinessProbe
) -> None:
    assert greeted.greeting_file
    gone = BusinessProbe(greeted.name, greeted.numbers, "business_0_missing.mp3")
    report = run(settings, [gone], only=("greetings",))
    result = report.result("greetings")
    assert result.status is Status.FAIL
    assert "answered 404" in result.details[0] and greeted.name in result.details[0]


class _Handler(http.server.BaseHTTPRequestHandler):
    content_type = "text/html; charset=utf-8"
    body = b"<html>greeting</html>"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", self.server.content_type)  # type: ignore[attr-defined]
        self.send_header("Content-Length", str(len(self.server.body)))  # type: ignore[attr-defined]
        self.end_headers()
        self.wfile.write(self.server.body)  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_greeting_served_with_the_wrong_type(loopback_server: http.server.HTTPServer) -> None:
    loopback_server.content_type = "text/html; charset=utf-8"  # type: ignore[attr-defined]
    loopback_server.body = b"ID3 but html"  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{loopback_server.server_port}/greeting.mp3"
    with pytest.raises(CheckFailed, match=r"is text/html, not audio/mpeg \(12300\)"):
        check_audio_url(requests.Session(), url)


def test_the_counter_names_11200_and_12300(
    settings: Settings, loopback_server: http.server.HTTPServer
) -> None:
    exposition = (
        "# TYPE moked_twilio_errors_total counter\n"
        'moked_twilio_errors_total{code="11200",level="error"} 3.0\n'
        'moked_twilio_errors_total{code="12300",level="error"} 1.0\n'
        'moked_twilio_errors_total{code="13227",level="warning"} 5.0\n'
    )
    assert twilio_errors_from_exposition(exposition) == {"11200": 3, "12300": 1, "13227": 5}
    loopback_server.content_type = "text/plain; version=0.0.4"  # type: ignore[attr-defined]
    loopback_server.body = exposition.encode()  # type: ignore[attr-defined]
    fake = settings.model_copy(update={"webhooks_port": loopback_server.server_port})
    report = run(fake, [], only=("counter",))
    result = report.result("counter")
    assert result.status is Status.FAIL
    assert "11200: 3" in result.summary and "12300: 1" in result.summary


def test_numbers_not_pointing_here_fail(settings: Settings, example_business) -> None:  # type: ignore[no-untyped-def]
    from tests.deploy.twilio_mock import EXAMPLE_NUMBER

    probe = BusinessProbe(example_business.name, (EXAMPLE_NUMBER,), None)
    report = run(settings, [probe], only=("numbers",))
    result = report.result("numbers")
    assert result.status is Status.FAIL, result
    assert EXAMPLE_NUMBER in result.details[0] and "voice_url" in result.details[0]
    assert "moked provision --apply" in result.summary


def _wait_healthy(stack: StackUnderTest, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(stack.base + "/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError("webhooks did not come back")


def test_app_down_fails_and_names_the_cause(
    stack: StackUnderTest, settings: Settings, greeted: BusinessProbe
) -> None:
    stack.supervisorctl("stop", "webhooks")
    try:
        report = run(settings, [greeted], skip=("numbers", "alerts"))
    finally:
        stack.supervisorctl("start", "webhooks")
        _wait_healthy(stack)
    print(format_report(report))
    assert not report.ok
    got = statuses(report)
    assert got["greetings"] is Status.PASS  # nginx still serves the files
    assert got["fallback"] is Status.PASS
    app = report.result("app")
    assert app.status is Status.FAIL and "webhooks service behind nginx is down" in app.summary
    incoming = report.result("incoming_call")
    assert incoming.status is Status.FAIL and "nginx's static fallback" in incoming.summary
    assert report.result("call_status").status is Status.FAIL
    assert "FAILED: " in format_report(report)


def test_every_check_has_a_name_and_skips_are_reported(settings: Settings) -> None:
    report = run(settings, [], only=("fallback",))
    assert [r.name for r in report.results] == list(CHECK_NAMES)
    assert {r.status for r in report.results if r.name != "fallback"} == {Status.SKIP}
    with pytest.raises(ValueError, match="unknown check"):
        run(settings, [], only=("nope",))


def test_http_is_a_warning_on_a_development_stack(settings: Settings) -> None:
    report = DoctorReport(public_host="x")
    doctor = Doctor(settings, businesses=list)
    result = doctor.check_tls()
    assert result.status is Status.WARN and "https" in result.summary
    report.results.append(result)
    assert report.ok


def test_without_twilio_credentials_the_twilio_checks_warn(stack: StackUnderTest) -> None:
    placeholder = stack.settings.model_copy(
        update={"twilio_account_sid": "AC" + "0" * 32, "twilio_api_base": ""}
    )
    report = run(placeholder, [], only=("numbers", "alerts"))
    for name in ("numbers", "alerts"):
        result = report.result(name)
        assert result.status is Status.WARN and "no Twilio credentials" in result.summary


def test_the_probe_call_sid_is_a_valid_twilio_sid() -> None:
    from moked.doctor import DOCTOR_CALL_SID
    from moked.intake import valid_sid

    assert valid_sid(DOCTOR_CALL_SID, "CA") == DOCTOR_CALL_SID


def test_the_counter_from_prometheus(
    settings: Settings, loopback_server: http.server.HTTPServer
) -> None:
    answer = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"code": "12300"}, "value": [1700000000, "2"]},
                {"metric": {"code": "13227"}, "value": [1700000000, "7"]},
            ],
        },
    }
    loopback_server.content_type = "application/json"  # type: ignore[attr-defined]
    loopback_server.body = json.dumps(answer).encode()  # type: ignore[attr-defined]
    with_prometheus = settings.model_copy(
        update={"prometheus_url": f"http://127.0.0.1:{loopback_server.server_port}"}
    )
    result = run(with_prometheus, [], only=("counter",)).result("counter")
    assert result.status is Status.FAIL
    assert "12300: 2" in result.summary and "Prometheus" in result.summary
    assert "13227" not in result.summary


def test_json_report(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TWILIO_API_BASE", settings.twilio_api_base)
    get_settings.cache_clear()
    try:
        code = cli.main(["doctor", "--json", "--only", "fallback", "--only", "alerts"])
    finally:
        monkeypatch.delenv("TWILIO_API_BASE")
        get_settings.cache_clear()
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] is True
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert checks["fallback"] == "pass" and checks["alerts"] == "pass"
    assert checks["greetings"] == "skip"


def test_a_slow_answer_fails(
    settings: Settings, greeted: BusinessProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moked.doctor

    monkeypatch.setattr(moked.doctor, "WEBHOOK_BUDGET_SECONDS", 0.0)
    report = run(settings, [greeted], only=("incoming_call", "call_status"))
    for name in ("incoming_call", "call_status"):
        result = report.result(name)
        assert result.status is Status.FAIL and "took" in result.summary, result
