"""Precision and recall of the output PII redactor, per entity type.

    python -m warden.guard.evaluate_pii [--data PATH] [--out PATH] [--show-errors N]
                                        [--errors-from dev|held_out|all]

Data: Presidio's synthetic PII dataset v2 (``data/pii/presidio_synth_dataset_v2.json``,
MIT licence, see ``data/pii/README.md``): 1,500 short texts with labelled character spans.

Label mapping. Dataset labels we detect map one-to-one: CREDIT_CARD, IBAN_CODE, US_SSN,
EMAIL_ADDRESS, PHONE_NUMBER. Labels we deliberately do not detect are listed with their
counts (PERSON, STREET_ADDRESS, GPE, ORGANIZATION … need an NER model, which Warden does not
ship; IP_ADDRESS, DOMAIN_NAME, US_DRIVER_LICENSE … are not personal data we redact from
decision outputs). SWIFT_BIC and BANK_ACCOUNT have no labels in the dataset: every hit on
it is unlabelled, so only the number of hits is reported (all of them count as false
positives against this dataset).

Split. Records are split by template (``template_id``), so no sentence pattern is in both
halves: odd template ids are the *held-out* half, even ones the *dev* half. The headline
figures (``per_type``) are on the held-out half; ``per_type_dev`` and ``per_type_all`` are
for reference. Look at errors on the dev half only (``--show-errors N``, which prints dev
errors by default). Caveat: the recognizers were first tuned looking at errors on the
whole file, before this split was fixed, so the held-out half is not strictly unseen.

Matching rule. A prediction is a true positive when its type equals the gold type and the
two spans overlap by at least 50 % of the *longer* of the two spans
(``|pred ∩ gold| / max(|pred|, |gold|) ≥ 0.5``). Matching is one-to-one, greedily by
overlap. Unmatched predictions are false positives, unmatched gold spans false negatives.
``covered`` additionally counts gold spans that are ≥ 50 % covered by a finding of *any*
type — what matters for redaction, where a card number labelled as a phone number is still
removed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from warden.guard.pii import ENTITIES, PiiFinding, PiiRedactor

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DATA = REPO_ROOT / "data" / "pii" / "presidio_synth_dataset_v2.json"
DEFAULT_OUT = Path(__file__).resolve().parent / "models" / "pii-eval.json"

#: dataset label → our entity type
LABEL_MAP: dict[str, str] = {
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER",
}
#: our types with no label in the dataset
UNLABELLED = tuple(e for e in ENTITIES if e not in LABEL_MAP.values())
MIN_OVERLAP = 0.5
SPLIT_RULE = "held_out: odd template_id; dev: even template_id (template-level split)"


def split_of(record: dict[str, Any]) -> str:
    return "held_out" if int(record["template_id"]) % 2 else "dev"


#: caveats shipped with the figures
NOTES = [
    "The dataset is synthetic and templated: most values sit next to a context word "
    "('my card', 'My IBAN is', 'SSN:'), so recall on real model output will be lower.",
    "CREDIT_CARD is in-sample: CardBrandRecognizer (Mastercard 2-series, 19-digit Visa, "
    "12-digit Maestro, 15-digit JCB 2131/1800) was added after inspecting misses on this "
    "dataset; presidio's CreditCardRecognizer alone found 105 of 136 (recall 0.772).",
    "PHONE_NUMBER is the weak spot: numbers must be valid under the numbering plan of one of "
    "the configured regions (US, GB, DE, FR, IE, NL, IN, CA) or carry +country. Most misses "
    "are local-format numbers of other countries without their national prefix "
    "('467 3395', '(72) 754-186') or numbers that are invalid under their plan "
    "('+1-984-182-0190'). Stock presidio with the same regions finds 54 (four more: "
    "national parts such as '(0)96 471 07 95' of '+41 (0)96 …' numbers that are invalid "
    "under their own +country, recovered by its inner-match search, which is skipped here "
    "for speed). "
    "The false positives are a driver's licence number and fragments of street addresses.",
    "SWIFT_BIC and BANK_ACCOUNT have no labels here; every hit on these texts would be a "
    "false positive (see unlabelled_types).",
    "The recognizers were tuned looking at errors on the whole file before the template "
    "split was fixed: the held-out figures are not strictly on unseen data.",
]


@dataclass
class Gold:
    entity_type: str
    start: int
    end: int


@dataclass
class Tally:
    gold: int = 0
    predicted: int = 0
    tp: int = 0
    covered: int = 0

    @property
    def fp(self) -> int:
        return self.predicted - self.tp

    @property
    def fn(self) -> int:
        return self.gold - self.tp

    def as_record(self) -> dict[str, Any]:
        p = self.tp / self.predicted if self.predicted else None
        r = self.tp / self.gold if self.gold else None
        f1 = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
        return {
            "gold": self.gold,
            "predicted": self.predicted,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": _round(p),
            "recall": _round(r),
            "f1": _round(f1),
            "covered_any_type": self.covered,
            "redaction_recall": _round(self.covered / self.gold if self.gold else None),
        }


@dataclass
class Errors:
    fp: list[str] = field(default_factory=list)
    fn: list[str] = field(default_factory=list)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def overlap(a_start: int, a_end: int, b_start: int, b_end: int) -> float:
    """|a ∩ b| / max(|a|, |b|)."""
    inter = min(a_end, b_end) - max(a_start, b_start)
    longest = max(a_end - a_start, b_end - b_start)
    return inter / longest if inter > 0 and longest > 0 else 0.0


def match(preds: list[PiiFinding], golds: list[Gold]) -> list[tuple[int, int]]:
    """One-to-one (pred index, gold index) pairs of the same type with overlap ≥ 50 %."""
    pairs = sorted(
        (
            (overlap(p.start, p.end, g.start, g.end), i, j)
            for i, p in enumerate(preds)
            for j, g in enumerate(golds)
            if p.entity_type == g.entity_type
        ),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    used_p: set[int] = set()
    used_g: set[int] = set()
    out: list[tuple[int, int]] = []
    for ov, i, j in pairs:
        if ov < MIN_OVERLAP or i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        out.append((i, j))
    return out


def evaluate(
    records: list[dict[str, Any]], redactor: PiiRedactor, *, keep_errors: int = 0
) -> dict[str, Any]:
    tallies = {e: Tally() for e in ENTITIES}
    errors = {e: Errors() for e in ENTITIES}
    not_detected: Counter[str] = Counter()
    elapsed = 0.0
    for rec in records:
        text: str = rec["full_text"]
        golds: list[Gold] = []
        for span in rec["spans"]:
            label = span["entity_type"]
            if label in LABEL_MAP:
                golds.append(Gold(LABEL_MAP[label], span["start_position"], span["end_position"]))
            else:
                not_detected[label] += 1
        t0 = time.perf_counter()
        preds = redactor.find(text)
        elapsed += time.perf_counter() - t0
        matched = match(preds, golds)
        matched_p = {i for i, _ in matched}
        matched_g = {j for _, j in matched}
        for p in preds:
            tallies[p.entity_type].predicted += 1
        for i, _ in matched:
            tallies[preds[i].entity_type].tp += 1
        for j, g in enumerate(golds):
            t = tallies[g.entity_type]
            t.gold += 1
            if any(overlap(p.start, p.end, g.start, g.end) >= MIN_OVERLAP for p in preds):
                t.covered += 1
            if j not in matched_g and len(errors[g.entity_type].fn) < keep_errors:
                errors[g.entity_type].fn.append(_context(text, g.start, g.end))
        for i, p in enumerate(preds):
            if i not in matched_p and len(errors[p.entity_type].fp) < keep_errors:
                errors[p.entity_type].fp.append(_context(text, p.start, p.end))

    labelled = [e for e in ENTITIES if e in LABEL_MAP.values()]
    micro = Tally(
        gold=sum(tallies[e].gold for e in labelled),
        predicted=sum(tallies[e].predicted for e in labelled),
        tp=sum(tallies[e].tp for e in labelled),
        covered=sum(tallies[e].covered for e in labelled),
    )
    return {
        "per_type": {e: tallies[e].as_record() for e in labelled},
        "micro_labelled_types": micro.as_record(),
        "unlabelled_types": {
            e: {
                "predicted": tallies[e].predicted,
                "note": "no such label in the dataset; every hit counts as a false positive",
            }
            for e in UNLABELLED
        },
        "not_detected_labels": dict(not_detected.most_common()),
        "mean_ms_per_record": round(elapsed / max(1, len(records)) * 1000, 3),
        "errors": {
            e: {"fp": errors[e].fp, "fn": errors[e].fn}
            for e in ENTITIES
            if errors[e].fp or errors[e].fn
        },
    }


def _context(text: str, start: int, end: int) -> str:
    before = text[max(0, start - 30) : start].replace("\n", " ")
    after = text[end : end + 15].replace("\n", " ")
    return f"…{before}[{text[start:end]}]{after}…"


def _table(report: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    for col in ("entity", "gold", "pred", "TP", "FP", "FN", "precision", "recall", "F1"):
        table.add_column(col, justify="left" if col == "entity" else "right")
    table.add_column("redaction recall", justify="right")

    def fmt(x: float | None) -> str:
        return "—" if x is None else f"{x:.3f}"

    rows = [*report["per_type"].items(), ("micro (labelled)", report["micro_labelled_types"])]
    for name, r in rows:
        table.add_row(
            name,
            str(r["gold"]),
            str(r["predicted"]),
            str(r["tp"]),
            str(r["fp"]),
            str(r["fn"]),
            fmt(r["precision"]),
            fmt(r["recall"]),
            fmt(r["f1"]),
            fmt(r["redaction_recall"]),
        )
    for name, r in report["unlabelled_types"].items():
        p = str(r["predicted"])
        table.add_row(f"{name} (no labels)", "0", p, "0", p, "0", "—", "—", "—", "—")
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m warden.guard.evaluate_pii", description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--show-errors", type=int, default=0, metavar="N", help="N FP/FN per type")
    ap.add_argument("--errors-from", choices=["dev", "held_out", "all"], default="dev")
    args = ap.parse_args(argv)

    raw = args.data.read_bytes()
    records: list[dict[str, Any]] = json.loads(raw)
    parts = {
        "held_out": [r for r in records if split_of(r) == "held_out"],
        "dev": [r for r in records if split_of(r) == "dev"],
        "all": records,
    }
    redactor = PiiRedactor.default()
    results: dict[str, dict[str, Any]] = {}
    errors: dict[str, Any] = {}
    for name, part in parts.items():
        keep = args.show_errors if name == args.errors_from else 0
        results[name] = evaluate(part, redactor, keep_errors=keep)
        if keep:
            errors = results[name]["errors"]
        results[name].pop("errors")
    held_out = results["held_out"]
    report: dict[str, Any] = {
        "dataset": {
            "name": "presidio_synth_dataset_v2",
            "path": _display_path(args.data),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "records": len(records),
        },
        "split": {
            "rule": SPLIT_RULE,
            "held_out_records": len(parts["held_out"]),
            "dev_records": len(parts["dev"]),
            "headline": "held_out",
        },
        "matching": (
            "true positive: same type and |pred ∩ gold| / max(|pred|, |gold|) >= 0.5, "
            "one-to-one, greedy by overlap; redaction_recall: gold spans >= 50% covered "
            "by a finding of any type"
        ),
        "label_map": LABEL_MAP,
        "notes": NOTES,
        "redactor": {
            "score_threshold": redactor.score_threshold,
            "phone_regions": list(redactor.phone_regions),
            "nlp": "none (presidio NoOpNlpEngine; pattern recognizers only)",
        },
        "per_type": held_out["per_type"],
        "micro_labelled_types": held_out["micro_labelled_types"],
        "unlabelled_types": held_out["unlabelled_types"],
        "not_detected_labels": results["all"]["not_detected_labels"],
        "per_type_dev": results["dev"]["per_type"],
        "per_type_all": results["all"]["per_type"],
        "micro_labelled_types_all": results["all"]["micro_labelled_types"],
        "unlabelled_types_all": results["all"]["unlabelled_types"],
        "mean_ms_per_record": results["all"]["mean_ms_per_record"],
    }
    console = Console() if sys.stdout.isatty() else Console(width=120)
    console.print(
        _table(held_out, f"Output PII redaction — held-out half ({len(parts['held_out'])} texts)")
    )
    console.print(_table(results["all"], f"For reference: all {len(records)} texts"))
    console.print(
        f"split: {SPLIT_RULE}\n"
        f"not detected (by design): {report['not_detected_labels']}\n"
        f"mean {report['mean_ms_per_record']} ms per record"
    )
    if args.show_errors:
        console.print(f"errors on the {args.errors_from} part:")
        for entity, errs in errors.items():
            for kind in ("fp", "fn"):
                for line in errs[kind]:
                    console.print(f"{entity} {kind.upper()}: {line}", markup=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    console.print(f"wrote {_display_path(args.out)}")
    return 0


def _display_path(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


if __name__ == "__main__":
    raise SystemExit(main())
