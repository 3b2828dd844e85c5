"""Start-up seeding of the rolling windows from the audit log's tail.

Two controls judge each decision against what came before it: the output guard's answer
length baseline per decision type (`guard.anomaly`) and the band monitor's review-share
p-chart (`models.monitor`). Both live in memory, so a restarted server used to start them
empty — blind to a far-too-long answer (exfiltration) until 30 answers of the type had
been seen, and without a chart for the first 500–1,500 decisions. The decision records
hold what the windows were fed, so a serving process reads the log's newest records once
at start-up (at most `MAX_SCAN`) and feeds them in again, oldest first. Red-team exercises
never count, as they never did. Each window takes records back to the latest change that
would have started it over. A *change of the decision type* is a record decided under
another `spec_version` of its own policy section (`policy.compiled.spec_version`, read
from the policy file stored under the record's policy version): an edit elsewhere in the
policy — an endpoint's URL, a route, another decision type — starts no window over, and a
policy file that is not in the store or no longer validates counts as a change.

* **lengths** (decision types with a model call): every answer the output guard observed —
  the outputs gate's `length`, or, in records of format 1, the recorded text's length when
  it was not redacted (a redacted text is not the length that was observed, so it is
  skipped) — back to a change of the decision type or of its prompt template version;
* **outcomes**: the outcome of every decision the band monitor counted (kind `decision`),
  back to a change of the decision type, thresholds version (the active one, also when it
  was stale for the model) or model artefact. A chart judged against the thresholds' expected
  share takes the newest `window` outcomes. A chart whose baseline is the share over its
  first `baseline` decisions takes the oldest `baseline` outcomes of that run (within the
  scan) and the newest `window`: its baseline stays the early share, so a drift that was
  under way before the restart is still measured against it.

`warden serve` seeds its own windows; `warden serve --workers N` seeds the shared series
board before the workers start, and they replay it (`series_board`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from warden.audit.entry import StoredEntry
from warden.audit.record import gate_results
from warden.guard.anomaly import length_value
from warden.models.monitor import review_hit
from warden.series_board import SeriesBoard

#: at most this many newest records are read (≈ 0.3 s for 20,000 records of ≈ 3 KB)
MAX_SCAN = 20_000


@dataclass(frozen=True)
class Current:
    """What a decision type's records carry when it is decided now."""

    #: the active thresholds version (also when stale for the model), else the policy's
    #: static bands' version
    thresholds_version: str | None
    model_sha256: str | None
    #: the prompt template version of its model call (None: chat, or no model call)
    template_version: str | None
    #: the chart's p0 is the thresholds' expected share (else its first decisions' share)
    from_thresholds: bool
    #: it calls a model, so it has answers whose length the output guard measures
    answers: bool
    #: `spec_version` of its policy section now (None: only the same policy version counts)
    spec_version: str | None = None


@dataclass
class RecentHistory:
    """What the windows were fed before the restart, per decision type, oldest first."""

    lengths: dict[str, list[int]] = field(default_factory=dict)
    outcomes: dict[str, list[str]] = field(default_factory=dict)
    #: records read from the log's tail, and how long that took
    scanned: int = 0
    seconds: float = 0.0

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


def _length_key(results: Mapping[str, Mapping[str, Any]]) -> str | None:
    template = results.get("llm", {}).get("template")
    return template.get("version") if isinstance(template, Mapping) else None


def _chart_key(results: Mapping[str, Mapping[str, Any]]) -> tuple[str | None, str | None]:
    bands = results.get("bands", {})
    model = results.get("decide", {}).get("model")
    return (
        bands.get("stale_thresholds_version") or bands.get("thresholds_version"),
        model.get("sha256") if isinstance(model, Mapping) else None,
    )


@dataclass
class _Run:
    lengths: list[int] = field(default_factory=list)
    lengths_closed: bool = False
    outcomes: list[str] = field(default_factory=list)
    outcomes_closed: bool = False


def recent_history(
    entries_newest_first: Iterator[StoredEntry],
    *,
    policy_version: str,
    spec_versions: Callable[[str], Mapping[str, str]] = lambda _version: {},
    current: Mapping[str, Current],
    lengths: int,
    baseline: int,
    window: int,
    max_scan: int = MAX_SCAN,
) -> RecentHistory:
    """Collect, from records newest first, what each decision type's windows were fed
    (see the module docstring); returned oldest first. `spec_versions(policy_version)`
    gives each decision type's `spec_version` in that stored policy ({} if unknown); it is
    asked once per policy version met."""
    started = time.perf_counter()
    history = RecentHistory()
    runs = {name: _Run(lengths_closed=not cur.answers) for name, cur in current.items()}
    versions_of: dict[str, Mapping[str, str]] = {}

    def same_spec(version: Any, name: str) -> bool:
        if version == policy_version:
            return True
        wanted = current[name].spec_version
        if wanted is None or not isinstance(version, str):
            return False
        if version not in versions_of:
            versions_of[version] = spec_versions(version)
        return versions_of[version].get(name) == wanted

    def done() -> bool:
        for name, run in runs.items():
            if not run.lengths_closed and len(run.lengths) < lengths:
                return False
            if not run.outcomes_closed and (
                not current[name].from_thresholds or len(run.outcomes) < window
            ):
                return False  # a baseline chart wants its whole run, back to its start
        return True

    for entry in entries_newest_first:
        if history.scanned >= max_scan or done():
            break
        if entry.kind not in ("decision", "refusal"):
            continue
        history.scanned += 1
        record = orjson.loads(entry.data)["body"]
        name = record.get("decision_type")
        run = runs.get(name) if isinstance(name, str) else None
        if run is None or record.get("exercise") is True:
            continue
        cur = current[name]
        results = gate_results(record)
        same_type = same_spec(record.get("policy", {}).get("version"), name)
        length = observed_length(results.get("outputs", {}))
        if length is not None and not run.lengths_closed and len(run.lengths) < lengths:
            if same_type and _length_key(results) == cur.template_version:
                run.lengths.append(length)
            else:
                run.lengths_closed = True
        if entry.kind == "decision" and not run.outcomes_closed:
            # every decision record has a bands result; one without is counted as it was
            key = _chart_key(results) if "bands" in results else None
            if same_type and key in (None, (cur.thresholds_version, cur.model_sha256)):
                run.outcomes.append(str(record.get("outcome")))
            else:
                run.outcomes_closed = True
    for name, run in sorted(runs.items()):
        if run.lengths:
            history.lengths[name] = run.lengths[::-1]
        told = run.outcomes[::-1]
        if current[name].from_thresholds:
            told = told[-window:] if window else []
        elif len(told) > baseline + window:
            told = told[:baseline] + told[-window:]
        if told:
            history.outcomes[name] = told
    history.seconds = time.perf_counter() - started
    return history


def seed_board(board: SeriesBoard, history: RecentHistory) -> None:
    """Put the history on a new series board (`warden serve --workers N`) before the
    workers start: each worker replays the board from its first value, so its length
    windows and its band chart begin where the previous server's ended. The values are
    appended under the parent's own id, so no worker logs or counts an alert they raise."""
    values = {f"length:{n}": [length_value(v) for v in vs] for n, vs in history.lengths.items()}
    for name, outcomes in history.outcomes.items():
        values[f"review:{name}"] = [float(review_hit(o)) for o in outcomes]
    for key, series_values in values.items():
        if key in board:
            series = board.series(key)
            for value in series_values:
                series.append(value)
