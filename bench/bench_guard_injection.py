"""Latency of the injection detector: InjectionDetector.scan() on 2 KB texts, half clean and
half attacked, on the text and document surfaces (and 20 KB documents for scale).

    .venv/bin/python bench/bench_guard_injection.py [--texts 400] [--rounds 5]

Texts are built from the repository's injection data: e-mails (and, for the text surface,
benign prompts and jailbreaks) cut to exactly 2048 bytes; the attacked half has a BIPIA
attack inserted at the start, middle or end. One process, one thread, the detector loaded
and warmed up first, and the garbage collector tuned as the server tunes it at start-up
(warden.runtime.tune_for_serving; --no-gc-tuning to skip). The figures are per scan.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, percentile

from warden.guard.injection import InjectionDetector
from warden.guard.signals import Surface
from warden.guard.train_injection import insert_attack, load_corpus, norm
from warden.runtime import tune_for_serving


def cut(text: str, size: int) -> str:
    return text.encode("utf-8")[:size].decode("utf-8", "ignore")


def build_texts(n: int, size: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """(clean, attacked) texts of `size` bytes."""
    rng = random.Random(seed)
    corpus = load_corpus()
    emails = [norm(e.text) for e in corpus.emails]
    attacks = [a.text for a in [*corpus.text_attacks, *corpus.code_attacks]]
    clean, attacked = [], []
    for i in range(n):
        body = ""
        while len(body.encode("utf-8")) < size:
            body += rng.choice(emails) + "\n\n"
        body = cut(body, size)
        if i % 2:
            text, _ = insert_attack(body, rng.choice(attacks), ("start", "middle", "end")[i % 3])
            attacked.append(cut(text, size))
        else:
            clean.append(body)
    return clean, attacked


def measure(
    detector: InjectionDetector, texts: list[str], surface: Surface, rounds: int
) -> list[float]:
    for t in texts[:50]:  # warm-up
        detector.scan(t, surface)
    out = []
    for _ in range(rounds):
        for t in texts:
            start = time.perf_counter()
            detector.scan(t, surface)
            out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--no-gc-tuning",
        action="store_true",
        help="skip warden.runtime.tune_for_serving() (what the server does at start-up)",
    )
    args = parser.parse_args()
    console = Console()
    start = time.perf_counter()
    detector = InjectionDetector.load_default()
    load_ms = (time.perf_counter() - start) * 1e3
    clean, attacked = build_texts(args.texts, 2048)
    big_clean, big_attacked = build_texts(max(args.texts // 10, 10), 20 * 1024, seed=8)
    if not args.no_gc_tuning:
        tune_for_serving()
    rows = []
    for surface in ("text", "document"):
        for label, texts in (("clean", clean), ("attacked", attacked), ("mix", clean + attacked)):
            lat = measure(detector, texts, surface, args.rounds)
            rows.append((surface, "2 KB", label, lat))
    lat = measure(detector, big_clean + big_attacked, "document", 1)
    rows.append(("document", "20 KB", "mix", lat))

    table = Table(title="InjectionDetector.scan() latency, one thread")
    for col in ("surface", "size", "texts", "scans", "p50 µs", "p90 µs", "p99 µs", "mean µs"):
        table.add_column(col, justify="right" if col.endswith(("µs", "scans")) else "left")
    for surface, size, label, lat in rows:
        us = [x * 1e6 for x in lat]
        table.add_row(
            surface,
            size,
            label,
            str(len(us)),
            f"{percentile(us, 50):.0f}",
            f"{percentile(us, 90):.0f}",
            f"{percentile(us, 99):.0f}",
            f"{statistics.fmean(us):.0f}",
        )
    console.print(table)
    info = machine()
    console.print(
        f"detector load (rules + model, once per process): {load_ms:.0f} ms; "
        f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"load average {info['load_avg_1m_at_start']}, "
        f"GC tuning {'off' if args.no_gc_tuning else 'on'}"
    )


if __name__ == "__main__":
    main()
