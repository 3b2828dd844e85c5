"""Prometheus metrics. Names follow the Prometheus conventions (`_total`, `_seconds`)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

DECISIONS = Counter(
    "warden_decisions_total",
    "Decisions by decision type and outcome band",
    ["decision_type", "band"],
)
DECISION_LATENCY = Histogram(
    "warden_decision_latency_seconds",
    "Time from admission to durable audit commit",
    ["decision_type"],
    buckets=_LATENCY_BUCKETS,
)
AUDIT_COMMIT = Histogram(
    "warden_audit_commit_seconds",
    "Duration of one group commit (transaction + fsync)",
    buckets=_LATENCY_BUCKETS,
)
AUDIT_BATCH = Histogram(
    "warden_audit_batch_entries",
    "Entries per group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
EXERCISES = Counter(
    "warden_exercise_decisions_total",
    "Red-team exercises (decisions for redteam keys; outside every other figure here)",
    ["decision_type", "outcome"],
)
UNLABELED = Counter(
    "warden_unlabeled_requests_total", "Requests refused because they carried no jurisdiction"
)
REFUSALS = Counter("warden_refusals_total", "Requests refused, by reason code", ["code"])
REVIEWS = Counter("warden_reviews_total", "Reviewer decisions", ["outcome"])


def observe_commit(entries: int, seconds: float) -> None:
    AUDIT_COMMIT.observe(seconds)
    AUDIT_BATCH.observe(entries)


GUARD_CHECKS = Counter(
    "warden_guard_checks_total", "Inputs and outputs checked, by surface", ["surface"]
)
GUARD_HITS = Counter(
    "warden_guard_hits_total",
    "Checks that found something, by surface and reason code",
    ["surface", "code"],
)

MODEL_CALLS = Counter(
    "warden_model_calls_total",
    "Model endpoint attempts, by endpoint and result (ok or the error)",
    ["endpoint", "result"],
)
BREAKER_STATE = Gauge(
    "warden_endpoint_breaker_state",
    "Circuit breaker per model endpoint: 0 closed, 1 half-open, 2 open",
    ["endpoint"],
)


def exposition() -> bytes:
    """The /metrics text: this process's metrics, or with `warden serve --workers N`
    (PROMETHEUS_MULTIPROC_DIR set) every worker's and the audit writer's together."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
