"""Prometheus helpers: one registry per process (``/metrics`` serves it, see jobline.web).

Services declare their metrics against :data:`REGISTRY` (not the client's global default
registry), so tests can build several apps in one process without duplicate-name errors
leaking between unrelated modules.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# Latency buckets from 1 ms to ~1 min: submit, publish and run times all fit.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


def render(registry: CollectorRegistry = REGISTRY) -> bytes:
    return generate_latest(registry)


__all__ = ["LATENCY_BUCKETS", "REGISTRY", "Counter", "Gauge", "Histogram", "render"]
