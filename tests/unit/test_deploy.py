"""deploy/ stays true to the code: every metric an alert or dashboard panel names exists."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

from jobline.observe.metrics import REGISTRY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC_MODULES = (
    "jobline_gateway.metrics",
    "jobline_relay.metrics",
    "jobline_worker.metrics",
    "jobline_analyzer.metrics",
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
