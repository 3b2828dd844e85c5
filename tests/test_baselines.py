"""A restarted server takes its rolling windows over from the audit log's tail
(`warden.baselines`): the output guard's answer-length baseline and the band monitor's
review-share chart, with one worker and with `--workers 2` (through the series board)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.helpers_llm import served_world
from tests.helpers_server import WardenServer
from tests.helpers_upstream import upstreams  # noqa: F401  (fixture)
from warden.audit.entry import NewEntry
from warden.audit.sqlite_store import SQLiteAuditStore
from warden.baselines import RecentHistory, observed_length, recent_history, seed_board
from warden.guard.anomaly import OutputAnomalyChecker
from warden.models.monitor import BandMonitor
from warden.series_board import SeriesBoard, series_names

HEADERS = {"X-Warden-Decision-Type": "assistant_chat", "X-Warden-Jurisdiction": "EU"}


def scripted_chat(answer: str) -> dict[str, Any]:
    return {
        "model": "x",
        "messages": [
            {"role": "system", "content": f"[simulator-script] {answer}"},
            {"role": "user", "content": "Where is my claim?"},
        ],
    }


def record(
    decision_type: str,
    outcome: str,
    *,
    length: int | None = None,
    policy: str = "p1",
    thresholds: str | None = "t1",
    exercise: bool = False,
    text: str | None = None,
) -> dict[str, Any]:
    outputs: dict[str, Any] = {"checked": length is not None or text is not None}
    if length is not None:
        outputs.update(length=length, text="x" * length, redacted=False)
    if text is not None:
        outputs.update(text=text, redacted=False)
    body: dict[str, Any] = {
        "decision_type": decision_type,
        "outcome": outcome,
        "policy": {"version": policy},
        "thresholds_version": thresholds,
        "gates": [{"gate": "outputs", "result": outputs}],
    }
    if exercise:
        body["exercise"] = True
    return body


def history_of(store: SQLiteAuditStore, **kw: Any) -> Any:
    return recent_history(
        store.newest_entries(("decision", "refusal")),
        decision_types=["chat", "fraud"],
        policy_version="p1",
        thresholds_versions={"chat": "t1", "fraud": "t1"},
        **kw,
    )


def test_recent_history_takes_what_the_windows_were_fed_oldest_first(tmp_path: Path) -> None:
    store = SQLiteAuditStore(tmp_path / "data")
    try:
        bodies = [
            record("chat", "review", length=5, policy="p0", thresholds="t0"),  # older chart
            record("chat", "auto_approve", length=10),
            record("chat", "review", length=20, exercise=True),  # a red-team exercise
            record("chat", "auto_approve", text="abc"),  # an older record: no length
            record("fraud", "auto_decline"),  # no outward text
            record("chat", "review", length=30),
            record("chat", "auto_approve", length=40),
        ]
        for i, body in enumerate(bodies):
            store.submit(NewEntry.of("decision", f"d{i}", body)).result()
        store.submit(NewEntry.of("refusal", "r", record("chat", "refused", length=50))).result()
        store.submit(NewEntry.of("review", "d1", {"outcome": "approve"})).result()

        history = history_of(store, lengths=500, outcomes=1500)
        # lengths of every observed answer, refusals included, exercises not; any policy
        assert history.lengths == {"chat": [5, 10, 3, 30, 40, 50]}
        # outcomes the monitor counted (decisions only), back to the chart's start
        assert history.outcomes == {
            "chat": ["auto_approve", "auto_approve", "review", "auto_approve"],
            "fraud": ["auto_decline"],
        }
        assert history.summary()["chat"] == {"lengths": 6, "outcomes": 4}

        capped = history_of(store, lengths=2, outcomes=1)
        assert capped.lengths == {"chat": [40, 50]}
        assert capped.outcomes == {"chat": ["auto_approve"], "fraud": ["auto_decline"]}
    finally:
        store.close()


def test_observed_length_is_never_guessed_from_a_redacted_text() -> None:
    assert observed_length({"checked": True, "length": 12, "text": "x", "redacted": True}) == 12
    assert observed_length({"checked": True, "text": "abcd", "redacted": False}) == 4
    assert observed_length({"checked": True, "text": "[EMAIL]", "redacted": True}) is None
    assert observed_length({"checked": False, "reason": "no outward text"}) is None


def test_a_seeded_board_gives_every_worker_the_windows_of_one_that_saw_it_all(
    tmp_path: Path,
) -> None:
    lengths = [40 + (i % 7) for i in range(60)]
    outcomes = ["review" if i % 5 == 0 else "auto_approve" for i in range(1600)]
    history = RecentHistory(lengths={"chat": lengths}, outcomes={"chat": outcomes})
    path = tmp_path / "series.bin"
    names = series_names(["chat"])
    SeriesBoard.create(path, names).close()
    parent = SeriesBoard(path, names)
    seed_board(parent, history)

    alone = OutputAnomalyChecker()
    for length in lengths:
        alone.observe("chat", length)
    solo = BandMonitor()
    solo.seed("chat", outcomes)
    for _ in range(2):  # two workers, each its own mapping of the board
        board = SeriesBoard(path, names)
        checker = OutputAnomalyChecker()
        checker.share(board)
        assert checker.baseline("chat") == alone.baseline("chat")
        monitor = BandMonitor()
        monitor.share(board, ["chat"])
        shared = monitor.status()["chat"]
        mine = solo.status()["chat"]
        for key in ("decisions_seen", "window_filled", "review_share", "baseline_share"):
            assert shared[key] == mine[key], key
        assert mine["decisions_seen"] == 1600 and mine["window_filled"] == 500
        assert mine["baseline_share"] == 0.2
        board.close()
    parent.close()


def test_a_restarted_server_judges_lengths_against_the_baseline_it_had(
    upstreams: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Answers of ≈ 40 characters build the baseline; after a restart — with two workers,
    then with one — an answer of 2,000 characters is held for review at once, and the
    band monitor counts the decisions decided before the restart. Without the seeding the
    restarted server had no baseline and let the long answer through."""
    scripted = {"llm-eu-1": {"scripted": True}}
    with served_world(upstreams, tmp_path, **scripted) as (world, server, key, auditor):
        url = f"{server.url}/v1/chat/completions"
        headers = {**HEADERS, "X-API-Key": key}
        with httpx.Client(timeout=30) as http:
            for i in range(36):
                answer = f"Your claim {i:03d} is with our team; expect news soon."
                done = http.post(url, json=scripted_chat(answer), headers=headers)
                assert done.status_code == 200, done.text
        data_dir = server.data_dir
    long_answer = "All of your policy details, as requested. " * 48  # ≈ 2,000 characters
    for workers, seen in ((2, 36), (1, 37)):
        log = tmp_path / f"restart-{workers}.log"
        with WardenServer(data_dir, log, policy=world.policy, workers=workers) as again:
            again.start(timeout=20 if workers == 1 else 60)
            assert "baselines seeded from the audit log's tail" in again.log()
            with httpx.Client(timeout=30) as http:
                monitor = http.get(
                    f"{again.url}/v1/bands/monitor", headers={"X-API-Key": auditor}
                ).json()["decision_types"]["assistant_chat"]
                assert monitor["decisions_seen"] == seen, monitor
                held = http.post(
                    f"{again.url}/v1/chat/completions",
                    json=scripted_chat(long_answer),
                    headers={**HEADERS, "X-API-Key": key},
                )
            assert held.status_code == 409, held.text
            decision_id = held.headers["X-Warden-Decision-Id"]
            with httpx.Client(timeout=30) as http:
                entries = http.get(
                    f"{again.url}/v1/decisions/{decision_id}", headers={"X-API-Key": auditor}
                ).json()["entries"]
            body = entries[-1]["body"]
            assert body["stop"]["code"] == "outputs.anomaly", body["stop"]
            assert "too_long" in str(body["gates"]), body["stop"]
