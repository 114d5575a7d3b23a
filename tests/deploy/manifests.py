"""The Helm chart rendered by Helm's own engine and checked against the Kubernetes schemas.

- Rendering: ``helm-python-sdk`` (the Helm v4 Go SDK behind a C ABI): the same templates,
  functions and values-schema check as ``helm template``; no cluster is contacted.
- Built-in kinds: ``kubernetes-validate``'s JSON schemas of the Kubernetes API, strict (an
  unknown field is an error, like kubeconform ``-strict`` and the API server's field validation).
- Custom resources (KEDA ScaledObject, Prometheus Operator ServiceMonitor and PrometheusRule):
  JSON schemas derived from cloudcoil's models of the upstream CRDs, made strict the same way.

``python -m tests.deploy.manifests VALUES.yaml`` prints the manifests (``make helm-template``).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml
from kubernetes_validate import utils as kv  # type: ignore[import-untyped]
from pydantic import BaseModel
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "jobline"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "jobline"
NAMESPACE = "jobs"

Manifest = dict[str, Any]


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest that
# kubernetes-validate has schemas for.
KUBE_VERSIONS = ("1.27", ".".join(map(str, max(map(_minor, kv.all_versions())))))


class InvalidManifest(AssertionError):
    """A rendered manifest does not match its schema."""


def load_values(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text())
    assert isinstance(values, dict), path
    return values


def render(values: dict[str, Any], *, install: bool = True) -> list[Manifest]:
    """Every object the chart renders for ``values``, as Helm would apply them."""
    import helm_python

    # Helm logs an INFO line for each symlink it follows (files/ links to deploy/prometheus
    # and deploy/grafana); that is by design here.
    logging.getLogger("helm_python").setLevel(logging.WARNING)
    with helm_python.Chart.load(str(CHART)) as chart:
        rendered = chart.render(
            values,
            name=RELEASE,
            namespace=NAMESPACE,
            is_install=install,
            is_upgrade=not install,
        )
    manifests = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        manifests += [doc for doc in yaml.safe_load_all(text) if doc]
    return manifests


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    import helm_python

    result: dict[str, Any] = helm_python.lint(str(CHART), values, strict=True)
    return result


def _strict(node: Any) -> Any:
    """additionalProperties: false on every object schema that lists its properties."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, for the custom resources the chart uses."""
    from cloudcoil.models.keda import v1alpha1 as keda
    from cloudcoil.models.prometheus_operator import v1 as monitoring

    models: dict[tuple[str, str], type[BaseModel]] = {
        ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
        ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
    }
    return {
        key: _strict(model.model_json_schema(by_alias=True, mode="validation"))
        for key, model in models.items()
    }


@cache
def _k8s_validator(api_version: str, kind: str, kube_version: str) -> jsonschema.Validator:
    """kubernetes_validate.validate's schema lookup, built once per kind and version."""
    version = [v for v in kv.all_versions() if _minor(v) <= _minor(kube_version)][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # apps/v1 -> apps-v1
    try:
        schema = kv.schema_contents(f"{folder}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        raise kv.SchemaNotFoundError(kind, kube_version, api_version) from None
    definitions = kv.schema_contents(f"{folder}/_definitions.json", version)
    registry: Registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(manifest: Manifest, kube_version: str) -> None:
    """Raise InvalidManifest unless ``manifest`` matches its kind's schema."""
    name = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
    key = (manifest.get("apiVersion", ""), manifest.get("kind", ""))
    if key in crd_schemas():
        validator: jsonschema.Validator = jsonschema.Draft202012Validator(crd_schemas()[key])
        where = "custom resource"
    else:
        try:
            validator = _k8s_validator(*key, kube_version)
        except kv.SchemaNotFoundError as exc:
            raise InvalidManifest(f"{name}: {exc.message}") from None
        where = f"Kubernetes {kube_version}"
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        path = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
        raise InvalidManifest(f"{name} ({where}): {path}: {errors[0].message}")


def validate_all(manifests: Iterable[Manifest]) -> int:
    """Validate every manifest against every supported Kubernetes version; count them."""
    count = 0
    for manifest in manifests:
        for version in KUBE_VERSIONS:
            validate(manifest, version)
        count += 1
    return count


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or CI_VALUES[:1]
    values: dict[str, Any] = {}
    for path in paths:
        values.update(load_values(path))
    manifests = render(values)
    validate_all(manifests)
    sys.stdout.write(yaml.safe_dump_all(manifests, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
