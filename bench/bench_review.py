"""The review workbench's read path: the queue is derived from the audit log on every read
(claims, releases and reviews are entries; nothing is updated in place), so its cost grows
with the number of queued cases. This measures it.

    .venv/bin/python bench/bench_review.py [--cases 1000] [--repeats 30] [--json PATH]

It fills a fresh data directory with `--cases` queued payments (a third claimed, a sixth
with a four-eyes first review), then times, single-threaded after a warm-up:
`ReviewDesk.queue` (order 500 of them), the queue page and a case page through the
workbench (FastAPI's in-process test client: routing, session check, Jinja2 rendering, and
for the case page Presidio PII masking for the reviewer role).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from common import machine, percentile

from warden.api.app import create_app
from warden.auth import Principal, Role
from warden.gateway import Gateway

SERVICE = Principal("bench-service", Role.SERVICE)
ALICE = Principal("alice", Role.REVIEWER)
BOB = Principal("bob", Role.REVIEWER)


def queued_payment(i: int) -> dict[str, Any]:
    return {
        "decision_type": "payment_fraud",
        "jurisdiction": ("EU", "UK", "US")[i % 3],
        "inputs": {
            "amount": 600.0 + (i * 37) % 20_000,
            "currency": "EUR",
            "merchant_category": ("5732", "5944", "4829")[i % 3],
            "merchant_country": "DE",
            "card_country": "DE",
            "channel": "pos",
            "customer_id": f"c-{i:06d}",
            "account_age_days": 400 + i % 900,
            "txn_count_1h": 1,
            "txn_count_24h": 3,
            "amount_sum_24h": 200.0,
            "is_new_device": True,
            "distance_from_home_km": 4.0,
        },
    }


async def fill(gateway: Gateway, cases: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, cases, 64):
        batch = [queued_payment(i) for i in range(start, min(cases, start + 64))]
        results = await asyncio.gather(*(gateway.decide(r, SERVICE) for r in batch))
        ids += [r["decision_id"] for r in results if r["outcome"] == "review"]
    for n, decision_id in enumerate(ids):
        if n % 3 == 0:
            await gateway.review_claim(decision_id, ALICE)
        if (
            n % 6 == 0
            and gateway.desk.queue_item(gateway.review_case(decision_id, ALICE), _now())[
                "four_eyes"
            ]
        ):
            await gateway.review(
                decision_id,
                ALICE,
                {"outcome": "decline", "rationale": "bench first review", "label": "positive"},
            )
    return ids


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def timed(fn: Any, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="warden-bench-review-") as tmp:
        gateway = Gateway.open(Path(tmp))
        try:
            assert gateway.keyring is not None
            key = gateway.keyring.create("bob", Role.REVIEWER)
            ids = asyncio.run(fill(gateway, args.cases))
            open_cases = len(gateway.review_queue(BOB, 100_000))
            with TestClient(create_app(gateway)) as client:
                page = client.get("/workbench/login")
                token = re.search(r'name="csrf" value="([^"]+)"', page.text)
                assert token is not None
                client.post("/workbench/login", data={"csrf": token.group(1), "api_key": key})
                assert client.get("/workbench/").status_code == 200
                case = ids[1]
                rows = {
                    "ReviewDesk.queue (500 of them)": timed(
                        lambda: gateway.desk.queue(BOB, 500), args.repeats
                    ),
                    "queue page (GET /workbench/)": timed(
                        lambda: client.get("/workbench/"), args.repeats
                    ),
                    "case page (GET /workbench/cases/ID)": timed(
                        lambda: client.get(f"/workbench/cases/{case}"), args.repeats
                    ),
                }
        finally:
            gateway.close()
    table = Table(
        "what", "p50 ms", "p99 ms", "max ms", title=f"{open_cases} open cases ({len(ids)} queued)"
    )
    result: dict[str, Any] = {"cases": len(ids), "open": open_cases, "machine": machine()}
    for name, values in rows.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        table.add_row(name, f"{p50:.1f}", f"{p99:.1f}", f"{max(values):.1f}")
        result[name] = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2)}
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
