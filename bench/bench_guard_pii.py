"""Output PII redaction latency: ``PiiRedactor.redact()`` on 2 KB answers with a few PII
items each (target: p99 <= 5 ms), plus the output anomaly checks on the same answers.

    .venv/bin/python bench/bench_guard_pii.py [--answers 200] [--iterations 3000] [--json PATH]

The answers are generated (seeded): claims/dispute prose with 2-5 PII items — card numbers,
IBANs, SSNs, e-mail addresses, phone numbers, SWIFT codes, account numbers — at random
places, padded to exactly 2,048 characters. Each call is timed on its own, single-threaded,
after a warm-up and ``warden.runtime.tune_for_serving()`` (GC frozen after start-up, as in
the server; ``--no-gc-tuning`` to skip); every redacted answer is checked to contain none
of its PII values.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, percentile

from warden.guard.anomaly import OutputAnomalyChecker, new_canary
from warden.guard.pii import PiiRedactor, luhn_ok
from warden.runtime import tune_for_serving

SIZE = 2048
TARGET_P99_MS = 5.0

PROSE = [
    "Thank you for contacting us about the disputed transaction.",
    "We reviewed the merchant's response and the card network's chargeback rules.",
    "The charge was posted on 12 March 2024 and reversed two days later.",
    "Based on the documents provided, the claim meets the policy's conditions.",
    "The deductible of EUR 250.00 applies and has been subtracted from the payout.",
    "Our records show three earlier claims in the last 24 months, all settled.",
    "The repair estimate of 1,840.50 is within the expected range for this vehicle.",
    "Please note that the provisional credit becomes final after 45 days.",
    "If you disagree with this decision you may ask for a review within 30 days.",
    "The fraud score for this payment was low and no further checks were needed.",
    "We have updated the case file and informed the adjuster responsible.",
    "Reference 2024-CLM-00417 has been attached to the case for your convenience.",
]


def card(rng: random.Random) -> str:
    prefix = rng.choice(["4", "51", "55", "2221", "37"])
    length = 15 if prefix == "37" else 16
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    number = next(body + d for d in "0123456789" if luhn_ok(body + d))
    if length == 16 and rng.random() < 0.5:
        return " ".join(number[i : i + 4] for i in range(0, 16, 4))
    return number


def iban(rng: random.Random) -> str:
    bban = "".join(rng.choice("0123456789") for _ in range(18))  # DE: 8 bank + 10 account
    moved = bban + "1314" + "00"  # "DE" -> 13 14, check digits 00
    check = 98 - int(moved) % 97
    return f"DE{check:02d}{bban}"


def pii_items(rng: random.Random) -> list[tuple[str, str]]:
    """(sentence, value) pairs."""
    makers = [
        lambda: (lambda v: (f"The refund goes to card {v}.", v))(card(rng)),
        lambda: (lambda v: (f"Funds were sent to IBAN {v}.", v))(iban(rng)),
        lambda: (lambda v: (f"The SSN on the application is {v}.", v))(
            f"{rng.randint(101, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
        ),
        lambda: (lambda v: (f"Contact {v} for questions.", v))(
            f"{rng.choice(['jane', 'omar', 'li', 'mark'])}.{rng.randint(1, 999)}@example.com"
        ),
        lambda: (lambda v: (f"You can call the claimant on {v}.", v))(
            f"+44 20 7946 {rng.randint(0, 999):04d}"
        ),
        lambda: (lambda v: (f"Our SWIFT code is {v}.", v))(rng.choice(["DEUTDEFF", "NWBKGB2L"])),
        lambda: (lambda v: (f"Paid from account number {v}.", v))(
            str(rng.randint(10_000_000, 99_999_999))
        ),
    ]
    return [maker() for maker in rng.sample(makers, rng.randint(2, 5))]


def answer(rng: random.Random) -> tuple[str, list[str]]:
    items = pii_items(rng)
    sentences = [s for s, _ in items]
    budget = SIZE - sum(len(s) + 1 for s in sentences)
    filler: list[str] = []
    while sum(len(s) + 1 for s in filler) < budget:
        filler.append(rng.choice(PROSE))
    for s in sentences:
        filler.insert(rng.randint(0, len(filler)), s)
    text = " ".join(filler)
    # trim prose from the end (never a PII sentence) to exactly SIZE characters
    while len(text) > SIZE:
        cut = text.rfind(". ", 0, len(text) - 1)
        tail = text[cut + 2 :]
        if any(s in tail for s in sentences):
            break
        text = text[: cut + 1]
    text = (text + " " * SIZE)[:SIZE]
    return text, [v for _, v in items]


def time_calls(fn: Any, texts: list[str], iterations: int) -> tuple[list[float], list[float]]:
    """(wall-clock ms, this thread's CPU ms) per call. On a shared machine the wall-clock
    tail includes time the process was preempted; CPU time does not."""
    wall: list[float] = []
    cpu: list[float] = []
    for i in range(iterations):
        text = texts[i % len(texts)]
        c0 = time.thread_time()
        t0 = time.perf_counter()
        fn(text)
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--no-gc-tuning", action="store_true", help="skip warden.runtime.tune_for_serving()"
    )
    args = parser.parse_args()

    facts = machine()  # load average before the run
    rng = random.Random(args.seed)
    answers = [answer(rng) for _ in range(args.answers)]
    texts = [t for t, _ in answers]

    t0 = time.perf_counter()
    redactor = PiiRedactor.default()
    build_ms = (time.perf_counter() - t0) * 1000

    leaks = 0
    items = 0
    for text, values in answers:
        redacted = redactor.redact(text).text
        items += len(values)
        leaks += sum(v in redacted for v in values)

    checker = OutputAnomalyChecker()
    for n in rng.choices(range(1800, 2300), k=200):
        checker.observe("claims_triage", n)
    canary = new_canary()

    time_calls(redactor.redact, texts, min(300, args.iterations))  # warm-up
    if not args.no_gc_tuning:
        tune_for_serving()  # as the server does after start-up
    redact_ms, redact_cpu_ms = time_calls(redactor.redact, texts, args.iterations)
    anomaly_ms, anomaly_cpu_ms = time_calls(
        lambda t: checker.check(t, decision_type="claims_triage", canary=canary),
        texts,
        args.iterations,
    )

    def row(samples: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(percentile(samples, 50), 3),
            "p90_ms": round(percentile(samples, 90), 3),
            "p99_ms": round(percentile(samples, 99), 3),
            "max_ms": round(max(samples), 3),
            "mean_ms": round(sum(samples) / len(samples), 3),
        }

    result: dict[str, Any] = {
        "benchmark": "guard_pii",
        "answer_chars": SIZE,
        "answers": args.answers,
        "iterations": args.iterations,
        "pii_items_per_answer": round(items / len(answers), 2),
        "pii_values_left_after_redaction": leaks,
        "redactor_build_ms": round(build_ms, 1),
        "gc_tuned_for_serving": not args.no_gc_tuning,
        "redact": row(redact_ms),
        "redact_cpu": row(redact_cpu_ms),
        "anomaly_check": row(anomaly_ms),
        "anomaly_check_cpu": row(anomaly_cpu_ms),
        "target_p99_ms": TARGET_P99_MS,
        "machine": facts,
    }

    table = Table(title=f"Output guard on {SIZE}-char answers ({args.iterations} calls each)")
    for col in ("operation", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"):
        table.add_column(col, justify="left" if col == "operation" else "right")
    for name, key in (
        ("PiiRedactor.redact() wall", "redact"),
        ("PiiRedactor.redact() CPU", "redact_cpu"),
        ("OutputAnomalyChecker.check() wall", "anomaly_check"),
        ("OutputAnomalyChecker.check() CPU", "anomaly_check_cpu"),
    ):
        r = result[key]
        table.add_row(
            name, *(f"{r[k]:.3f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"))
        )
    console = Console() if sys.stdout.isatty() else Console(width=110)
    console.print(table)
    verdict = "meets" if result["redact"]["p99_ms"] <= TARGET_P99_MS else "MISSES"
    console.print(
        f"redact p99 {result['redact']['p99_ms']:.2f} ms wall ({result['redact_cpu']['p99_ms']:.2f}"
        f" ms CPU) {verdict} the {TARGET_P99_MS:.0f} ms target (load avg at start "
        f"{result['machine']['load_avg_1m_at_start']}); "
        f"{result['pii_items_per_answer']} PII items per answer, "
        f"{leaks} of {items} values left after redaction; redactor built in "
        f"{result['redactor_build_ms']:.0f} ms (once per process)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
