"""Run every benchmark in turn and keep their JSON under bench/results/ (`make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    runs = [
        ["bench_python_api.py", "--json", str(RESULTS / "python_api.json")],
        ["bench_http.py", "--json", str(RESULTS / "http.json")],
        ["bench_guard_injection.py"],
        ["bench_guard_pdf.py"],
        ["bench_guard_pii.py"],
        ["bench_routing.py", "--json", str(RESULTS / "routing.json")],
        ["bench_gateway_overhead.py", "--json", str(RESULTS / "gateway_overhead.json")],
        ["bench_review.py", "--json", str(RESULTS / "review.json")],
        ["bench_model.py", "--json", str(RESULTS / "model.json")],
    ]
    for script, *args in runs:
        print(f"\n=== {script}", flush=True)
        subprocess.run([sys.executable, str(BENCH / script), *args], check=True)


if __name__ == "__main__":
    main()
