"""Start-up seeding of the rolling windows from the audit log's tail.

Two controls judge each decision against what came before it: the output guard's answer
length baseline per decision type (`guard.anomaly`) and the band monitor's review-share
p-chart (`models.monitor`). Both live in memory, so a restarted server used to start them
empty — blind to a far-too-long answer (exfiltration) until 30 answers of the type had
been seen, and without a chart for the first 500–1,500 decisions. The decision records
hold what the windows were fed, so a serving process reads the log's newest records once
at start-up and feeds them in again, oldest first:

* **lengths** — every recorded answer the output guard observed (not red-team exercises):
  the outputs gate's `length`, or the recorded text's length for older records that were
  not redacted (a redacted text is not the length that was observed, so it is skipped);
* **outcomes** — the outcome of every decision the band monitor counted (kind `decision`,
  not an exercise), newest first as long as each was decided under the policy version and
  the thresholds version serving now: the chart continues across a restart with the same
  policy and thresholds, and starts over when either changed, as it always did.

`warden serve` seeds its own windows; `warden serve --workers N` seeds the shared series
board before the workers start, and they replay it (`series_board`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from warden.audit.entry import StoredEntry
from warden.audit.record import is_exercise
from warden.guard.anomaly import length_value
from warden.models.monitor import review_hit
from warden.series_board import SeriesBoard

#: at most this many newest records are read (a few tenths of a second at start-up)
MAX_SCAN = 20_000


@dataclass
class RecentHistory:
    """What the windows were fed before the restart, per decision type, oldest first."""

    lengths: dict[str, list[int]] = field(default_factory=dict)
    outcomes: dict[str, list[str]] = field(default_factory=dict)
    #: records read from the log's tail
    scanned: int = 0

    def summary(self) -> dict[str, dict[str, int]]:
        names = sorted(set(self.lengths) | set(self.outcomes))
        return {
            name: {
                "lengths": len(self.lengths.get(name, ())),
                "outcomes": len(self.outcomes.get(name, ())),
            }
            for name in names
        }


def observed_length(outputs: Mapping[str, Any]) -> int | None:
    """The answer length the output guard observed, as the record shows it."""
    if not outputs.get("checked"):
        return None
    length = outputs.get("length")
    if isinstance(length, int):
        return length
    text = outputs.get("text")
    if isinstance(text, str) and outputs.get("redacted") is False:
        return len(text)
    return None


def _gate(record: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    for gate in record.get("gates", ()):
        if gate.get("gate") == name:
            result = gate.get("result")
            return result if isinstance(result, Mapping) else None
    return None


def recent_history(
    entries_newest_first: Iterator[StoredEntry],
    *,
    decision_types: Sequence[str],
    policy_version: str,
    thresholds_versions: Mapping[str, str | None],
    lengths: int,
    outcomes: int,
    max_scan: int = MAX_SCAN,
) -> RecentHistory:
    """Collect, from records newest first, up to `lengths` observed answer lengths and up
    to `outcomes` monitored outcomes per decision type; returned oldest first.
    `thresholds_versions`: per decision type, the thresholds version its records name when
    decided now (the active calibrated version, else the policy's static bands)."""
    history = RecentHistory()
    wanted = set(decision_types)
    length_lists: dict[str, list[int]] = {name: [] for name in wanted}
    outcome_lists: dict[str, list[str]] = {name: [] for name in wanted}
    #: types whose outcome series ended (an older policy or thresholds version reached)
    closed: set[str] = set()
    for entry in entries_newest_first:
        if history.scanned >= max_scan:
            break
        if entry.kind not in ("decision", "refusal"):
            continue
        history.scanned += 1
        record = entry.body()
        name = record.get("decision_type")
        if name not in wanted or is_exercise(record):
            continue
        found = length_lists[name]
        if len(found) < lengths:
            outputs = _gate(record, "outputs")
            length = observed_length(outputs) if outputs is not None else None
            if length is not None:
                found.append(length)
        told = outcome_lists[name]
        if entry.kind == "decision" and name not in closed and len(told) < outcomes:
            # a decision type without bands records no thresholds version
            recorded = record.get("thresholds_version")
            same_chart = record.get("policy", {}).get("version") == policy_version and (
                recorded is None or recorded == thresholds_versions.get(name)
            )
            if same_chart:
                told.append(str(record.get("outcome")))
            else:
                closed.add(name)
        if all(
            len(length_lists[n]) >= lengths and (n in closed or len(outcome_lists[n]) >= outcomes)
            for n in wanted
        ):
            break
    history.lengths = {n: v[::-1] for n, v in sorted(length_lists.items()) if v}
    history.outcomes = {n: v[::-1] for n, v in sorted(outcome_lists.items()) if v}
    return history


def seed_board(board: SeriesBoard, history: RecentHistory) -> None:
    """Put the history on a new series board (`warden serve --workers N`) before the
    workers start: each worker replays the board from its first value, so its length
    windows and its band chart begin where the previous server's ended. The values are
    appended under the parent's own id, so no worker logs or counts an alert they raise."""
    for name, values in history.lengths.items():
        key = f"length:{name}"
        if key in board:
            series = board.series(key)
            for length in values:
                series.append(length_value(length))
    for name, outcomes in history.outcomes.items():
        key = f"review:{name}"
        if key in board:
            series = board.series(key)
            for outcome in outcomes:
                series.append(float(review_hit(outcome)))
