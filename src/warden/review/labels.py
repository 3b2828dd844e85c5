"""Reviewer labels for retraining and calibration, exported as JSONL or Parquet.

One row per finalised review (`review` entry): the decision's inputs and any features the
decide gate recorded, the score it had, and the label the (final) reviewer gave —
`positive` when the risk the score estimates was real (e.g. fraud). Read from the log in
one pass; nothing else is consulted."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from warden.audit.entry import StoredEntry

Format = Literal["jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("jsonl", "parquet")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


def _features(record: dict[str, Any]) -> dict[str, Any]:
    """Features a gate recorded (e.g. the model's), whatever gate recorded them."""
    for gate in record.get("gates", []):
        result = gate.get("result", {})
        features = result.get("features")
        if isinstance(features, dict):
            return features
    return {}


def _model(record: dict[str, Any]) -> dict[str, Any] | None:
    for gate in record.get("gates", []):
        model = gate.get("result", {}).get("model")
        if isinstance(model, dict):
            return model
    return None


def label_rows(
    entries: Iterable[StoredEntry], decision_type: str | None = None
) -> Iterator[dict[str, Any]]:
    queued: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.kind == "decision" and entry.decision_id is not None:
            body = entry.body()
            if body.get("outcome") == "review" and (
                decision_type is None or body.get("decision_type") == decision_type
            ):
                queued[entry.decision_id] = body
        elif entry.kind == "review" and entry.decision_id in queued:
            review = entry.body()
            if review.get("label") not in ("positive", "negative"):
                continue  # a review from before labels existed
            record = queued.pop(entry.decision_id)
            first = review.get("first_review") or {}
            yield {
                "decision_id": entry.decision_id,
                "decision_type": record["decision_type"],
                "jurisdiction": record["jurisdiction"],
                "received_at": record["received_at"],
                "policy_version": record["policy"]["version"],
                "thresholds_version": record.get("thresholds_version"),
                "score": record.get("score"),
                "model": _model(record),
                "label": review["label"],
                "label_value": 1 if review["label"] == "positive" else 0,
                "reviewer_outcome": review["outcome"],
                "reviewer": review["reviewer"]["name"],
                "first_reviewer": first.get("reviewer"),
                "reviewed_at": review["reviewed_at"],
                "review_seq": entry.seq,
                "inputs": record["request"]["inputs"],
                "features": _features(record),
            }


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """One Parquet row: inputs and features become `input.x` / `feature.x` columns (scalar
    values only; documents and other nested values stay in `inputs_json`)."""
    out = {k: v for k, v in row.items() if k not in ("inputs", "features", "model")}
    model = row.get("model") or {}
    out["model_name"] = model.get("name")
    out["model_version"] = None if model.get("version") is None else str(model.get("version"))
    out["inputs_json"] = json.dumps(row["inputs"], sort_keys=True, ensure_ascii=False)
    for prefix, values in (("input", row["inputs"]), ("feature", row["features"])):
        for name, value in (values or {}).items():
            if value is None or isinstance(value, bool | int | float | str):
                out[f"{prefix}.{name}"] = value
    return out


def _column_types(rows: list[dict[str, Any]]) -> dict[str, type]:
    """One Python type per column, so pyarrow never meets a column of mixed types."""
    seen: dict[str, set[type]] = {}
    for row in rows:
        for name, value in row.items():
            if value is not None:
                seen.setdefault(name, set()).add(type(value))
    types: dict[str, type] = {}
    for name, kinds in seen.items():
        if len(kinds) == 1:
            types[name] = kinds.pop()
        elif kinds <= {int, float}:
            types[name] = float
        else:
            types[name] = str
    return types


def to_parquet(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = [_flat(r) for r in rows]
    types = _column_types(flat)
    columns = sorted({name for row in flat for name in row})
    leading = [c for c in ("decision_id", "decision_type", "label", "label_value") if c in columns]
    columns = leading + [c for c in columns if c not in leading]
    arrays = {}
    for name in columns:
        kind = types.get(name, str)
        values = [row.get(name) for row in flat]
        if kind is str:
            values = [None if v is None else str(v) for v in values]
        elif kind is float:
            values = [None if v is None else float(v) for v in values]
        arrays[name] = values
    table = pa.table(arrays) if columns else pa.table({"decision_id": pa.array([], pa.string())})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def to_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(
        json.dumps(r, sort_keys=True, ensure_ascii=False).encode() + b"\n" for r in rows
    )


def export_labels(
    entries: Iterable[StoredEntry], fmt: str, decision_type: str | None = None
) -> tuple[bytes, int]:
    """The file's bytes and the number of labels in it."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: unknown format {fmt!r} (jsonl, parquet)")
    rows = list(label_rows(entries, decision_type))
    data = to_jsonl(rows) if fmt == "jsonl" else to_parquet(rows)
    return data, len(rows)


def write_labels(
    entries: Iterable[StoredEntry], fmt: str, out: Path, decision_type: str | None = None
) -> int:
    """Write the export to `out` atomically (a temporary file, then a rename)."""
    data, count = export_labels(entries, fmt, decision_type)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return count
