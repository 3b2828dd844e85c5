"""Layer 3 of the injection detector: a small statistical classifier.

Features are hashed, so there is no vocabulary to fit or ship: character n-grams (3 and 5
bytes by default; word n-grams can be switched on in :class:`FeatureSpec`) of the
normalised, lower-cased text with digits folded to ``0``, each hashed into one of
``2**bits`` buckets by a polynomial rolling hash that numpy computes over the whole text
at once. A span's feature vector is the bucket counts of the n-grams that *start* inside
it, divided by ``n**alpha`` (``n`` = number of n-grams in the span). The model is logistic
regression: one weight per bucket and an intercept, per head.

Two heads, trained on different questions (see ``MODEL_CARD.md``):

* ``prompt`` — is this text, sent as a prompt, a jailbreak or an instruction override?
  Scores overlapping 512-byte windows. Used on every surface.
* ``document`` — is this sentence of a document (an e-mail, a letter, a code answer) an
  instruction planted for the model that reads it? Scores sentence-like segments. Used on
  the document surface.

Because a span's logit is ``b + sum(w[bucket]) / n**alpha`` and every n-gram has a
position, scoring any number of spans of a text costs one pass over the text plus one
prefix sum.

The document head also reads dense features of each segment (:mod:`warden.guard.embedding`:
the summed static word-piece vectors of the segment, normalised, its cosine with the rest
of the document, and whether it is a question), one more weight each.

On the document surface a *second stage* (:class:`SecondStage`) reads the at most ``cap``
segments the document head scores within ``band`` logits below its threshold: a logistic
head over their all-MiniLM-L6-v2 sentence vector (:mod:`warden.guard.encoder`) and the
document head's topic-shift features (cosine with the rest, with the neighbours, question).

The model is stored without pickle: ``injection-clf-v3.npz`` holds the weight matrix, the
intercepts, the document head's dense weights and the second stage's weights (written with
fixed zip timestamps, so a rebuild is byte-identical), ``injection-clf-v3.json`` the
hyper-parameters, the operating thresholds, the training data hashes, the SHA-256 of the
``.npz``, of the embedding table and of the encoder's weights, which
:meth:`InjectionClassifier.load` checks.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from warden.guard.embedding import (
    EXTRA_FEATURES,
    EmbeddingError,
    StaticEmbedding,
    segment_features,
)
from warden.guard.encoder import MiniLMEncoder, default_encoder
from warden.guard.npz import npz_bytes

Head = Literal["prompt", "document"]
HEADS: tuple[Head, ...] = ("prompt", "document")

MODELS_DIR = Path(__file__).parent / "models"
MODEL_NAME = "injection-clf-v3"
DEFAULT_NPZ = MODELS_DIR / f"{MODEL_NAME}.npz"
DEFAULT_JSON = MODELS_DIR / f"{MODEL_NAME}.json"

#: dense features beyond the embedding's dimensions (cosine with the rest, question mark)
DENSE_EXTRA = len(EXTRA_FEATURES)

U64 = np.uint64
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
#: spans as an array of shape (k, 2): start and end byte offsets
SpanArray = npt.NDArray[np.int64]


# ---------------------------------------------------------------------- featurizer
@dataclass(frozen=True)
class FeatureSpec:
    """Everything that defines the feature space. Stored in the model JSON and checked at
    load, so a model is never scored with features it was not trained on."""

    bits: int = 18
    char_ngrams: tuple[int, ...] = (3, 5)
    word_ngrams: tuple[int, ...] = ()
    fold_digits: bool = True
    alpha: float = 0.5
    window: int = 512
    stride: int = 256
    #: sentence-like segments longer than this are cut into windows of segment_window
    segment_max: int = 300
    segment_window: int = 256
    segment_stride: int = 128
    prime: int = 0x100000001B3
    mix: int = 0x9E3779B97F4A7C15
    salt: int = 0x5BD1E9955BD1E995

    def as_dict(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "char_ngrams": list(self.char_ngrams),
            "word_ngrams": list(self.word_ngrams),
            "fold_digits": self.fold_digits,
            "alpha": self.alpha,
            "window": self.window,
            "stride": self.stride,
            "segment_max": self.segment_max,
            "segment_window": self.segment_window,
            "segment_stride": self.segment_stride,
            "prime": self.prime,
            "mix": self.mix,
            "salt": self.salt,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(
            bits=int(d["bits"]),
            char_ngrams=tuple(int(n) for n in d["char_ngrams"]),
            word_ngrams=tuple(int(n) for n in d["word_ngrams"]),
            fold_digits=bool(d["fold_digits"]),
            alpha=float(d["alpha"]),
            window=int(d["window"]),
            stride=int(d["stride"]),
            segment_max=int(d["segment_max"]),
            segment_window=int(d["segment_window"]),
            segment_stride=int(d["segment_stride"]),
            prime=int(d["prime"]),
            mix=int(d["mix"]),
            salt=int(d["salt"]),
        )


_VAL_LUT = np.arange(256, dtype=U64) + U64(1)
_VAL_LUT_DIGITS = _VAL_LUT.copy()
_VAL_LUT_DIGITS[48:58] = 49  # every digit becomes "0"
#: bytes that belong to words: a-z, digits, and every byte of a multi-byte UTF-8 character
_WORD_LUT = np.zeros(256, dtype=np.int8)
_WORD_LUT[97:123] = 1
_WORD_LUT[48:58] = 1
_WORD_LUT[128:] = 1


@dataclass(frozen=True)
class Features:
    """Hashed n-grams of one text, grouped in segments of equal kind. ``idx`` holds every
    bucket; segment ``j`` is ``idx[offsets[j]:offsets[j + 1]]`` and its n-grams start at
    byte positions ``starts[j]`` (``None``: at 0, 1, 2, … in order)."""

    length: int
    idx: IntArray
    offsets: tuple[int, ...]
    starts: tuple[IntArray | None, ...]

    def slices(self, s: int, e: int) -> list[tuple[int, int]]:
        """Ranges of ``idx`` holding the n-grams that start in [s, e)."""
        out = []
        for j, st in enumerate(self.starts):
            base, top = self.offsets[j], self.offsets[j + 1]
            if st is None:
                lo, hi = min(s, top - base), min(e, top - base)
            else:
                lo, hi = (int(v) for v in np.searchsorted(st, [s, e]))
            if hi > lo:
                out.append((base + lo, base + hi))
        return out


def featurize(low: str, spec: FeatureSpec) -> Features:
    """Hashed n-grams of already lower-cased text, over its UTF-8 bytes."""
    b = np.frombuffer(low.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    n = len(b)
    c = (_VAL_LUT_DIGITS if spec.fold_digits else _VAL_LUT)[b]
    p = U64(spec.prime)
    parts: list[npt.NDArray[np.uint64]] = []
    starts: list[IntArray | None] = []
    # char n-grams by extension: h(k+1)[i] = h(k)[i] * p + c[i + k]
    h = c
    for k in range(1, max(spec.char_ngrams, default=0) + 1):
        if k > n:
            break
        if k > 1:
            h = h[:-1] * p + c[k - 1 :]
        if k in spec.char_ngrams:
            parts.append(h)
            starts.append(None)
    if spec.word_ngrams and n:
        edges = np.diff(_WORD_LUT[b], prepend=np.int8(0), append=np.int8(0))
        ws = np.flatnonzero(edges == 1)
        we = np.flatnonzero(edges == -1)
        if len(ws):
            pos_pow, neg_pow = _powers(spec.prime).get(n + 1)
            prefix = np.zeros(n + 1, dtype=U64)
            np.cumsum(c * pos_pow[:n], out=prefix[1:])
            hw = (prefix[we] - prefix[ws]) * neg_pow[ws]
            q = U64(spec.salt)
            for k in spec.word_ngrams:
                if len(hw) < k:
                    continue
                g = hw[: len(hw) + 1 - k] + q
                for j in range(1, k):
                    g = g * q + hw[j : len(hw) + 1 - k + j]
                parts.append(g ^ U64(k))
                starts.append(ws[: len(hw) + 1 - k].astype(np.int64))
    if not parts:
        return Features(n, np.zeros(0, dtype=np.int64), (0,), ())
    allh = np.concatenate(parts) if len(parts) > 1 else parts[0]
    idx = ((allh * U64(spec.mix)) >> U64(64 - spec.bits)).view(np.int64)
    offsets = [0]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return Features(n, idx, tuple(offsets), tuple(starts))


class _Powers:
    """P**k and P**-k modulo 2**64 for k < n, grown on demand (thread-safe swap)."""

    def __init__(self, prime: int) -> None:
        self.prime = prime
        self.inverse = pow(prime, -1, 1 << 64)
        self.pos: npt.NDArray[np.uint64] = np.ones(1, dtype=U64)
        self.neg: npt.NDArray[np.uint64] = np.ones(1, dtype=U64)
        self._lock = threading.Lock()

    def get(self, n: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        pos, neg = self.pos, self.neg
        if len(pos) >= n:
            return pos, neg
        with self._lock:
            size = max(n, 2 * len(self.pos), 4096)
            pos = np.full(size, self.prime, dtype=U64)
            pos[0] = 1
            np.multiply.accumulate(pos, out=pos)
            neg = np.full(size, self.inverse, dtype=U64)
            neg[0] = 1
            np.multiply.accumulate(neg, out=neg)
            self.pos, self.neg = pos, neg
        return pos, neg


@functools.cache
def _powers(prime: int) -> _Powers:
    return _Powers(prime)


def windows(length: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Overlapping windows covering [0, length): any span of at most ``size - stride``
    bytes lies wholly inside one of them."""
    if length <= size:
        return [(0, length)]
    out = [(s, s + size) for s in range(0, length - size, stride)]
    out.append((length - size, length))
    return out


#: where one sentence-like segment ends and the next begins: after . ! ? (and a closing
#: quote or bracket) followed by a space or a capital ("email.If this"), at line breaks,
#: at "|" field separators. Every alternative starts with a small byte class, so the regex
#: engine skips ahead fast.
#: (group 1 ends the closing quotes of a sentence end; it is unset for other breaks)
_SEGMENT_BREAK = re.compile(
    rb"[.!?\n|](?:(?<=[.!?])([\"')\]]*)(?: +|(?=[A-Z]))|(?<=\n)\n*|(?<=\|))"
)


def segments(raw: bytes, spec: FeatureSpec) -> list[tuple[int, int]]:
    """Sentence-like spans (byte offsets) of normalised text; long ones are cut into
    overlapping windows. An instruction planted in a document is usually one or two of
    them, so it is scored on its own instead of being averaged with its neighbours."""
    return [(int(a), int(b)) for a, b in segment_array(raw, spec).tolist()]


def segment_array(raw: bytes, spec: FeatureSpec) -> SpanArray:
    """:func:`segments` as an array of shape (k, 2)."""
    out: list[tuple[int, int]] = []
    pos = 0
    n = len(raw)
    longest = spec.segment_max
    # a segment runs from the end of one break to the start of the next; the punctuation
    # (and closing quotes) that end a sentence stay with it; "a | b" loses its spaces
    for m in _SEGMENT_BREAK.finditer(raw):
        end_quotes = m.end(1)
        e = end_quotes if end_quotes >= 0 else m.start()
        a = pos + 1 if pos < e and raw[pos] == 32 else pos
        if e > a and raw[e - 1] == 32:
            e -= 1
        if e > a:
            if e - a > longest:
                out.extend(_long_segment(a, e, spec))
            else:
                out.append((a, e))
        pos = m.end()
    a = pos + 1 if pos < n and raw[pos] == 32 else pos
    if n > a:
        out.extend(_long_segment(a, n, spec) if n - a > longest else [(a, n)])
    if not out:
        out.append((0, n))
    return np.array(out, dtype=np.int64)


def _long_segment(s: int, e: int, spec: FeatureSpec) -> list[tuple[int, int]]:
    return [(s + a, s + b) for a, b in windows(e - s, spec.segment_window, spec.segment_stride)]


def window_array(length: int, size: int, stride: int) -> SpanArray:
    """:func:`windows` as an array of shape (k, 2)."""
    if length <= size:
        return np.array([[0, length]], dtype=np.int64)
    starts = np.append(np.arange(0, length - size, stride, dtype=np.int64), length - size)
    return np.stack([starts, starts + size], axis=1)


def unit_array(text: str, head: Head, spec: FeatureSpec, low: str | None = None) -> SpanArray:
    """The spans a head scores, as byte offsets into ``text.lower()`` encoded as UTF-8:
    overlapping windows for the prompt head, sentence-like segments for the document head
    (found in the original case; a capital letter after a full stop starts a sentence)."""
    low = text.lower() if low is None else low
    low_raw = low.encode("utf-8", "surrogatepass")
    if head == "prompt":
        return window_array(len(low_raw), spec.window, spec.stride)
    raw = text.encode("utf-8", "surrogatepass")
    return segment_array(raw if len(raw) == len(low_raw) else low_raw, spec)


def units(
    text: str, head: Head, spec: FeatureSpec, low: str | None = None
) -> list[tuple[int, int]]:
    """:func:`unit_array` as a list of (start, end)."""
    return [(int(a), int(b)) for a, b in unit_array(text, head, spec, low).tolist()]


def window_rows(
    feats: Features, spans: Sequence[tuple[int, int]], alpha: float
) -> list[tuple[IntArray, FloatArray]]:
    """Sparse feature rows (buckets, values) of each window (training and tests)."""
    rows = []
    for s, e in spans:
        pieces = [feats.idx[a:b] for a, b in feats.slices(s, e)]
        if not pieces:
            rows.append((np.zeros(0, dtype=np.int64), np.zeros(0)))
            continue
        sel = np.concatenate(pieces)
        u, counts = np.unique(sel, return_counts=True)
        rows.append((u.astype(np.int64), counts / float(len(sel)) ** alpha))
    return rows


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


# ---------------------------------------------------------------------- persistence
def save_model(
    npz_path: Path,
    json_path: Path,
    weights: npt.NDArray[np.float32],
    intercepts: FloatArray,
    meta: dict[str, Any],
    dense: npt.NDArray[np.float32] | None = None,
    stage: FloatArray | None = None,
) -> str:
    """Write the model reproducibly (fixed zip timestamps, sorted JSON) and return the
    .npz's SHA-256, which is also recorded in the JSON. ``stage``: the second stage's
    weights with its intercept last."""
    arrays: list[tuple[str, Any]] = [("weights", weights), ("intercepts", intercepts)]
    if dense is not None:
        arrays.append(("dense", dense))
    if stage is not None:
        arrays.append(("encoder", stage))
    raw = npz_bytes(arrays)
    digest = hashlib.sha256(raw).hexdigest()
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    npz_path.write_bytes(raw)
    doc = dict(meta)
    doc["artifact"] = {"file": npz_path.name, "sha256": digest, "bytes": len(raw)}
    json_path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return digest


class ModelError(RuntimeError):
    """The model files are missing, altered or do not match this code."""


#: features of the second stage after the encoder's vector: the document head's last ones
STAGE_EXTRA = EXTRA_FEATURES


@dataclass(frozen=True)
class SecondStage:
    """The document head's second stage: which segments it reads and how it scores them."""

    weights: FloatArray  # (encoder dims + len(STAGE_EXTRA),)
    intercept: float
    #: a segment's second-stage logit at or above this flags it
    threshold_logit: float
    #: segments scored at most this many logits below the document head's threshold ...
    band: float
    #: ... at most this many of them per document, the highest first
    cap: int
    encoder_sha256: str

    def candidates(self, z: FloatArray) -> list[int]:
        """Undecided segments, given their document-head logits minus its threshold."""
        order = np.argsort(-z, kind="stable")
        return [int(k) for k in order if -self.band <= z[k] < 0.0][: self.cap]


def stage_inputs(vecs: npt.NDArray[np.float32], dense_rows: npt.NDArray[np.float32]) -> FloatArray:
    """Second-stage features: encoder vectors and the segments' topic-shift features (the
    last ``len(STAGE_EXTRA)`` columns of :func:`segment_features`)."""
    extra = dense_rows[:, -len(STAGE_EXTRA) :]
    out: FloatArray = np.concatenate([vecs, extra], axis=1).astype(np.float64)
    return out


@dataclass(frozen=True)
class WindowScore:
    start: int
    end: int
    probability: float


@dataclass
class InjectionClassifier:
    spec: FeatureSpec
    weights: npt.NDArray[np.float32]  # (heads, 2**bits)
    intercepts: FloatArray  # (heads,)
    #: operating thresholds on the probability, per head (chosen on the training split)
    thresholds: dict[str, float]
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)
    #: the document head's weights for the dense segment features (None: n-grams only)
    dense: npt.NDArray[np.float32] | None = None
    embedding: StaticEmbedding | None = None
    stage: SecondStage | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, npz_path: Path, json_path: Path) -> InjectionClassifier:
        try:
            raw = npz_path.read_bytes()
            meta = json.loads(json_path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ModelError(f"cannot read the injection model: {exc}") from exc
        digest = hashlib.sha256(raw).hexdigest()
        if digest != meta.get("artifact", {}).get("sha256"):
            raise ModelError(
                f"{npz_path.name}: SHA-256 {digest} does not match the one in {json_path.name}"
            )
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            weights = np.asarray(z["weights"], dtype=np.float32)
            intercepts = np.asarray(z["intercepts"], dtype=np.float64)
            dense = np.asarray(z["dense"], dtype=np.float32) if "dense" in z.files else None
            stage_w = np.asarray(z["encoder"], dtype=np.float64) if "encoder" in z.files else None
        spec = FeatureSpec.from_dict(meta["features"])
        heads = list(meta["heads"])
        if heads != list(HEADS) or weights.shape != (len(HEADS), 1 << spec.bits):
            raise ModelError(f"{npz_path.name}: unexpected heads or weight shape")
        thresholds: dict[str, float] = {h: float(meta["thresholds"][h]) for h in HEADS}
        embedding = None
        if dense is not None:
            table = meta.get("dense", {})
            try:
                embedding = StaticEmbedding.load(
                    npz_path.parent / str(table["file"]), str(table["sha256"])
                )
            except (KeyError, EmbeddingError) as exc:
                raise ModelError(f"{npz_path.name}: dense features: {exc}") from exc
            if dense.shape != (embedding.dims + DENSE_EXTRA,):
                raise ModelError(f"{npz_path.name}: dense weights do not fit the table")
        stage = None
        if stage_w is not None:
            if embedding is None:
                raise ModelError(f"{npz_path.name}: the second stage needs the dense features")
            try:
                enc = meta["encoder"]
                stage = SecondStage(
                    stage_w[:-1],
                    float(stage_w[-1]),
                    float(enc["threshold_logit"]),
                    float(enc["band_logits"]),
                    int(enc["cap"]),
                    str(enc["safetensors_sha256"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelError(f"{npz_path.name}: second stage: {exc}") from exc
        return cls(spec, weights, intercepts, thresholds, digest, meta, dense, embedding, stage)

    @classmethod
    def load_default(cls) -> InjectionClassifier:
        return _default()

    # ------------------------------------------------------------------ scoring
    def dense_logits(self, low_raw: bytes, spans: SpanArray) -> FloatArray:
        """The dense features' share of the document head's logit for each segment."""
        if self.dense is None or self.embedding is None:
            return np.zeros(len(spans))
        x = segment_features(self.embedding, low_raw, spans)
        out: FloatArray = (x @ self.dense).astype(np.float64)
        return out

    def encoder(self) -> MiniLMEncoder:
        """The second stage's sentence encoder (loaded and checked once per process)."""
        if self.stage is None or self.embedding is None:
            raise ModelError("this model has no second stage")
        return default_encoder(self.embedding, self.stage.encoder_sha256)

    def stage_logits(
        self,
        low_raw: bytes,
        spans: SpanArray,
        rows: Sequence[int],
        dense_x: npt.NDArray[np.float32],
    ) -> FloatArray:
        """Second-stage logits (minus its threshold) of segments ``rows`` of a document, in
        one encoder batch; ``dense_x``: :func:`segment_features` of all its segments."""
        if self.stage is None:
            raise ModelError("this model has no second stage")
        texts = [low_raw[spans[k, 0] : spans[k, 1]].decode("utf-8", "replace") for k in rows]
        x = stage_inputs(self.encoder().encode(texts), dense_x[list(rows)])
        out: FloatArray = x @ self.stage.weights + (
            self.stage.intercept - self.stage.threshold_logit
        )
        return out

    def document_logits(
        self, feats: Features, spans: SpanArray, low_raw: bytes
    ) -> tuple[FloatArray, npt.NDArray[np.float32] | None]:
        """The document head's logits and the dense features they used (None: none)."""
        z = self.span_logits(feats, spans, "document")
        if self.dense is None or self.embedding is None:
            return z, None
        x = segment_features(self.embedding, low_raw, spans.reshape(-1, 2))
        return z + (x @ self.dense).astype(np.float64), x

    def head_logits(
        self, feats: Features, spans: SpanArray, head: Head, low_raw: bytes
    ) -> FloatArray:
        """What the detector scores: :meth:`span_logits`, plus the dense features on the
        document head. ``low_raw`` is the lower-cased text's UTF-8."""
        z = self.span_logits(feats, spans, head)
        if head == "document" and self.dense is not None:
            z = z + self.dense_logits(low_raw, spans.reshape(-1, 2))
        return z

    def span_logits(
        self, feats: Features, spans: Sequence[tuple[int, int]] | SpanArray, head: Head
    ) -> FloatArray:
        """Logit of each span (byte offsets) of a featurised text, for one head, from its
        n-grams only: the intercept plus the weights of the n-grams starting in the span
        over n**alpha."""
        h = HEADS.index(head)
        alpha = self.spec.alpha
        b = float(self.intercepts[h])
        se = spans if isinstance(spans, np.ndarray) else np.array(spans, dtype=np.int64)
        se = se.reshape(-1, 2)
        n_feats = len(feats.idx)
        if n_feats == 0 or len(se) == 0:
            return np.full(len(se), b)
        contrib = self.weights[h][feats.idx]
        n = feats.length
        if len(se) == 1 and se[0, 0] == 0 and se[0, 1] == n:
            return np.array([b + float(contrib.sum(dtype=np.float64)) / n_feats**alpha])
        # per-position sums of n-gram weights, prefix-summed; counts per span follow from
        # the part lengths for character n-grams (they start at every position)
        acc = np.zeros(n + 1)
        s_arr, e_arr = se[:, 0], se[:, 1]
        total_n = np.zeros(len(se))
        for j, st in enumerate(feats.starts):
            base, top = feats.offsets[j], feats.offsets[j + 1]
            if st is None:
                acc[1 : top - base + 1] += contrib[base:top]
                m = top - base
                total_n += np.minimum(e_arr, m) - np.minimum(s_arr, m)
            else:
                acc[1:] += np.bincount(st, weights=contrib[base:top], minlength=n)
                total_n += np.searchsorted(st, e_arr) - np.searchsorted(st, s_arr)
        np.cumsum(acc, out=acc)
        out: FloatArray = b + (acc[e_arr] - acc[s_arr]) / np.maximum(total_n, 1.0) ** alpha
        return out

    def units(self, text: str, head: Head, low: str | None = None) -> list[tuple[int, int]]:
        """What a head scores: windows of the text (prompt head) or its sentence-like
        segments (document head); byte offsets into the UTF-8 of ``text.lower()``."""
        return units(text, head, self.spec, low)

    def window_logits(self, text: str, head: Head = "prompt") -> list[tuple[int, int, float]]:
        """(start, end, logit) of every unit of already normalised text (not lower-cased;
        that happens here)."""
        low = text.lower()
        feats = featurize(low, self.spec)
        spans = unit_array(text, head, self.spec, low)
        logits = self.head_logits(feats, spans, head, low.encode("utf-8", "surrogatepass"))
        return [
            (int(s), int(e), float(z)) for (s, e), z in zip(spans.tolist(), logits, strict=True)
        ]

    def window_scores(self, text: str, head: Head = "prompt") -> list[WindowScore]:
        return [WindowScore(s, e, _sigmoid(z)) for s, e, z in self.window_logits(text, head)]

    def score(self, text: str, head: Head = "prompt") -> float:
        """Probability-like score in [0, 1] that ``text`` is an injection: the highest of
        its windows. ``text`` is normalised here (NFKC, invisible characters removed)."""
        from warden.guard.normalize import normalize

        norm = normalize(text).text
        return max(_sigmoid(z) for _, _, z in self.window_logits(norm, head))


@functools.cache
def _default() -> InjectionClassifier:
    return InjectionClassifier.load(DEFAULT_NPZ, DEFAULT_JSON)
