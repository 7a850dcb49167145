"""Against the running test stack: the real Prometheus scrapes every target, sees our calls
and Twilio's errors, fires the alert, and every rule and panel expression evaluates."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker

from moked.queue import redis_client, transcription_queue
from moked.stack.monitoring import native_targets
from tests.harness import TEST_ACCOUNT_SID, StackUnderTest
from tests.helpers import call_params, new_call_sid
from tests.monitoring.promql import Prometheus, every_expression, metric_names, wait_for

OUR_JOBS = {
    "prometheus", "alertmanager", "webhooks", "reconciler", "notifier",
    "nginx", "postgres", "redis",
}  # fmt: skip
"""The targets this issue adds; crm-ui and transcriber are checked when the stack runs them."""

ONLY_AFTER_EVENTS = {"ALERTS"}
"""Series that exist only once something happened (a firing alert)."""


@pytest.fixture(scope="module")
def prometheus(stack: StackUnderTest) -> Iterator[Prometheus]:
    settings = stack.settings
    client = Prometheus(f"http://127.0.0.1:{settings.prometheus_port}")
    wait_for(
        "prometheus ready",
        lambda: requests.get(f"{client.base}/-/ready", timeout=2).status_code == 200,
    )
    yield client


@pytest.fixture(scope="module")
def alert_receiver(stack: StackUnderTest) -> Iterator[list[dict[str, Any]]]:
    """Plays the chat/paging bridge at ALERT_WEBHOOK_URL: keeps what Alertmanager posts."""
    received: list[dict[str, Any]] = []
    url = urlsplit(stack.settings.alert_webhook_url)

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({"path": self.path, **json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((url.hostname or "127.0.0.1", url.port or 80), Receiver)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


def running_programs(stack: StackUnderTest) -> set[str]:
    """supervisord's RUNNING programs (`group:name` of a numprocs group counts as `group`)."""
    status = stack.supervisorctl("status")
    return {
        line.split()[0].split(":")[0] for line in status.splitlines() if " RUNNING " in f" {line} "
    }


def scraped_directly(port: int, sample: str, **labels: str) -> float:
    """A sample's value summed over matching series, read from a service's own /metrics."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_prometheus_scrapes_every_target_the_stack_runs_and_all_are_up(
    stack: StackUnderTest, prometheus: Prometheus
):
    running = running_programs(stack)
    expected = {job for job, hosts in native_targets(stack.settings, running).items() if hosts}
    assert expected >= OUR_JOBS, f"programs running: {sorted(running)}"

    def all_up() -> dict[str, str] | None:
        health = {t["labels"]["job"]: t["health"] for t in prometheus.targets()}
        return health if all(health.get(job) == "up" for job in expected) else None

    health = wait_for(f"targets {sorted(expected)} up", all_up, timeout=90)
    assert set(health) == expected, "a target is scraped for a program the stack does not run"
    up = prometheus.query("up")
    assert {r["metric"]["job"] for r in up if r["value"][1] == "1"} >= expected
    for name in ("pg_up", "redis_up", "nginx_up"):
        assert prometheus.value(name) == 1.0, name


def test_webhook_latency_histogram_counts_signed_calls(
    stack: StackUnderTest, prometheus: Prometheus, make_business
):
    business = make_business()
    port = stack.settings.webhooks_port
    sample = "moked_webhook_request_duration_seconds_count"
    before = scraped_directly(port, sample, endpoint="incoming_call")
    count = f'sum({sample}{{job="webhooks", endpoint="incoming_call"}})'
    prometheus.wait_for_value(count, before)  # the series exists (at 0) before any call

    for _ in range(3):
        answer = stack.post(
            "/webhook/incoming_call", call_params(new_call_sid(), business.numbers[0].e164)
        )
        assert answer.status_code == 200, answer.text

    prometheus.wait_for_value(count, before + 3)
    p95 = prometheus.value(
        "histogram_quantile(0.95, sum by (le) (rate("
        'moked_webhook_request_duration_seconds_bucket{job="webhooks",endpoint="incoming_call"}[1m])))'
    )
    assert p95 is not None and 0 < p95 < 5
    twiml = prometheus.value(
        'sum(moked_webhook_responses_total{job="webhooks",endpoint="incoming_call",'
        'status="200",content_type="text/xml"})'
    )
    assert twiml is not None and twiml >= 3


def debugger_event(code: str, sid: str) -> dict[str, str]:
    """What Twilio's Debugger webhook POSTs for one error."""
    call_sid = new_call_sid()
    payload = {
        "resource_sid": call_sid,
        "service_sid": None,
        "error_code": code,
        "more_info": {
            "msg": "An attempt to retrieve content from the URL returned an HTTP 502",
            "Msg": "HTTP 502",
            "sourceComponent": "12000",
        },
        "webhook": {
            "type": "application/json",
            "request": {"url": "https://moked.example/webhook/incoming_call", "method": "POST"},
            "response": {"status_code": 502, "headers": {}, "body": ""},
        },
    }
    return {
        "AccountSid": TEST_ACCOUNT_SID,
        "ParentAccountSid": "",
        "Sid": sid,
        "Timestamp": "2026-11-28T22:00:00.000Z",
        "Level": "ERROR",
        "PayloadType": "application/json",
        "Payload": json.dumps(payload),
    }


def test_a_signed_debugger_11200_counts_once_and_pages(
    stack: StackUnderTest, prometheus: Prometheus, alert_receiver: list[dict[str, Any]]
):
    series = 'sum(moked_twilio_errors_total{code="11200"})'
    # The series exists at 0 from start, so the first error is an increase Prometheus sees.
    assert (
        scraped_directly(stack.settings.webhooks_port, "moked_twilio_errors_total", code="11200")
        == 0
    )
    prometheus.wait_for_value(series, 0.0)

    event = debugger_event("11200", "NO" + secrets.token_hex(16))
    unsigned = stack.post("/webhook/twilio_alerts", event, signed=False)
    assert unsigned.status_code == 403
    for _ in range(2):  # Twilio retrying the same event
        answer = stack.post("/webhook/twilio_alerts", event)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/plain")

    prometheus.wait_for_value(series, 1.0)
    assert (
        prometheus.value(
            'sum(moked_twilio_errors_total{code="11200",level="error",job="webhooks"})'
        )
        == 1.0
    )

    firing = wait_for(
        "TwilioHttpRetrievalFailure firing",
        lambda: prometheus.firing("TwilioHttpRetrievalFailure"),
        timeout=60,
    )
    assert firing[0]["labels"]["severity"] == "critical"
    alertmanager = f"http://127.0.0.1:{stack.settings.alertmanager_port}/api/v2/alerts"

    def delivered() -> list[dict[str, object]]:
        alerts = requests.get(alertmanager, timeout=5).json()
        return [a for a in alerts if a["labels"]["alertname"] == "TwilioHttpRetrievalFailure"]

    [received] = wait_for("the alert in Alertmanager", delivered, timeout=60)
    assert received["labels"]["code"] == "11200"
    assert received["annotations"]["runbook_url"] == "docs/runbook.md#twiliohttpretrievalfailure"
    assert prometheus.value(series) == 1.0  # the retry was not counted

    def paged() -> list[dict[str, Any]]:
        return [
            alert
            for message in alert_receiver
            if message["receiver"] == "pager" and message["status"] == "firing"
            for alert in message["alerts"]
            if alert["labels"]["alertname"] == "TwilioHttpRetrievalFailure"
        ]

    # critical -> the "pager" receiver: the webhook gets it after a 10 s group wait.
    [page] = wait_for("the page at ALERT_WEBHOOK_URL", paged, timeout=60)
    assert page["labels"]["severity"] == "critical"
    assert alert_receiver[0]["path"] == urlsplit(stack.settings.alert_webhook_url).path


def test_every_rule_and_dashboard_expression_runs(prometheus: Prometheus):
    expressions = every_expression()
    assert len(expressions) > 60
    failures = []
    for expression in expressions:
        body = requests.get(
            f"{prometheus.base}/api/v1/query", params={"query": expression.promql}, timeout=10
        ).json()
        if body.get("status") != "success" or body.get("warnings"):
            failures.append(f"{expression.where}: {body.get('error') or body.get('warnings')}")
    assert not failures, "\n".join(failures)


def test_every_exporter_metric_an_expression_reads_exists(prometheus: Prometheus):
    """A misspelt exporter metric runs without error but shows nothing: catch it here."""
    wait_for("postgres metrics", lambda: prometheus.value("pg_up") is not None)
    known = set(prometheus.api("label/__name__/values"))
    missing = set()
    for expression in every_expression():
        for name in metric_names(expression.promql):
            if not name.startswith("moked_") and name not in known | ONLY_AFTER_EVENTS:
                missing.add(f"{expression.where}: {name}")
    assert not missing, "\n".join(sorted(missing))


def test_rules_are_loaded_evaluated_and_healthy(prometheus: Prometheus):
    def rules() -> list[dict[str, object]]:
        return [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]

    groups = {group["name"] for group in prometheus.api("rules")["groups"]}
    assert groups == {
        "twilio",
        "webhooks",
        "transcription",
        "infrastructure",
        "notifications",
        "callbacks",
    }
    evaluated = wait_for(
        "every rule evaluated",
        lambda: (
            (found := rules())
            and all(not str(r.get("lastEvaluation", "0001")).startswith("0001") for r in found)
            and found
        ),
    )
    unhealthy = [f"{r['name']}: {r.get('lastError')}" for r in evaluated if r["health"] != "ok"]
    assert not unhealthy


def test_the_reconciler_reports_the_live_workers_it_sees_in_redis(
    stack: StackUnderTest, prometheus: Prometheus
):
    queue = transcription_queue(redis_client(stack.settings.redis_url))
    workers = len(Worker.all(queue=queue))
    expr = 'max(moked_transcription_workers{job="reconciler"})'
    prometheus.wait_for_value(expr, float(workers))
    depth = prometheus.value('max(moked_transcription_queue_depth{job="reconciler"})')
    assert depth is not None and depth >= 0
    oldest = prometheus.value('max(moked_transcription_oldest_waiting_seconds{job="reconciler"})')
    assert oldest is not None and oldest >= 0


def test_the_reconciler_measures_pending_and_held_notifications(prometheus: Prometheus):
    """NotificationsStuck and the dashboard read these from the reconciler's pass."""
    for status in ("pending", "held"):
        expr = f'max(moked_notifications_pending{{job="reconciler",status="{status}"}})'
        wait_for(expr, lambda expr=expr: prometheus.value(expr) is not None)
        value = prometheus.value(expr)
        assert value is not None and value >= 0, expr
    depth = prometheus.value('max(moked_notification_queue_depth{job="reconciler"})')
    assert depth is not None and depth >= 0
