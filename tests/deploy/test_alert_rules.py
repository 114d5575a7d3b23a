"""The alert rules work: ``promtool test rules`` runs the unit tests of every rule, against
deploy/prometheus/alerts.yml and against the Helm chart's rendered PrometheusRule.

promtool is required, never skipped: ``make deploy-check`` (part of ``make test``) installs it
first (``make promtool``: Debian's ``prometheus`` package), and ``PROMTOOL`` may name another.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import CI_VALUES, load_values, render

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "alerts_test.yml"


@cache
def promtool() -> str:
    path = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not path:
        pytest.fail(
            "promtool not found: run `make promtool` (installs Debian's prometheus package) "
            "or set PROMTOOL to a promtool binary",
            pytrace=False,
        )
    return path


def run_promtool(*args: str | Path) -> str:
    result = subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def alert_names(rules: dict[str, Any]) -> list[str]:
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_the_rules_file_is_valid() -> None:
    run_promtool("check", "rules", RULES)


def test_every_rule_has_a_case_that_fires_and_one_that_does_not() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())
    assert cases["rule_files"] == ["../alerts.yml"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in cases["tests"]:
        for check in test.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alert_names(yaml.safe_load(RULES.read_text())))
    assert names, "no alert rules found"
    assert sorted(names - fires) == [], "rules without a case where they fire"
    assert sorted(names - quiet) == [], "rules without a case where they stay silent"
    assert sorted((fires | quiet) - names) == [], "tests of rules that do not exist"


def test_the_rules_pass_their_unit_tests() -> None:
    output = run_promtool("test", "rules", RULE_TESTS)
    assert "SUCCESS" in output, output


def test_the_helm_charts_prometheus_rule_passes_the_same_tests(tmp_path: Path) -> None:
    rules = [
        m for path in CI_VALUES for m in render(load_values(path)) if m["kind"] == "PrometheusRule"
    ]
    assert rules, "no CI values file renders the PrometheusRule"
    rule = rules[0]
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(RULE_TESTS, tests / RULE_TESTS.name)
    output = run_promtool("test", "rules", tests / RULE_TESTS.name)
    assert "SUCCESS" in output, output
