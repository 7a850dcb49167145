"""Static checks: every alert is complete, tested and documented; dashboards are well formed.

(Every expression is also run against a real Prometheus in test_prometheus_live.py.)
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
import yaml

from moked import metrics
from moked.stack.config import REPO_ROOT
from moked.stack.monitoring import MONITORING_DIR
from tests.monitoring.promql import (
    RULE_TESTS_DIR,
    alert_rules,
    dashboards,
    every_expression,
    metric_names,
    panels,
)

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
SEVERITIES = {"critical", "warning", "info"}
PANEL_TYPES = {"row", "timeseries", "stat", "table", "gauge", "bargauge", "heatmap", "text"}
EXPECTED_DASHBOARDS = {
    "Calls & webhooks": {
        "Calls per minute by business",
        "Latency p50 / p95 / p99 per endpoint",
        "Responses by status and content type",
        "Twilio error codes over time",
        "Fallback TwiML served by nginx",
    },
    "Transcription": {
        "Queue depth and live workers",
        "Oldest waiting recording",
        "Lag: recording completed to transcript stored",
        "Real-time factor by backend",
        "Failures by reason",
    },
    "Infrastructure": {
        "Scrape targets",
        "Connections by database",
        "Memory used",
        "Requests per second",
    },
    "Notifications": {
        "Sent, retried and failed by channel",
        "Failures and retries by channel",
        "Latency p50 / p95 by channel",
        "Pending and held deliveries",
        "Notifications queue depth",
    },
    "Callbacks": {
        "Time to callback p50 / p90 by business",
        "Callback outcomes",
        "Voicemails overdue by business",
        "Oldest waiting voicemail by business",
    },
}
REQUIRED_ALERTS = {
    "TwilioHttpRetrievalFailure",  # any 11200 in 10 minutes
    "TwilioInvalidContentType",  # any 12300 in 10 minutes
    "WebhookLatencyHigh",  # p95 > 1 s for 5 minutes
    "NginxServingFallbackTwiml",
    "WebhookServerErrors",
    "WebhookSignatureFailuresRising",
    "TranscriptionBacklogOld",  # oldest waiting > 10 minutes
    "TranscriptionFailureRatioHigh",  # > 5 %
    "TranscriptionNoLiveWorker",
    "PostgresDown",
    "RedisDown",
    "TargetDown",
    "NotificationsFailing",  # failed for good, or only failures for 15 minutes (per channel)
    "NotificationsStuck",  # pending and nothing sent for 15 minutes
    "NotifierDown",
    "CallbacksOverdue",  # voicemails past the business's limit, in business hours
}


def runbook_anchors() -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    anchors = set()
    for line in RUNBOOK.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def test_the_alerts_the_issue_asks_for_exist():
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), Counter(names).most_common(3)
    assert set(names) >= REQUIRED_ALERTS


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_severity_summary_description_and_a_runbook_entry(rule):
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["labels"].get("service")
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert len(annotations["description"].strip()) > 40
    url = annotations["runbook_url"]
    assert url.startswith("docs/runbook.md#"), url
    assert url.split("#", 1)[1] in runbook_anchors(), f"{url}: no such heading in docs/runbook.md"


def test_every_alert_has_a_promtool_test_that_fires_it():
    tested: set[str] = set()
    for path in RULE_TESTS_DIR.glob("*_test.yml"):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    tested.add(check["alertname"])
    untested = {rule["alert"] for rule in alert_rules()} - tested
    assert not untested, f"alerts without a firing unit test: {sorted(untested)}"


def test_the_runbook_explains_the_twilio_error_codes():
    anchors = runbook_anchors()
    for code in ("11200", "12300", "12100", "13420", "11205", "11217"):
        assert f"error-{code}" in anchors, code


def test_every_moked_metric_an_expression_reads_is_declared_in_moked_metrics():
    declared = set()
    for value in vars(metrics).values():
        name = getattr(value, "_name", None)
        if isinstance(name, str):
            kind = getattr(value, "_type", "")
            declared.add(name + ("_total" if kind == "counter" else ""))
            if kind == "histogram":
                declared |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    for expression in every_expression():
        for name in metric_names(expression.promql):
            if name.startswith("moked_"):
                assert name in declared, f"{expression.where}: {name} is not in moked/metrics.py"


def test_the_dashboards_are_well_formed():
    found = dashboards()
    by_title = {d["title"]: d for d in found.values()}
    assert set(by_title) == set(EXPECTED_DASHBOARDS)
    assert len({d["uid"] for d in found.values()}) == len(found)
    datasource = yaml.safe_load(
        (MONITORING_DIR / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uids = {ds["uid"] for ds in datasource["datasources"] if ds["type"] == "prometheus"}
    for title, dashboard in by_title.items():
        assert dashboard["schemaVersion"] >= 36
        assert "moked" in dashboard["tags"]
        assert len(dashboard["uid"]) <= 40
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{title}: duplicate panel ids"
        titles = {panel["title"] for panel in panels(dashboard)}
        assert EXPECTED_DASHBOARDS[title] <= titles, EXPECTED_DASHBOARDS[title] - titles
        cells: set[tuple[int, int]] = set()
        for panel in panels(dashboard):
            assert panel["type"] in PANEL_TYPES, panel["type"]
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, (title, panel)
            overlap = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                       for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
            assert not cells & overlap, f"{title}: {panel['title']} overlaps another panel"
            cells |= overlap
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in uids, panel["title"]
            targets = panel["targets"]
            assert targets, panel["title"]
            refs = [t["refId"] for t in targets]
            assert len(refs) == len(set(refs)), panel["title"]
            for target in targets:
                assert target["expr"].strip()
                assert target.get("datasource", panel["datasource"])["uid"] in uids


def test_grafana_provisioning_points_at_the_dashboards():
    provider = yaml.safe_load(
        (MONITORING_DIR / "grafana/provisioning/dashboards/moked.yml").read_text()
    )
    [only] = provider["providers"]
    assert only["type"] == "file"
    assert only["options"]["path"].startswith("/var/lib/grafana/dashboards")


def test_the_expression_lexer_finds_metric_names():
    expr = (
        'histogram_quantile(0.95, sum by (endpoint, le) (rate(x_bucket{a="b c"}[5m]))) > 1'
        ' and on () (time() - max(y{job="p"}) > 300) or z offset 5m'
    )
    assert metric_names(expr) == {"x_bucket", "y", "z"}
