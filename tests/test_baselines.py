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
from warden.baselines import Current, RecentHistory, observed_length, recent_history, seed_board
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
    text: str | None = None,
    policy: str = "p1",
    thresholds: str | None = "t1",
    stale: str | None = None,
    model: str | None = "m1",
    template: str | None = None,
    exercise: bool = False,
) -> dict[str, Any]:
    """A decision record as far as the seeding reads it."""
    outputs: dict[str, Any] = {"checked": length is not None or text is not None}
    if length is not None:
        outputs.update(length=length, text="x" * length, redacted=False)
    if text is not None:  # a record of format 1: no length
        outputs.update(text=text, redacted=False)
    decide: dict[str, Any] = {"score": 0.1}
    if model is not None:
        decide["model"] = {"sha256": model}
    gates = [
        {"gate": "llm", "result": {"template": {"id": "t", "version": template}}},
        {"gate": "decide", "result": decide},
        {
            "gate": "bands",
            "result": {"thresholds_version": thresholds, "stale_thresholds_version": stale},
        },
        {"gate": "outputs", "result": outputs},
    ]
    body: dict[str, Any] = {
        "decision_type": decision_type,
        "outcome": outcome,
        "policy": {"version": policy},
        "gates": gates,
    }
    if exercise:
        body["exercise"] = True
    return body


CURRENT = {
    "chat": Current("t1", "m1", None, from_thresholds=True, answers=True),
    "fraud": Current("t1", "m1", None, from_thresholds=True, answers=False),
}


def history_of(store: SQLiteAuditStore, current: Any = None, **kw: Any) -> Any:
    options = {"lengths": 500, "baseline": 1000, "window": 500, **kw}
    return recent_history(
        store.newest_entries(("decision", "refusal")),
        policy_version="p1",
        current=current or CURRENT,
        **options,
    )


def write(store: SQLiteAuditStore, bodies: list[dict[str, Any]], kind: str = "decision") -> None:
    for i, body in enumerate(bodies):
        store.submit(NewEntry.of(kind, f"{kind}{i}", body)).result()


def test_recent_history_takes_what_the_windows_were_fed_oldest_first(tmp_path: Path) -> None:
    store = SQLiteAuditStore(tmp_path / "data")
    try:
        write(
            store,
            [
                record("chat", "review", length=5, policy="p0"),  # an older policy
                record("chat", "auto_approve", length=10),
                record("chat", "review", length=20, exercise=True),  # a red-team exercise
                record("chat", "auto_approve", text="abc"),  # format 1: no length
                record("fraud", "auto_decline"),  # no outward text
                record("chat", "review", length=30, thresholds="static", stale="t1"),
                record("chat", "auto_approve", length=40),
            ],
        )
        write(store, [record("chat", "refused", length=50)], kind="refusal")
        store.submit(NewEntry.of("review", "d1", {"outcome": "approve"})).result()

        history = history_of(store)
        # every observed answer (refusals included, exercises not), back to the policy change
        assert history.lengths == {"chat": [10, 3, 30, 40, 50]}
        # the outcomes the monitor counted (decisions only), back to the policy change; a
        # thresholds version stale for the model is still the active one
        assert history.outcomes == {
            "chat": ["auto_approve", "auto_approve", "review", "auto_approve"],
            "fraud": ["auto_decline"],
        }
        assert history.summary()["chat"] == {"lengths": 5, "outcomes": 4}
        assert history.scanned == 8  # every decision and refusal record (the exercise too)

        capped = history_of(store, lengths=2, window=1)
        assert capped.lengths == {"chat": [40, 50]}
        assert capped.outcomes == {"chat": ["auto_approve"], "fraud": ["auto_decline"]}
    finally:
        store.close()


def test_a_new_model_thresholds_version_or_prompt_starts_the_windows_over(
    tmp_path: Path,
) -> None:
    store = SQLiteAuditStore(tmp_path / "data")
    try:
        write(
            store,
            [
                record("chat", "review", length=7, model="m0", template="v0"),
                record("chat", "review", length=8, thresholds="t0", template="v0"),
                record("chat", "auto_approve", length=9, template="v1"),
            ],
        )
        current = {"chat": Current("t1", "m1", "v1", from_thresholds=True, answers=True)}
        history = history_of(store, current)
        assert history.lengths == {"chat": [9]}  # the prompt template changed before it
        assert history.outcomes == {"chat": ["auto_approve"]}  # the thresholds changed
        moved = {"chat": Current("t1", "m2", "v1", from_thresholds=True, answers=True)}
        assert history_of(store, moved).outcomes == {}  # the model behind the alias moved
    finally:
        store.close()


def test_a_baseline_chart_keeps_its_early_share_and_its_newest_window(tmp_path: Path) -> None:
    """Without thresholds the chart's p0 is the share over its first decisions: the
    seeding takes the run's oldest `baseline` outcomes and its newest `window`, so a
    drift under way before the restart is still measured against the early share."""
    store = SQLiteAuditStore(tmp_path / "data")
    try:
        early = [record("chat", "review" if i % 50 == 0 else "auto_approve") for i in range(300)]
        late = [record("chat", "review" if i % 4 == 0 else "auto_approve") for i in range(100)]
        write(store, [record("chat", "review", policy="p0"), *early, *late])
        current = {"chat": Current("t1", "m1", None, from_thresholds=False, answers=False)}
        history = history_of(store, current, baseline=200, window=50)
        told = history.outcomes["chat"]
        assert len(told) == 250 and history.scanned == 401  # the whole run was read
        assert told[:200] == [r["outcome"] for r in early[:200]]
        assert told[200:] == [r["outcome"] for r in late[-50:]]
        monitor = BandMonitor(window=50, baseline=200)
        monitor.seed("chat", told)
        status = monitor.status()["chat"]
        assert status["baseline_share"] == 0.02 and status["review_share"] == 0.24
        assert status["alert"] is True  # the drift is still seen after the restart
        on_thresholds = {"chat": Current("t1", "m1", None, from_thresholds=True, answers=False)}
        newest = history_of(store, on_thresholds, baseline=200, window=50)
        assert newest.outcomes["chat"] == [r["outcome"] for r in late[-50:]]
        assert newest.scanned == 50  # a thresholds chart stops at its window
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


def test_an_edit_elsewhere_in_the_policy_starts_no_window_over(tmp_path: Path) -> None:
    """Records of another policy version still count for a decision type whose own
    section is the same there (`spec_version`); one whose section changed, or whose policy
    file is unknown, starts over."""
    store = SQLiteAuditStore(tmp_path / "data")
    try:
        write(
            store,
            [
                record("chat", "review", length=5, policy="p-unknown"),
                record("chat", "auto_approve", length=6, policy="p-other-rules"),
                record("fraud", "auto_decline", policy="p-other-rules"),
                record("chat", "auto_approve", length=7, policy="p-new-url"),
                record("fraud", "review", policy="p-new-url"),
                record("chat", "review", length=8),
            ],
        )
        stored = {
            "p-new-url": {"chat": "chat-a", "fraud": "fraud-a"},  # only an endpoint moved
            "p-other-rules": {"chat": "chat-a", "fraud": "fraud-0"},  # fraud's rules differ
        }
        asked: list[str] = []

        def versions(policy_version: str) -> dict[str, str]:
            asked.append(policy_version)
            return stored.get(policy_version, {})

        current = {
            "chat": Current(
                "t1", "m1", None, from_thresholds=True, answers=True, spec_version="chat-a"
            ),
            "fraud": Current(
                "t1", "m1", None, from_thresholds=True, answers=False, spec_version="fraud-a"
            ),
        }
        history = recent_history(
            store.newest_entries(("decision", "refusal")),
            policy_version="p1",
            spec_versions=versions,
            current=current,
            lengths=500,
            baseline=1000,
            window=500,
        )
        assert history.lengths == {"chat": [6, 7, 8]}  # back to the unknown policy file
        assert history.outcomes == {
            "chat": ["auto_approve", "auto_approve", "review"],
            "fraud": ["review"],  # its own section changed before that
        }
        assert sorted(asked) == ["p-new-url", "p-other-rules", "p-unknown"]  # once each
        # without spec versions only the same policy version counts, as before
        assert history_of(store).lengths == {"chat": [8]}
    finally:
        store.close()


def test_spec_version_names_what_a_decision_type_decides_with() -> None:
    from warden.gateway import DEFAULT_POLICY
    from warden.policy.loader import load_policy_bytes, spec_versions

    raw = DEFAULT_POLICY.read_bytes()
    base = load_policy_bytes(raw)
    versions = {name: c.spec_version for name, c in base.decision_types.items()}
    assert spec_versions(raw) == versions and all(
        v.startswith("sha256:") for v in versions.values()
    )

    def edited(old: str, new: str) -> dict[str, str]:
        assert raw.count(old.encode()) == 1, old
        changed = load_policy_bytes(raw.replace(old.encode(), new.encode()))
        assert changed.version != base.version
        return {name: c.spec_version for name, c in changed.decision_types.items()}

    assert edited("http://127.0.0.1:18101/v1", "http://10.0.0.7:8000/v1") == versions  # a URL
    described = edited("Screen a card payment before", "Screen every card payment before")
    assert described == versions  # a description decides nothing
    rules = edited("Amounts of 50,000 or more are always seen", "Amounts of 50,000 or more go to")
    assert rules["payment_fraud"] != versions["payment_fraud"]
    assert {n: v for n, v in rules.items() if n != "payment_fraud"} == {
        n: v for n, v in versions.items() if n != "payment_fraud"
    }
    assert spec_versions(b"decision_types: [") == {}  # not YAML
    assert spec_versions(b"name: x\n") == {}  # not a valid policy under this schema
