"""Band monitoring: the middle-band (review) share per decision type over a sliding window,
against a p-chart control limit — a rising review share is the first sign of distribution
shift (or of a stale calibration).

The baseline share p₀ is the review share the active thresholds version expects (measured on
its calibration data) or, without one, the share over the first `baseline` decisions after
start-up — where a restart seeds the monitor from the audit log, the first of the run of
decisions the log's tail holds under the same policy, thresholds and model
(`warden.baselines`). The upper control limit for a window of n decisions is
p₀ + 3·√(p₀(1 − p₀)/n).
When the window's share rises above it the monitor raises an alert: a Prometheus gauge
(`warden_band_alert`), one warning log line when it starts, and `GET /v1/bands/monitor`.

`review_stats` reads reviewer decisions from the audit log: how often reviewers overrode the
band the score alone gave, and how often their label agreed with the calibrated score."""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from warden.audit.entry import StoredEntry
from warden.audit.record import is_exercise
from warden.series_board import THRESHOLDS, SeriesBoard, SharedSeries

log = logging.getLogger("warden.bands")

#: a worker sharing its series applies everyone's hits once this many are waiting (and on
#: every status read): a p-chart over hundreds of decisions needs no per-decision refresh,
#: and an alert from a worker's own decision is raised by its next decisions
SYNC_EVERY = 16

REVIEW_SHARE = Gauge(
    "warden_band_review_share", "Review-band share over the sliding window", ["decision_type"]
)
REVIEW_LIMIT = Gauge(
    "warden_band_review_share_limit", "p-chart upper control limit (3 sigma)", ["decision_type"]
)
ALERT = Gauge("warden_band_alert", "1 while the review share is above its limit", ["decision_type"])
ALERTS = Counter("warden_band_alerts_total", "Review-share alerts raised", ["decision_type"])


def review_hit(outcome: str) -> int:
    """What the review-share chart counts for one decision's outcome."""
    return 1 if outcome == "review" else 0


def control_limit(p0: float, n: int, sigmas: float = 3.0) -> float:
    return p0 + sigmas * math.sqrt(max(p0 * (1 - p0), 0.0) / max(n, 1))


@dataclass
class _Series:
    window: deque[int]
    baseline_n: int = 0
    baseline_hits: int = 0
    p0: float | None = None
    alert: bool = False
    since: int | None = None
    seen: int = 0
    hits: int = 0  # review hits in the window
    # shared series only (`warden serve --workers N`): the board's chart this follows
    epoch: int = 0
    start: int = 0  # the chart's first position
    #: this worker read the chart from its first value (so it can compute a baseline)
    complete: bool = True
    #: the first position judged against p0 (after the baseline decisions); None: not known
    monitored_from: int | None = None
    from_thresholds: bool = False


@dataclass
class BandMonitor:
    window: int = 500
    baseline: int = 1000
    #: decision type → expected review share (from the active thresholds version)
    expected: dict[str, float] = field(default_factory=dict)
    _series: dict[str, _Series] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: the request workers' shared series (`warden serve --workers N`), by decision type
    _shared: dict[str, SharedSeries] = field(default_factory=dict)

    def share(self, board: SeriesBoard, decision_types: Iterable[str]) -> None:
        """Count the review hits of `decision_types` on `board`, with the other workers:
        each worker appends its decisions' hits there and applies everyone's, in the
        board's order, against the chart the board names (its start, epoch and p0), so
        every worker's windows, baselines and alerts are the same — also a worker that
        starts late. An alert is logged and counted by the worker whose decision raised
        it."""
        with self._lock:
            self._shared = {
                name: board.series(f"review:{name}")
                for name in decision_types
                if f"review:{name}" in board
            }
            self._series.clear()

    def set_expected(self, decision_type: str, share: float | None) -> None:
        with self._lock:
            if share is None:
                self.expected.pop(decision_type, None)
            else:
                self.expected[decision_type] = share
            shared = self._shared.get(decision_type)
            if shared is None:
                self._series.pop(decision_type, None)  # a new baseline starts a new chart
                return
            chart = shared.chart()  # one new chart for all workers, started by the first
            if share is None and chart.source != THRESHOLDS:
                return
            if share is not None and chart.source == THRESHOLDS and chart.p0 == share:
                return
            shared.restart_chart(share)
            self._sync(decision_type, shared)

    def observe(self, decision_type: str, band: str) -> None:
        hit = review_hit(band)
        with self._lock:
            shared = self._shared.get(decision_type)
            if shared is None:
                self._apply(decision_type, hit, mine=True)
                return
            shared.append(float(hit))
            if shared.pending() >= SYNC_EVERY:
                self._sync(decision_type, shared)

    def seed(self, decision_type: str, outcomes: Iterable[str]) -> None:
        """Feed outcomes decided before this process started (oldest first, from the audit
        log: `warden.baselines`), as if it had seen them; an alert they raise shows on the
        gauge and the status, and is not logged or counted again. A monitor that shares
        its series is seeded through the board instead."""
        with self._lock:
            if decision_type in self._shared:
                raise RuntimeError("a shared monitor is seeded through its series board")
            for outcome in outcomes:
                self._apply(decision_type, review_hit(outcome), mine=False)

    def _chart_series(self, decision_type: str, shared: SharedSeries) -> _Series:
        """This worker's state of the board's current chart (a new one when it changed)."""
        chart = shared.chart()
        s = self._series.get(decision_type)
        if s is not None and s.epoch == chart.epoch:
            if s.p0 is None and not s.complete and chart.p0 is not None:
                s.p0 = chart.p0  # published by a worker that saw the whole baseline
                s.monitored_from = chart.start + self.baseline
                shared.seek(s.monitored_from)
            return s
        s = self._series[decision_type] = _Series(deque(maxlen=self.window))
        s.epoch, s.start, s.p0 = chart.epoch, chart.start, chart.p0
        s.from_thresholds = chart.source == THRESHOLDS
        shared.seek(chart.start)
        s.complete = shared.position == chart.start
        if s.from_thresholds:
            s.monitored_from = chart.start
        elif chart.p0 is not None:
            s.monitored_from = chart.start + self.baseline
            shared.seek(s.monitored_from)
        return s

    def _sync(self, decision_type: str, shared: SharedSeries) -> None:
        """Apply the hits the workers appended since the last look, in order (lock held)."""
        s = self._chart_series(decision_type, shared)
        if s.p0 is None and not s.complete:
            return  # until a worker that saw the chart's start publishes its baseline
        first, lost, pairs = shared.pull()
        if lost:
            s.complete = False  # it cannot compute this chart's baseline any more
        for offset, (value, owner) in enumerate(pairs):
            self._apply_shared(decision_type, s, shared, first + offset, int(value), owner)

    def _apply_shared(
        self,
        decision_type: str,
        s: _Series,
        shared: SharedSeries,
        position: int,
        hit: int,
        owner: int,
    ) -> None:
        s.seen = position - s.start + 1
        if s.p0 is None:
            if not s.complete:  # waits for the p0 a worker that saw the start publishes
                return
            s.baseline_n += 1
            s.baseline_hits += hit
            if s.baseline_n >= self.baseline:
                s.p0 = s.baseline_hits / s.baseline_n
                s.monitored_from = position + 1
                shared.publish_p0(s.epoch, s.p0)
            return
        if s.monitored_from is not None and position < s.monitored_from:
            return
        if len(s.window) == self.window:
            s.hits -= s.window[0]
        s.window.append(hit)
        s.hits += hit
        if len(s.window) == self.window:
            self._judge(decision_type, s, mine=owner == shared.owner)

    def _apply(self, decision_type: str, hit: int, *, mine: bool) -> None:
        s = self._series.get(decision_type)
        if s is None:
            s = self._series[decision_type] = _Series(deque(maxlen=self.window))
            s.p0 = self.expected.get(decision_type)
        s.seen += 1
        if len(s.window) == self.window:
            s.hits -= s.window[0]
        s.window.append(hit)
        s.hits += hit
        if s.p0 is None:
            s.baseline_n += 1
            s.baseline_hits += hit
            if s.baseline_n >= self.baseline:
                s.p0 = s.baseline_hits / s.baseline_n
                s.window.clear()  # the monitored windows start after the baseline
                s.hits = 0
            return
        if len(s.window) < self.window:
            return
        self._judge(decision_type, s, mine=mine)

    def _judge(self, decision_type: str, s: _Series, *, mine: bool) -> None:
        """The p-chart on a full window: gauges, and an alert when the share is above the
        limit (logged and counted by `mine` only)."""
        assert s.p0 is not None
        share = s.hits / len(s.window)
        limit = control_limit(s.p0, len(s.window))
        REVIEW_SHARE.labels(decision_type).set(share)
        REVIEW_LIMIT.labels(decision_type).set(limit)
        alert = share > limit
        # a new alert (counted, logged) only a full window after the last one started,
        # so a share that hovers at the limit does not flood the log
        if alert and not s.alert and (s.since is None or s.seen - s.since >= self.window):
            s.since = s.seen
            if mine:  # one worker logs and counts it, not every worker that applies it
                ALERTS.labels(decision_type).inc()
                log.warning(
                    "band alert: %s review share %.4f over the last %d decisions is above "
                    "the control limit %.4f (baseline %.4f)",
                    decision_type, share, len(s.window), limit, s.p0,
                )  # fmt: skip
        s.alert = alert
        ALERT.labels(decision_type).set(1 if alert else 0)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self._lock:
            for name, shared in self._shared.items():
                self._sync(name, shared)
            for name, s in sorted(self._series.items()):
                n = len(s.window)
                share = sum(s.window) / n if n else None
                out[name] = {
                    "decisions_seen": s.seen,
                    "window": self.window,
                    "window_filled": n if s.p0 is not None else 0,
                    "review_share": share if s.p0 is not None else None,
                    "baseline_share": s.p0,
                    "baseline_source": "thresholds"
                    if (s.from_thresholds if name in self._shared else name in self.expected)
                    else f"first {self.baseline} decisions",
                    "control_limit": control_limit(s.p0, self.window) if s.p0 is not None else None,
                    "alert": s.alert,
                    "alert_since_decision": s.since if s.alert else None,
                    #: the workers' shared series, and hits this worker missed (a ring behind)
                    "shared_by_workers": name in self._shared,
                    "missed": self._shared[name].gaps if name in self._shared else 0,
                }
        return out


def band_history(entries: Iterable[StoredEntry], window: int = 500) -> dict[str, list[float]]:
    """Review share per consecutive window of decisions, per decision type (from the log)."""
    counts: dict[str, list[int]] = {}
    for entry in entries:
        if entry.kind != "decision":
            continue
        body = entry.body()
        if is_exercise(body):
            continue
        counts.setdefault(body["decision_type"], []).append(1 if body["outcome"] == "review" else 0)
    return {
        dt: [sum(v[i : i + window]) / window for i in range(0, len(v) - window + 1, window)]
        for dt, v in counts.items()
    }


def _score_lean(band_by_score: str | None, score: float) -> str:
    if band_by_score == "auto_approve":
        return "approve"
    if band_by_score == "auto_decline":
        return "decline"
    return "decline" if score >= 0.5 else "approve"


def review_stats(
    decisions: dict[str, dict[str, Any]], reviews: Iterable[StoredEntry]
) -> dict[str, Any]:
    """Per decision type: reviews, override rate (the reviewer's outcome differs from what
    the score alone said: its band, or for middle-band cases the side of 0.5), and label
    agreement (a positive label with a calibrated score ≥ 0.5 or a negative one below).
    `decisions` maps decision_id → decision record."""
    out: dict[str, dict[str, Any]] = {}
    for entry in reviews:
        body = entry.body()
        decision = decisions.get(str(entry.decision_id))
        if decision is None:
            continue
        bands = next((g["result"] for g in decision["gates"] if g["gate"] == "bands"), None)
        if bands is None:
            continue
        score = float(bands["score"])
        stats = out.setdefault(
            decision["decision_type"],
            {"reviews": 0, "overrides": 0, "labelled": 0, "agree": 0, "series": []},
        )
        stats["reviews"] += 1
        override = body["outcome"] != _score_lean(bands.get("band_by_score"), score)
        stats["overrides"] += int(override)
        label = body.get("label")
        agree = None
        if label in ("positive", "negative"):
            stats["labelled"] += 1
            agree = (label == "positive") == (score >= 0.5)
            stats["agree"] += int(agree)
        stats["series"].append((int(override), agree))
    for stats in out.values():
        stats["override_rate"] = stats["overrides"] / stats["reviews"]
        stats["agreement"] = stats["agree"] / stats["labelled"] if stats["labelled"] else None
    return out
