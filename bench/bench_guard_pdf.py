"""PDF validation latency on generated claim letters: `analyze_pdf` (extraction and the
hidden-content checks) and the whole validation the inputs gate runs on a PDF (the
analysis, then the injection detector over its text on the document surface).

Target from the issue: a clean 10-page PDF validated in at most 200 ms at p99.

Each analysis runs in a child of the fork server (`warden.guard.forkserver`); the bench
waits for the server to be up before it measures, so no sample is a fork of the bench.

    .venv/bin/python bench/bench_guard_pdf.py [--runs 100] [--pages 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT))
from common import machine, percentile  # noqa: E402
from tests.guard import pdf_fixtures as fx  # noqa: E402

from warden.guard.documents import analyze_pdf  # noqa: E402
from warden.guard.injection import InjectionDetector  # noqa: E402

TARGET_P99_MS = 200.0


def _with_hidden_text(pages: int) -> bytes:
    """A `pages`-page letter with invisible text on its last page (the slower path:
    visible text is rebuilt character by character on pages that hide something)."""
    from fpdf import FPDF

    pdf = fx._pdf()
    for number in range(1, pages + 1):
        fx._letter_page(pdf, number, pages)
    assert isinstance(pdf, FPDF)
    with pdf.local_context(text_mode="INVISIBLE"):
        pdf.text(20, 200, fx.INSTRUCTION)
    return bytes(pdf.output())


def validate(data: bytes) -> None:
    """What the inputs gate does with a PDF (warden.guard.surfaces)."""
    report = analyze_pdf(data)
    InjectionDetector.load_default().scan(report.all_text_for_scanning, "document")


def measure(
    data: bytes, runs: int, warmup: int = 5, step: Callable[[bytes], object] = analyze_pdf
) -> dict[str, float]:
    for _ in range(warmup):
        step(data)
    latencies = []
    for _ in range(runs):
        started = time.perf_counter()
        step(data)
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        "runs": runs,
        "bytes": len(data),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "mean_ms": sum(latencies) / len(latencies),
    }


def second_stage(text: str, runs: int) -> dict[str, Any]:
    """How many segments of a document the second stage reads (the undecided ones, at most
    the cap), and its cost alone: that batch through the MiniLM encoder."""
    import numpy as np

    from warden.guard.classifier import featurize, logit, unit_array
    from warden.guard.normalize import normalize

    clf = InjectionDetector.load_default().classifier
    if clf.stage is None:
        return {"segments": 0}
    t = normalize(text, "document").text
    low = t.lower()
    raw = low.encode("utf-8", "surrogatepass")
    spans = unit_array(t, "document", clf.spec, low)
    z, _ = clf.document_logits(featurize(low, clf.spec), spans, raw)
    z = z - logit(clf.thresholds["document"])
    band = int(np.sum((z >= -clf.stage.band) & (z < 0)))
    cand = clf.stage.candidates(z)
    texts = [raw[spans[k, 0] : spans[k, 1]].decode("utf-8", "replace") for k in cand]
    enc = clf.encoder()
    lat = []
    for _ in range(runs):
        started = time.perf_counter()
        enc.encode(texts)
        lat.append((time.perf_counter() - started) * 1000)
    return {
        "segments": len(texts),
        "in_band": band,
        "of": len(spans),
        "pieces": [len(enc.pieces(x)) for x in texts],
        "batch_p50_ms": percentile(lat, 50) if texts else 0.0,
        "batch_p99_ms": percentile(lat, 99) if texts else 0.0,
        "per_segment_p50_ms": percentile(lat, 50) / len(texts) if texts else 0.0,
    }


def _wait_for_fork_server() -> None:
    """The first calls fork from the caller while the server starts: not what is measured."""
    from warden.guard import isolated

    analyze_pdf(fx.clean_letter(pages=1))
    until = time.monotonic() + 30
    while not isolated._SERVER.runs_like_caller("warden.guard.documents"):
        if time.monotonic() > until:
            raise SystemExit("the fork server did not start")
        time.sleep(0.05)


def run(runs: int, pages: int) -> dict[str, Any]:
    _wait_for_fork_server()
    cases: list[tuple[str, Callable[[], bytes]]] = [
        (f"clean, {pages} pages", lambda: fx.clean_letter(pages=pages)),
        (f"invisible text on page {pages} of {pages}", lambda: _with_hidden_text(pages)),
        ("clean, 1 page", lambda: fx.clean_letter(pages=1)),
    ]
    rows = []
    for label, make in cases:
        data = make()
        report = analyze_pdf(data)
        stage = second_stage(report.all_text_for_scanning, runs)
        for step_name, step in (("analysis", analyze_pdf), ("validated", validate)):
            row: dict[str, Any] = {
                "case": label,
                "step": step_name,
                "pages": report.pages,
                "hidden": len(report.hidden),
                "text_bytes": len(report.all_text_for_scanning.encode()),
                "second_stage": stage,
            }
            row.update(measure(data, runs, step=step))
            rows.append(row)
    return {
        "benchmark": "guard_pdf",
        "target_p99_ms": TARGET_P99_MS,
        "machine": machine(),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args.runs, args.pages)
    table = Table(
        title=f"PDF validation, {args.runs} runs per case (target: p99 <= {TARGET_P99_MS:.0f} "
        f"ms for a clean {args.pages}-page PDF validated)"
    )
    columns = ("case", "step", "bytes", "text", "pages", "hidden", "p50 ms", "p99 ms", "max ms")
    for column in columns:
        table.add_column(column, justify="left" if column in ("case", "step") else "right")
    for row in result["rows"]:
        table.add_row(
            row["case"],
            row["step"],
            f"{row['bytes']:,}",
            f"{row['text_bytes']:,}",
            str(row["pages"]),
            str(row["hidden"]),
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            f"{row['max_ms']:.1f}",
        )
    Console().print(table)
    for row in result["rows"][::2]:
        st = row["second_stage"]
        if st.get("segments"):
            Console().print(
                f"{row['case']}: second stage reads {st['segments']} of the {st['in_band']}"
                f" undecided segments (of {st['of']}; {st['pieces']} word pieces): batch p50"
                f" {st['batch_p50_ms']:.1f} ms, p99 {st['batch_p99_ms']:.1f} ms"
                f" ({st['per_segment_p50_ms']:.1f} ms per segment at p50)"
            )
    Console().print(f"machine: {result['machine']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
