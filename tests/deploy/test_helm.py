"""The Helm chart: rendered by Helm's engine, valid against the Kubernetes and CRD schemas, and
wired the way the services actually work (ports, probes, settings, topics, groups)."""

from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobline.core import topics
from tests.deploy.manifests import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    InvalidManifest,
    Manifest,
    lint,
    load_values,
    render,
    validate,
    validate_all,
)

ROOT = CHART.parents[2]
SETTINGS = {  # container command module -> the settings class that reads its environment
    "jobline_gateway": "jobline_gateway.settings",
    "jobline_relay": "jobline_relay.settings",
    "jobline_worker": "jobline_worker.settings",
    "jobline_analyzer": "jobline_analyzer.settings",
}


@pytest.fixture(scope="module", params=[p.name for p in CI_VALUES])
def case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], list[Manifest]]:
    values = load_values(CHART / "ci" / request.param)
    return values, render(values)


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def containers(manifest: Manifest) -> Iterator[dict[str, Any]]:
    yield from manifest["spec"]["template"]["spec"]["containers"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_ci_values_cover_keda_and_hpa() -> None:
    modes = set()
    for path in CI_VALUES:
        for pool in load_values(path)["workers"]:
            modes.add(pool.get("autoscaling", {}).get("mode", "keda"))
    assert {"keda", "hpa", "none"} <= modes


def test_chart_lints_clean_in_strict_mode() -> None:
    for path in CI_VALUES:
        report = lint(load_values(path))
        assert report["errors"] == [], report
        serious = [m for m in report["messages"] if m["severity"] >= 2]
        assert serious == [], report


def test_every_manifest_is_valid_for_every_supported_kubernetes(case) -> None:
    _, manifests = case
    assert validate_all(manifests) == len(manifests) >= 10


def test_the_validator_rejects_what_the_api_server_would(case) -> None:
    """Guards the check itself: a typo, a wrong type and a bad CRD field all fail."""
    _, manifests = case
    deployment = of_kind(manifests, "Deployment")[0]
    typo = yaml.safe_load(yaml.safe_dump(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {}}
    wrong_type = yaml.safe_load(yaml.safe_dump(deployment))
    wrong_type["spec"]["replicas"] = "two"
    for broken in (typo, wrong_type):
        with pytest.raises(InvalidManifest):
            validate(broken, "1.27")
    for custom in of_kind(manifests, "ScaledObject") + of_kind(manifests, "ServiceMonitor"):
        broken = yaml.safe_load(yaml.safe_dump(custom))
        broken["spec"]["minReplicas" if custom["kind"] == "ScaledObject" else "endpoint"] = 1
        with pytest.raises(InvalidManifest):
            validate(broken, "1.27")


def test_names_are_unique_per_kind(case) -> None:
    _, manifests = case
    names = Counter((m["kind"], m["metadata"]["name"]) for m in manifests)
    assert [k for k, n in names.items() if n > 1] == []


def test_deployments_probe_readyz_and_healthz_on_the_port_the_service_listens_on(case) -> None:
    _, manifests = case
    for deployment in of_kind(manifests, "Deployment"):
        for container in containers(deployment):
            (port,) = container["ports"]
            assert port["name"] == "http"
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
            module = container["command"][-1]
            port_var = {
                "jobline_gateway": "JOBLINE_GATEWAY_PORT",
                "jobline_relay": "JOBLINE_RELAY_PORT",
                "jobline_worker": "JOBLINE_WORKER_PORT",
                "jobline_analyzer": "JOBLINE_ANALYZER_PORT",
            }[module]
            env = env_of(container)
            assert env[port_var]["value"] == str(port["containerPort"])
            assert env["JOBLINE_HTTP_HOST"]["value"] == "0.0.0.0"


def test_every_jobline_variable_is_a_setting_of_that_service(case) -> None:
    """A misspelt JOBLINE_* variable would be silently ignored by pydantic-settings."""
    _, manifests = case
    for deployment in of_kind(manifests, "Deployment"):
        for container in containers(deployment):
            module = container["command"][-1]
            settings = importlib.import_module(SETTINGS[module]).Settings
            for name in env_of(container):
                assert name.startswith("JOBLINE_"), name
                field = name.removeprefix("JOBLINE_").lower()
                assert field in settings.model_fields, f"{module} has no setting for {name}"


def test_the_database_url_only_ever_comes_from_a_secret(case) -> None:
    values, manifests = case
    workloads = of_kind(manifests, "Deployment") + of_kind(manifests, "Job")
    secret_name = values["database"].get("existingSecret") or "jobline-database"
    for workload in workloads:
        for container in containers(workload):
            url = env_of(container)["JOBLINE_DATABASE_URL"]
            assert "value" not in url
            assert url["valueFrom"]["secretKeyRef"]["name"] == secret_name
    secrets = of_kind(manifests, "Secret")
    if values["database"].get("existingSecret"):
        assert secrets == []
    else:
        (secret,) = secrets
        assert secret["stringData"]["database-url"] == values["database"]["url"]
        # It must exist before the migration Job (a pre-install hook) runs.
        hooks = secret["metadata"]["annotations"]
        assert "pre-install" in hooks["helm.sh/hook"]
        assert int(hooks["helm.sh/hook-weight"]) < 0


def test_resources_requests_and_hardened_pods(case) -> None:
    _, manifests = case
    for workload in of_kind(manifests, "Deployment") + of_kind(manifests, "Job"):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts  # a writable /tmp on a read-only root


def test_every_deployment_has_a_pdb_and_a_service_selecting_its_pods(case) -> None:
    _, manifests = case
    pdbs = of_kind(manifests, "PodDisruptionBudget")
    services = of_kind(manifests, "Service")
    for deployment in of_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert matches(deployment["spec"]["selector"]["matchLabels"], labels)
        covering = [p for p in pdbs if matches(p["spec"]["selector"]["matchLabels"], labels)]
        assert len(covering) == 1, deployment["metadata"]["name"]
        (service,) = [s for s in services if matches(s["spec"]["selector"], labels)]
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        # No selector of another component picks these pods up.
        others = [d for d in of_kind(manifests, "Deployment") if d is not deployment]
        for other in others:
            assert not matches(other["spec"]["selector"]["matchLabels"], labels), (
                f"{other['metadata']['name']} selects {deployment['metadata']['name']}"
            )


def test_migrations_run_once_per_release_before_the_pods_change(case) -> None:
    values, manifests = case
    (job,) = of_kind(manifests, "Job")
    hooks = job["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in hooks["helm.sh/hook-delete-policy"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "jobline migrate" in script
    queues = {q for pool in values["workers"] for q in pool["queues"]}
    ensured = re.search(r'topics ensure --queues "([^"]+)"', script)
    assert ensured is not None
    assert set(ensured.group(1).split(",")) == queues


def test_worker_pools_run_their_app_on_their_queues(case) -> None:
    values, manifests = case
    deployments = {d["metadata"]["name"]: d for d in of_kind(manifests, "Deployment")}
    for pool in values["workers"]:
        deployment = deployments[f"jobline-worker-{pool['name']}"]
        (container,) = containers(deployment)
        args = container["args"]
        assert args[args.index("--app") + 1] == pool["app"]
        assert args[args.index("--queues") + 1].split(",") == pool["queues"]
        env = env_of(container)
        grace = int(env["JOBLINE_WORKER_SHUTDOWN_GRACE_SECONDS"]["value"])
        # The kubelet must not SIGKILL a worker that is still handing jobs back.
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace
        assert env["JOBLINE_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        image = pool.get("image", {})
        if image.get("repository"):
            assert container["image"] == f"{image['repository']}:{image['tag']}"


def _worker_group(prefix: str, queue: str) -> str:
    """The consumer group a worker joins for ``queue``, read from the worker's own code."""
    source = "\n".join(p.read_text() for p in (ROOT / "services" / "worker" / "src").rglob("*.py"))
    found = re.findall(r'group_id=f"\{prefix\}(\.[a-z_.-]+)\.\{queue\}"', source)
    assert len(set(found)) == 1, "cannot find the worker's consumer group name in its code"
    return f"{prefix}{found[0]}.{queue}"


def test_autoscaling_follows_the_mode_and_watches_the_real_topic_and_group(case) -> None:
    values, manifests = case
    prefix = values["kafka"].get("topicPrefix", "jobline")
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(manifests, "ScaledObject")}
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in of_kind(manifests, "HorizontalPodAutoscaler")
    }
    deployments = {d["metadata"]["name"]: d for d in of_kind(manifests, "Deployment")}
    for pool in values["workers"]:
        name = f"jobline-worker-{pool['name']}"
        mode = pool.get("autoscaling", {}).get("mode", "keda")
        spec = deployments[name]["spec"]
        # An autoscaler owns the replica count; a fixed count would fight it on every apply.
        assert ("replicas" in spec) == (mode == "none")
        assert (name in scaled, name in hpas) == (mode == "keda", mode == "hpa")
        if mode == "keda":
            triggers = scaled[name]["spec"]["triggers"]
            assert [t["type"] for t in triggers] == ["kafka"] * len(pool["queues"])
            for trigger, queue in zip(triggers, pool["queues"], strict=True):
                meta = trigger["metadata"]
                assert meta["topic"] == topics.work_topic(prefix, queue)
                assert meta["consumerGroup"] == _worker_group(prefix, queue)
                assert meta["bootstrapServers"] == values["kafka"]["bootstrap"]
        if mode == "hpa":
            metrics = hpas[name]["spec"]["metrics"]
            assert metrics[0]["resource"]["name"] == "cpu"
            external = [m["external"]["metric"] for m in metrics if m["type"] == "External"]
            if pool["autoscaling"].get("externalLagMetric"):
                assert [m["selector"]["matchLabels"]["queue"] for m in external] == pool["queues"]
                assert {m["name"] for m in external} == {"jobline_worker_consumer_lag"}


def test_monitoring_objects_reuse_the_rules_and_dashboards_of_deploy(case) -> None:
    values, manifests = case
    monitors = of_kind(manifests, "ServiceMonitor")
    if not values.get("metrics", {}).get("serviceMonitor", {}).get("enabled", True):
        assert monitors == []
        assert of_kind(manifests, "PrometheusRule") == []
        return
    services = of_kind(manifests, "Service")
    # Job names as in deploy/prometheus/prometheus.yml, which the alerts and dashboard use.
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {c["job_name"] for c in scrape["scrape_configs"]}
    seen = set()
    for monitor in monitors:
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] == "http"
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "job"
        assert relabel["replacement"] in jobs
        seen.add(relabel["replacement"])
        assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
        selected = [
            s for s in services
            if matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]  # fmt: skip
        assert len(selected) == 1, monitor["metadata"]["name"]
        assert [p["name"] for p in selected[0]["spec"]["ports"]] == ["http"]
    assert seen == jobs
    (rule,) = of_kind(manifests, "PrometheusRule")
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    dashboards = {
        key: text for cm in of_kind(manifests, "ConfigMap") for key, text in cm["data"].items()
    }
    for path in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"):
        assert dashboards[path.name] == path.read_text().rstrip("\n")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kafka": {"bootstrap": ""}}, "kafka.bootstrap is required"),
        ({"database": {"url": "", "existingSecret": ""}}, "database.url"),
        ({"workers": [{"name": "default", "queues": ["default"]}]}, "app is required"),
        ({"workers": [{"name": "a", "app": "m:w", "queues": []}]}, "queues"),
        (
            {
                "workers": [
                    {"name": "a", "app": "m:w", "queues": ["q"], "autoscaling": {"mode": "x"}}
                ]
            },
            "keda",
        ),
        ({"workers": [{"name": "a", "app": "m:w", "queues": ["q"]}] * 2}, "used twice"),
        ({"gateway": {"pdb": {"maxUnavailable": 1, "minAvailable": 1}}}, "pdb"),
    ],
)
def test_a_release_with_missing_or_wrong_values_fails_to_render(
    change: dict[str, Any], message: str
) -> None:
    values = load_values(CI_VALUES[0])
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    with pytest.raises(Exception, match=re.escape(message)):
        render(values)


def test_the_chart_files_link_to_deploy_rather_than_copy_it() -> None:
    files = CHART / "files"
    assert (files / "alerts.yml").resolve() == ROOT / "deploy" / "prometheus" / "alerts.yml"
    assert (files / "dashboards").resolve() == ROOT / "deploy" / "grafana" / "dashboards"
    assert Path(files / "alerts.yml").is_symlink()
