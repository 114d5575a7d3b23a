"""deploy/ stays true to the code: every metric an alert or dashboard panel names exists, with
the labels it groups and filters by; the alert rules' promtool tests feed only real series."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from jobline.core.job import AttemptOutcome
from jobline.observe.metrics import REGISTRY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC_MODULES = (
    "jobline_gateway.metrics",
    "jobline_relay.metrics",
    "jobline_worker.metrics",
    "jobline_analyzer.metrics",
    "jobline.pg.purge",
)
NAME = re.compile(r"\bjobline_[a-z_]+\b")
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def exported_names() -> set[str]:
    for module in METRIC_MODULES:
        importlib.import_module(module)
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def referenced_names() -> dict[str, set[str]]:
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    found = {"alerts.yml": {n for e in exprs for n in NAME.findall(e)}}
    for path in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        targets = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        found[path.name] = {n for e in targets for n in NAME.findall(e)}
    return found


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@pytest.mark.parametrize(("source", "names"), sorted(referenced_names().items()))
def test_every_referenced_metric_is_exported(source: str, names: set[str]) -> None:
    exported = exported_names()
    exported |= {base(n) for n in exported}
    missing = sorted(n for n in names if n not in exported and base(n) not in exported)
    assert names, f"{source} references no Jobline metric"
    assert missing == [], f"{source} names metrics no service exports: {missing}"


def test_every_alert_has_a_summary_and_severity() -> None:
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for rule in (r for g in alerts["groups"] for r in g["rules"]):
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]


# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
MATCHERS = re.compile(r"\b(jobline_[a-z_]+)\{([^}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"([^\"]*)\"")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exported_labels() -> dict[str, frozenset[str]]:
    """Every exported series name (suffixes included) -> the label names it carries."""
    labels: dict[str, frozenset[str]] = {}
    for module_name in METRIC_MODULES:
        module = importlib.import_module(module_name)
        for metric in vars(module).values():
            if not isinstance(metric, MetricWrapperBase):
                continue
            name = metric._name
            own = frozenset(metric._labelnames) | TARGET_LABELS
            kind = metric._type
            if kind == "counter":
                labels[name + "_total"] = own
            elif kind == "histogram":
                labels[name + "_bucket"] = own | {"le"}
                labels[name + "_sum"] = labels[name + "_count"] = own
            else:
                labels[name] = own
    return labels


def all_exprs() -> dict[str, list[str]]:
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    found = {"alerts.yml": [r["expr"] for g in alerts["groups"] for r in g["rules"]]}
    for path in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        found[path.name] = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return found


def test_the_label_check_knows_the_services_metrics() -> None:
    labels = exported_labels()
    assert labels["jobline_analyzer_active_anomalies"] >= {"tenant", "job_type", "kind"}
    assert "type" not in labels["jobline_analyzer_active_anomalies"]
    assert labels["jobline_worker_queue_wait_seconds_bucket"] >= {"type", "le"}


@pytest.mark.parametrize(("source", "exprs"), sorted(all_exprs().items()))
def test_alerts_and_panels_group_and_filter_by_labels_the_metrics_have(
    source: str, exprs: list[str]
) -> None:
    labels = exported_labels()
    wrong = []
    for expr in exprs:
        names = [n for n in NAME.findall(expr) if n in labels]
        for name, body in MATCHERS.findall(expr):
            wrong += [
                (name, label) for label, _ in MATCHER.findall(body) if label not in labels[name]
            ]
        # A grouping label must be on some metric of the expression (e.g. the anomaly gauge's
        # job type is job_type, not type).
        known = frozenset().union(*(labels[n] for n in names)) if names else frozenset()
        for group in GROUPING.findall(expr):
            wrong += [(expr, g.strip()) for g in group.split(",") if g.strip() not in known]
    assert wrong == [], f"{source} uses labels its metrics do not have: {wrong}"


def test_alerts_match_only_outcomes_the_worker_emits() -> None:
    # jobline_worker.outcomes.label: an attempt's outcome, or lease_lost when it was dropped.
    emitted = {o.value for o in AttemptOutcome} | {"lease_lost"}
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for expr in (r["expr"] for g in alerts["groups"] for r in g["rules"]):
        for name, body in MATCHERS.findall(expr):
            if name != "jobline_worker_jobs_finished_total":
                continue
            for label, value in MATCHER.findall(body):
                if label == "outcome":
                    assert set(value.split("|")) <= emitted, (expr, value)


def test_the_alert_rule_tests_feed_series_the_services_export() -> None:
    labels = exported_labels()
    cases = yaml.safe_load((DEPLOY / "prometheus" / "tests" / "alerts_test.yml").read_text())
    wrong = []
    for test in cases["tests"]:
        for series in test["input_series"]:
            name, _, body = series["series"].partition("{")
            if name == "up":
                continue
            if name not in labels:
                wrong.append((name, "not exported"))
                continue
            wrong += [(name, lbl) for lbl, _ in MATCHER.findall(body) if lbl not in labels[name]]
    assert wrong == [], wrong
