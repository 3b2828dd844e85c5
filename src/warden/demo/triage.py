"""The demo's claims-triage part: upstream *simulators* (`warden dev upstream`, real
processes on free 127.0.0.1 ports) stand in for hosted models in their regions; a seeded
stream of EU, UK and US claims goes through the LLM and proposal gates; halfway the EU
primary is killed, so the EU claims fail over to the EU secondary; then the routing per
jurisdiction is proved from the log and cross-checked against the simulators' own access
logs (`warden routes verify`)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from warden.auth import Principal
from warden.endpoints.simulated import SimulatedEndpoint
from warden.gateway import Gateway, RefusedError

CURRENCY = {"EU": "EUR", "UK": "GBP", "US": "USD"}
DESCRIPTIONS = [
    ("device", "My phone fell on the pavement and the screen cracked."),
    ("travel", "My suitcase was delayed for three days and I bought clothes."),
    ("household", "A pipe burst in the kitchen and damaged the floor."),
    ("device", "My laptop was stolen from a café, I paid in cash and have no receipt."),
    ("motor", "Someone scratched my car in a car park; there are no witnesses."),
    ("travel", "My flight was cancelled and I had to pay for a hotel night."),
]


def triage_requests(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        jurisdiction = rng.choice(["EU", "EU", "EU", "UK", "US"])
        kind, text = rng.choice(DESCRIPTIONS)
        amount = round(rng.choice([rng.uniform(40, 900), rng.uniform(900, 8000)]), 2)
        out.append(
            {
                "decision_type": "claims_triage",
                "jurisdiction": jurisdiction,
                "inputs": {
                    "policy_number": f"P-{300000 + i:06d}",
                    "claim_type": kind,
                    "claim_amount": amount,
                    "currency": CURRENCY[jurisdiction],
                    "description": f"{text} I am claiming {amount:.2f} {CURRENCY[jurisdiction]}.",
                },
            }
        )
    return out


async def drive_triage(
    gateway: Gateway,
    requests: list[dict[str, Any]],
    caller: Principal,
    sims: dict[str, SimulatedEndpoint],
    concurrency: int = 16,
) -> Counter[tuple[str, str]]:
    """Decide the stream; kill the EU primary halfway. Counts (jurisdiction, outcome)."""
    outcomes: Counter[tuple[str, str]] = Counter()
    queue = list(reversed(requests))
    half = len(requests) // 2

    async def worker() -> None:
        while queue:
            request = queue.pop()
            if len(queue) == half:
                sims["llm-eu-1"].kill()
            try:
                outcome = (await gateway.decide(request, caller))["outcome"]
            except RefusedError as exc:
                outcome = f"refused ({exc.code})"
            outcomes[(request["jurisdiction"], outcome)] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await gateway.endpoints.stop()
    return outcomes


def window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now, now + timedelta(days=1)
