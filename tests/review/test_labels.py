"""Label export for retraining: JSONL and Parquet, from the log, through the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import EXAMPLE_POLICY, REVIEWER, SERVICE, review_payment
from tests.helpers_server import run_cli
from warden.auth import Principal, Role
from warden.gateway import Gateway

OTHER = Principal("otto-reviewer", Role.REVIEWER)


def build(data_dir: Path) -> dict[str, str]:
    """Three queued cases: one finalised (fraud), one four-eyes case with only its first
    review (no label yet), one finalised after four eyes (not fraud)."""
    ids = {}
    with Gateway.open(data_dir, EXAMPLE_POLICY) as gw:
        for name, amount in (("single", 900.0), ("pending", 20_000.0), ("double", 30_000.0)):
            ids[name] = gw.decide_sync(review_payment(amount=amount), SERVICE)["decision_id"]

        async def work() -> None:
            fraud = {
                "outcome": "decline",
                "rationale": "Stolen card, confirmed.",
                "label": "positive",
            }
            fine = {
                "outcome": "approve",
                "rationale": "Customer confirmed it.",
                "label": "negative",
            }
            await gw.review_claim(ids["single"], REVIEWER)
            await gw.review(ids["single"], REVIEWER, fraud)
            await gw.review_claim(ids["pending"], REVIEWER)
            await gw.review(ids["pending"], REVIEWER, fraud)
            await gw.review_claim(ids["double"], REVIEWER)
            await gw.review(ids["double"], REVIEWER, fine)
            await gw.review_claim(ids["double"], OTHER)
            await gw.review(ids["double"], OTHER, fine)

        asyncio.run(work())
    return ids


def test_export_jsonl_and_parquet_through_the_cli(data_dir: Path, tmp_path: Path) -> None:
    ids = build(data_dir)
    out = tmp_path / "labels.jsonl"
    result = run_cli(
        "review", "export", "--format", "jsonl", "--out", str(out), "-d", str(data_dir)
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 2 labels" in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {r["decision_id"]: r for r in rows}
    assert set(by_id) == {ids["single"], ids["double"]}  # the pending one has no final label
    assert by_id[ids["single"]]["label"] == "positive" and by_id[ids["single"]]["label_value"] == 1
    double = by_id[ids["double"]]
    assert double["label_value"] == 0 and double["reviewer"] == OTHER.name
    assert double["first_reviewer"] == REVIEWER.name
    assert double["inputs"]["amount"] == 30_000.0 and double["score"] > 0

    parquet = tmp_path / "labels.parquet"
    result = run_cli("review", "export", "-f", "parquet", "-o", str(parquet), "-d", str(data_dir))
    assert result.returncode == 0, result.stderr
    table = pq.read_table(parquet)
    assert table.num_rows == 2
    assert table.column_names[:4] == ["decision_id", "decision_type", "label", "label_value"]
    columns = table.to_pydict()
    assert sorted(columns["label_value"]) == [0, 1]
    assert sorted(columns["input.amount"]) == [900.0, 30_000.0]
    assert set(columns["input.is_new_device"]) == {True}


def test_bad_format_is_a_one_line_error(data_dir: Path, tmp_path: Path) -> None:
    build(data_dir)
    out = tmp_path / "labels.csv"
    result = run_cli("review", "export", "--format", "csv", "--out", str(out), "-d", str(data_dir))
    assert result.returncode == 2
    assert "--format: unknown format 'csv' (jsonl, parquet)" in result.stderr
    assert not out.exists()
