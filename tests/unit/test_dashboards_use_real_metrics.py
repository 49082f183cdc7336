"""Every metric the Grafana dashboard and the Prometheus alerts use is one SKR exports:
a renamed or removed metric fails here, not silently on an operator's empty panel."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from skr.observability.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Series Prometheus makes itself for each scrape target, not SKR's to export.
PROMETHEUS_OWN = {"up"}
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
    "summary": ("", "_count", "_sum"),
}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}


def exported_series() -> set[str]:
    """The series names SKR's /metrics shows, from a fresh Metrics' registry."""
    names: set[str] = set()
    family: Metric
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: what is left once strings, label
    matchers, ranges, grouping clauses, function calls and numbers are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(", "(", expr)  # function names
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {w for w in words if w not in _KEYWORDS and not re.fullmatch(r"e\d*|Inf|NaN", w)}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "skr-dashboard.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_extraction_finds_the_metric_names() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(skr_x_bucket{route!~"/a|b{c}"}[5m]))) '
        "/ clamp_min(sum(rate(skr_y_total[5m])), 1e-9) > 2.5 and on(job) up == 0"
    )
    assert metric_names(expr) == {"skr_x_bucket", "skr_y_total", "up"}


def test_exported_series_have_prometheus_suffixes() -> None:
    exported = exported_series()
    assert {"skr_http_requests_total", "skr_job_queue_depth"} <= exported
    assert {"skr_http_request_duration_seconds_bucket", "skr_embed_texts_total"} <= exported
    assert "skr_http_requests" not in exported  # a counter's series end in _total


def test_every_dashboard_metric_is_exported() -> None:
    expressions = dashboard_expressions()
    used = set().union(*(metric_names(e) for e in expressions))
    assert used - exported_series() - PROMETHEUS_OWN == set()
    # the panels the operations list asks for are there
    for needed in (
        "skr_http_requests_total",
        "skr_http_request_duration_seconds_bucket",
        "skr_http_shed_total",
        "skr_db_pool",
        "skr_cache_lookups_total",
        "skr_job_queue_depth",
        "skr_job_queue_oldest_age_seconds",
        "skr_ingest_pages_total",
        "skr_embed_batch_duration_seconds_bucket",
        "skr_llm_breaker_state",
        "skr_dependency_up",
    ):
        assert needed in used, needed


def test_every_alert_metric_is_exported() -> None:
    expressions = alert_expressions()
    used = set().union(*(metric_names(e) for e in expressions))
    assert used - exported_series() - PROMETHEUS_OWN == set()
    for needed in (
        "skr_http_requests_total",  # error rate
        "skr_http_request_duration_seconds_bucket",  # p99
        "skr_job_queue_oldest_age_seconds",  # queue age
        "skr_llm_breaker_state",  # breaker open
        "skr_dependency_up",  # dependency down
    ):
        assert needed in used, needed


def test_the_dashboard_panels_are_distinct_and_use_the_provisioned_datasource() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "skr-dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert len({p["title"] for p in panels}) == len(panels)
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"][0]
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: run scripts/install-promtool.sh (make services)")
    return found


def test_alert_rules_fire_as_their_unit_tests_say() -> None:
    """promtool's own rule tests: each alert fires on made-up series, 503s are not errors."""
    done = subprocess.run(
        [_promtool(), "test", "rules", "alerts.test.yaml"],
        cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr{i}", "expr": e}
                    for i, e in enumerate(dashboard_expressions())
                ],
            }
        ]
    }
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [_promtool(), "check", "rules", str(tmp_path / "rules.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
