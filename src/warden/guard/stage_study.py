"""Study (rounds 5 and 6, not a shipped model): can the MiniLM second stage recall more?

    python -m warden.guard.stage_study [--repeats 3] [--band 4] [--cap 2]

Everything on the *training* split, out of fold, as ``train_injection`` picks the shipped
second stage (``train_second_stage``): per fold, the document head of the other folds
scores the fold's documents and e-mails carrying a benign request; its at most ``cap``
segments within ``band`` logits below its threshold are scored by a second stage fitted
on the other folds' :func:`~warden.guard.train_injection.stage_examples`; the threshold is
the lowest at which no clean kind's out-of-fold rate exceeds max(its limit, the head's own).
To see past the noise of one fold split (72 clean e-mails and 70 code answers: a single
outlier moves the threshold), the whole procedure is repeated over ``--repeats`` fold
assignments (repeat 0 is the shipped one) and the recall on e-mail + text-attack documents
is reported per repeat and as the mean.

Variants: the shipped v3 stage; each negative source weighing the same; and the encoder's
own topic shift — cosine of the segment's MiniLM vector with the mean vector of at most
``K`` other segments of the document (spread evenly, first and last included), and its
highest cosine with any of them. Each at the benign-request limit 1 % and 5 %.

A second, independent check (``claim letters``): 60 claim letters from the demo's generator
(``warden.demo.claims``, a seed of its own), scored by the shipped document head and each
variant's stage fitted on all training items at repeat 0's threshold. The red team's clean
documents include such letters and its release gate allows no false positive in 99.
Prints one table. ≈ 5 minutes on 2 cores (the MiniLM forward passes, cached per text).
See MODEL_CARD.md, round 5.

``--round6``: the variants of ``ROUND6`` with Warden's own planted assistant tasks (extra
positives) and benign incident statements (extra negatives, and/or e-mails carrying one as
a clean kind of the threshold rule), training side only (MODEL_CARD.md, round 6).
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from warden.guard.classifier import DENSE_EXTRA, FeatureSpec, InjectionClassifier, logit
from warden.guard.embedding import DEFAULT_EMBED, StaticEmbedding, segment_features
from warden.guard.encoder import default_encoder
from warden.guard.evaluate_injection import REQUEST_GROUPS
from warden.guard.train_injection import (
    CV_FOLDS,
    DATA_DIR,
    POSITIONS,
    SEED,
    SPLIT_SALT,
    THRESHOLD_KINDS,
    Corpus,
    Doc,
    Encode,
    Item,
    StageExample,
    TrainConfig,
    _in_fold,
    _item,
    _out_of_fold,
    _read_jsonl,
    _segments,
    _subset,
    _unit,
    attacked,
    build_rows,
    caching_encoder,
    choose_threshold,
    clean_docs,
    dense_rows,
    document_head_docs,
    fold_out,
    insert_attack,
    load_corpus,
    norm,
    pick_some,
    planted_rows,
    segment_texts,
    stage_examples,
    train_logreg,
    unit_logits,
)

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
#: clean kinds whose out-of-fold rate bounds the second stage's threshold (as shipped)
CLEAN_KINDS = ("email", "email_thread", "code", "presidio", "email+request")
#: round 6: the own sets of planted tasks (positives) and benign incident statements
TASKS_FILE = "own_planted_tasks.jsonl"
INCIDENTS_FILE = "benign_incident_statements.jsonl"


@dataclass(frozen=True)
class Variant:
    name: str
    #: context segments for the encoder's topic shift (None: no such features; 0: all)
    context: int | None
    #: each negative source weighs the same (else every negative row does)
    by_source: bool
    #: round 6: own planted tasks as extra positives (3 e-mails x 3 positions each)
    tasks: bool = False
    #: round 6: benign incident statements planted in e-mails as extra negatives
    incidents: bool = False
    #: round 6: e-mails carrying an incident statement as a clean kind of the threshold rule
    incident_kind: bool = False


VARIANTS = (
    Variant("v3 (shipped)", None, False),
    Variant("negatives by source", None, True),
    Variant("+ MiniLM context, K=4", 4, True),
    Variant("+ MiniLM context, K=8", 8, True),
    Variant("+ MiniLM context, all", 0, True),
)
#: round 6: the own sets added to the K=4 variant (and to v3's features)
ROUND6 = (
    Variant("v3 (shipped)", None, False),
    Variant("K=4", 4, True),
    Variant("K=4 + tasks", 4, True, tasks=True),
    Variant("K=4 + incidents", 4, True, incidents=True),
    Variant("K=4 + incidents, kind", 4, True, incidents=True, incident_kind=True),
    Variant("K=4 + both", 4, True, tasks=True, incidents=True),
    Variant("K=4 + both, kind", 4, True, tasks=True, incidents=True, incident_kind=True),
    Variant("v3 feat. + both, kind", None, True, tasks=True, incidents=True, incident_kind=True),
)


@dataclass(frozen=True)
class Extra:
    """Round 6's own sets (training side only), split and folded by template."""

    tasks: list[Item]
    incidents: list[Item]


def load_extra(data_dir: Path = DATA_DIR) -> Extra:
    tasks = [
        _item("own_planted_tasks", r["template"], r["text"], r["category"])
        for r in _read_jsonl(data_dir / TASKS_FILE)
    ]
    incidents = [
        _item("benign_incidents", r["template"], r["text"], r["kind"])
        for r in _read_jsonl(data_dir / INCIDENTS_FILE)
    ]
    return Extra(
        [i for i in tasks if i.split == "train"], [i for i in incidents if i.split == "train"]
    )


def extra_examples(
    x: Extra, emails: Sequence[Item], v: Variant, spec: FeatureSpec, rng: np.random.Generator
) -> list[StageExample]:
    """Second-stage documents from round 6's sets, as ``stage_examples`` builds its own:
    each planted task in 3 e-mails x 3 positions (its first segment, positive), each
    incident statement in 2 e-mails at a random position (its segments, negative)."""
    texts = [norm(e.text) for e in emails]
    out: list[StageExample] = []

    def add(text: str, needle: str, label: float, first_only: bool, source: str) -> None:
        rows = planted_rows(segment_texts(text, spec), needle, first_only)
        if rows:
            out.append(StageExample(text, tuple(rows), label, source))

    def some(n: int) -> list[str]:
        return pick_some(rng, texts, n)

    if not texts:
        return out
    for i in x.tasks if v.tasks else []:
        for e in some(3):
            for pos in POSITIONS:
                add(insert_attack(e, norm(i.text), pos)[0], norm(i.text), 1.0, True, i.source)
    for i in x.incidents if v.incidents else []:
        for e in some(2):
            pos = POSITIONS[int(rng.integers(0, len(POSITIONS)))]
            add(insert_attack(e, norm(i.text), pos)[0], norm(i.text), -1.0, False, i.source)
    return out


@dataclass(frozen=True)
class Segmented:
    """A document's segment texts (lower-cased) and the head's dense features of each."""

    segs: list[str]
    dense: F32


def segmented(text: str, cfg: TrainConfig, emb: StaticEmbedding) -> Segmented:
    raw, spans = _segments(text, cfg.spec)
    segs = [raw[a:b].decode("utf-8", "replace") for a, b in spans.tolist()]
    return Segmented(segs, segment_features(emb, raw, spans))


def context_of(n: int, k: int, size: int) -> list[int]:
    others = [j for j in range(n) if j != k]
    if size and len(others) > size:
        picks = np.linspace(0, len(others) - 1, size).round().astype(np.int64)
        others = [others[int(i)] for i in picks]
    return others


def features(doc: Segmented, rows: Sequence[int], encode: Encode, context: int | None) -> F64:
    """The v3 second stage's features of ``rows`` (MiniLM vector, the head's three
    topic-shift features), plus the encoder's own topic shift when ``context`` is set."""
    vec = encode([doc.segs[k] for k in rows]).astype(np.float64)
    cols = [vec, doc.dense[list(rows)][:, -DENSE_EXTRA:].astype(np.float64)]
    if context is not None:
        all_vec = encode(doc.segs).astype(np.float64)
        shift = np.ones((len(rows), 2))
        for i, k in enumerate(rows):
            others = context_of(len(doc.segs), k, context)
            if others:
                o = all_vec[others]
                mean = o.mean(axis=0)
                norm = float(np.linalg.norm(mean))
                shift[i] = (
                    float(all_vec[k] @ mean) / norm if norm > 1e-9 else 1.0,
                    float(np.max(o @ all_vec[k])),
                )
        cols.append(shift)
    return np.concatenate(cols, axis=1)


def fit_stage(
    examples: Sequence[StageExample],
    cfg: TrainConfig,
    emb: StaticEmbedding,
    encode: Encode,
    v: Variant,
) -> F64:
    """The stage's weights, intercept last."""
    x = np.concatenate(
        [features(segmented(e.text, cfg, emb), e.rows, encode, v.context) for e in examples]
    )
    y = np.array([e.label for e in examples for _ in e.rows])
    if v.by_source:
        g = np.array([e.source for e in examples for _ in e.rows])
        w = np.zeros(len(y))
        for name in sorted(set(g.tolist())):
            w[g == name] = 1.0 / int(np.sum(g == name))
        for side in (y > 0, y < 0):
            w[side] *= 0.5 / w[side].sum()
    else:
        w = np.where(y > 0, 0.5 / max(1, int(np.sum(y > 0))), 0.5 / max(1, int(np.sum(y < 0))))
    sw, sb = train_logreg(dense_rows(x, y, w), x.shape[1], cfg.stage_l2, cfg.max_iter)
    return np.append(sw, sb)


def _refold(items: list[Item], repeat: int) -> list[Item]:
    if repeat == 0:
        return items
    salt = f"{SPLIT_SALT}:fold:rep{repeat}"
    return [replace(i, fold=int(_unit(salt, i.source, i.key) * CV_FOLDS)) for i in items]


def refold_extra(x: Extra, repeat: int) -> Extra:
    return Extra(_refold(x.tasks, repeat), _refold(x.incidents, repeat))


def refold(c: Corpus, repeat: int) -> Corpus:
    """``c`` with its items assigned to folds by another salt (repeat 0: the shipped one)."""
    if repeat == 0:
        return c

    def f(items: list[Item]) -> list[Item]:
        return _refold(items, repeat)

    return Corpus(
        f(c.emails),
        f(c.text_attacks),
        f(c.code_contexts),
        f(c.code_attacks),
        f(c.jailbreaks),
        f(c.normal),
        f(c.wildguard),
        f(c.trigger),
        f(c.presidio),
        f(c.business),
        c.files,
    )


@dataclass(frozen=True)
class OOFDoc:
    kind: str
    fold: int
    z: F64  # every segment's document-head logit (head of the other folds)
    doc: Segmented


def oof_docs(
    c: Corpus, cfg: TrainConfig, emb: StaticEmbedding, incidents: Sequence[Item] = ()
) -> tuple[list[OOFDoc], float]:
    """Every in-fold document scored by the document head of the other folds, and the
    head's out-of-fold threshold (logit) chosen as ``train_injection`` chooses it.
    ``incidents`` (round 6) are planted in e-mails as the requests are (kind
    ``email+incident``, 3 e-mails x 3 positions each); like the requests, they never
    move the head's threshold."""
    dim = 1 << cfg.spec.bits
    data = document_head_docs(c, np.random.default_rng([cfg.seed, 1]), cfg.per_attack)
    rows = build_rows(data, cfg.spec, None, emb)
    asks = [i for i in c.trigger if i.category in REQUEST_GROUPS]
    req_rng = np.random.default_rng([cfg.seed, 8])
    requests = [
        Doc(d.text, 0, d.items, "email+request")
        for d in attacked(clean_docs(c.emails, "email"), asks, 3, POSITIONS, req_rng, "x")
    ]
    inc_rng = np.random.default_rng([cfg.seed, 9])
    requests += [
        Doc(d.text, 0, d.items, "email+incident")
        for d in attacked(clean_docs(c.emails, "email"), incidents, 3, POSITIONS, inc_rng, "x")
    ]
    out: list[OOFDoc] = []
    neg: dict[str, list[float]] = {}
    pos: list[float] = []
    for f in range(cfg.folds):
        keep = np.fromiter((i for i, d in enumerate(data.docs) if _out_of_fold(d, f)), np.int64)
        sub = _subset(rows, np.isin(rows.doc, keep))
        w, b = train_logreg(sub, dim + emb.dims + DENSE_EXTRA, cfg.l2[1], cfg.max_iter)
        w = w.astype(np.float32).astype(np.float64)
        for d in [*data.docs, *requests]:
            if _in_fold(d, f):
                z = unit_logits(w, b, d.text, cfg.spec, emb)
                out.append(OOFDoc(d.kind, f, z, segmented(d.text, cfg, emb)))
                if d.kind not in ("email+request", "email+incident"):
                    (pos if d.label else neg.setdefault(d.kind, [])).append(float(z.max()))
    kinds = THRESHOLD_KINDS["document"]
    _, fig = choose_threshold({k: v for k, v in neg.items() if k in kinds}, pos, 0.01, 0.0)
    return out, float(fig["threshold_logit"])


def candidates(z: F64, head_t: float, band: float, cap: int) -> list[int]:
    order = np.argsort(-z, kind="stable")
    return [int(k) for k in order if head_t - band <= z[k] < head_t][:cap]


def stage_threshold(
    judged: Sequence[tuple[str, bool, float]],
    request_limit: float,
    kinds: Sequence[str] = CLEAN_KINDS,
) -> float:
    """The lowest second-stage logit at which no clean kind's cascade rate exceeds
    max(its limit, the head's own rate): 1 %, or ``request_limit`` for benign requests."""
    by_kind: dict[str, list[tuple[bool, float]]] = {}
    for kind, hit, s in judged:
        by_kind.setdefault(kind, []).append((hit, s))
    t = -math.inf
    for kind in kinds:
        v = by_kind.get(kind, [])
        if not v:
            continue
        limit = request_limit if kind == "email+request" else 0.01
        heads = sum(h for h, _ in v)
        allowed = math.floor(max(limit, heads / len(v)) * len(v) + 1e-9) - heads
        free = sorted((s for h, s in v if not h and s > -math.inf), reverse=True)
        if allowed < len(free):
            t = max(t, math.nextafter(free[allowed], math.inf))
    return t


@dataclass
class Outcome:
    recall: dict[float, list[float]]  # request limit -> e-mail + text-attack recall per repeat
    threshold0: float = math.inf  # repeat 0, 1 % limit
    claim_flagged: int = 0
    #: round 6, 1 % limit: out-of-fold rate flagged per repeat on e-mails carrying an
    #: incident statement and on e-mails carrying a benign request
    incident_rate: list[float] = field(default_factory=list)
    request_rate: list[float] = field(default_factory=list)


def _rate(judged: Sequence[tuple[str, bool, float]], kind: str, t: float) -> float:
    v = [h or s >= t for k, h, s in judged if k == kind]
    return float(np.mean(v)) if v else 0.0


def study(
    repeats: int,
    band: float,
    cap: int,
    variants: Sequence[Variant] = VARIANTS,
    extra: Extra | None = None,
) -> tuple[dict[str, Outcome], int]:
    cfg = TrainConfig()
    emb = StaticEmbedding.load(DEFAULT_EMBED)
    encode = caching_encoder(default_encoder(emb))
    base = load_corpus().of("train")
    x0 = extra if extra is not None else Extra([], [])
    out = {v.name: Outcome({0.01: [], 0.05: []}) for v in variants}
    for r in range(repeats):
        c = refold(base, r)
        x = refold_extra(x0, r)
        docs, head_t = oof_docs(c, cfg, emb, x.incidents)
        folds = [
            stage_examples(fold_out(c, f), cfg.spec, np.random.default_rng([SEED, 7, f]))
            for f in range(cfg.folds)
        ]
        xfolds = [
            Extra([i for i in x.tasks if i.fold != f], [i for i in x.incidents if i.fold != f])
            for f in range(cfg.folds)
        ]
        for v in variants:
            stages = [
                fit_stage(
                    [
                        *folds[f],
                        *extra_examples(
                            xfolds[f],
                            fold_out(c, f).emails,
                            v,
                            cfg.spec,
                            np.random.default_rng([SEED, 10, f]),
                        ),
                    ],
                    cfg,
                    emb,
                    encode,
                    v,
                )
                for f in range(cfg.folds)
            ]
            judged = []
            for d in docs:
                cand = candidates(d.z, head_t, band, cap)
                s = -math.inf
                if cand:
                    st = stages[d.fold]
                    s = float(np.max(features(d.doc, cand, encode, v.context) @ st[:-1] + st[-1]))
                judged.append((d.kind, bool(d.z.max() >= head_t), s))
            kinds = (*CLEAN_KINDS, "email+incident") if v.incident_kind else CLEAN_KINDS
            for limit in (0.01, 0.05):
                t = stage_threshold(judged, limit, kinds)
                out[v.name].recall[limit].append(_rate(judged, "email+text_attack", t))
                if limit == 0.01:
                    out[v.name].incident_rate.append(_rate(judged, "email+incident", t))
                    out[v.name].request_rate.append(_rate(judged, "email+request", t))
                    if r == 0:
                        out[v.name].threshold0 = t
    # claim letters: the shipped head, each stage fitted on all training items
    from warden.demo.claims import claim_letters
    from warden.guard.normalize import normalize

    clf = InjectionClassifier.load_default()
    head_t = logit(clf.thresholds["document"])
    letters = claim_letters(60, seed=random.Random(12345).random())
    everything = stage_examples(base, cfg.spec, np.random.default_rng([SEED, 7, cfg.folds]))
    scored = []
    for letter in letters:
        norm_text = normalize(letter, "document").text
        z = np.array([zz for _, _, zz in clf.window_logits(norm_text, "document")])
        scored.append((z, segmented(norm_text, cfg, emb)))
    for v in variants:
        more = extra_examples(
            x0, base.emails, v, cfg.spec, np.random.default_rng([SEED, 10, cfg.folds])
        )
        st = fit_stage([*everything, *more], cfg, emb, encode, v)
        for z, doc in scored:
            cand = candidates(z, head_t, band, cap)
            if cand and np.max(features(doc, cand, encode, v.context) @ st[:-1] + st[-1]) >= (
                out[v.name].threshold0
            ):
                out[v.name].claim_flagged += 1
    return out, len(letters)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--band", type=float, default=4.0)
    parser.add_argument("--cap", type=int, default=2)
    parser.add_argument(
        "--round6", action="store_true", help="round 6: the own planted-task / incident sets"
    )
    args = parser.parse_args(argv)
    if args.round6:
        result, n_letters = study(args.repeats, args.band, args.cap, ROUND6, load_extra())
    else:
        result, n_letters = study(args.repeats, args.band, args.cap)
    print(f"band {args.band} logits, cap {args.cap}; e-mail + text-attack recall out of fold")
    print(
        f"{'variant':<26} {'req 1 % (mean; per repeat)':<34} {'req 5 % (mean)':>14}  claims"
        "  incid. / req. FPR (1 %, mean)"
    )
    for name, o in result.items():
        r1, r5 = o.recall[0.01], o.recall[0.05]
        each = " ".join(f"{x:.3f}" for x in r1)
        inc = np.mean(o.incident_rate) if o.incident_rate else 0.0
        req = np.mean(o.request_rate) if o.request_rate else 0.0
        print(
            f"{name:<26} {np.mean(r1):.3f} ({each}){'':<4} {np.mean(r5):>10.3f}"
            f"  {o.claim_flagged}/{n_letters}  {inc:.3f} / {req:.3f}"
        )


if __name__ == "__main__":
    main()
