"""Static word-piece embeddings for the document head: what a sentence is *about*.

A planted instruction is often an ordinary request ("Describe the lifecycle of a
butterfly.") that is only an attack *where it stands*: it is not about the e-mail around it
and it is addressed to whoever reads it. Character n-grams see the words, not that. This
module gives every sentence-like segment of a document a small dense vector — the sum of
static vectors of its word pieces — so the document head can score what kind of sentence
it is and how far it is from the rest of the document.

The table (``models/static-embed-v1.npz``) was distilled once from the
sentence-transformers model ``all-MiniLM-L6-v2`` (Apache-2.0) by
``warden.guard.distill_embedding``: every word piece of its vocabulary run through the
model on its own, mean-pooled, reduced by PCA, weighted by rarity (Zipf), stored as
float16. Nothing is downloaded or run at scan time: scoring is a tokenizer (BERT's basic
tokenizer and greedy WordPiece, written here) plus table look-ups and sums.

The file holds ``table`` (vocabulary × dims, float16) and ``vocab`` (the word pieces as one
UTF-8 blob, one per line), no pickle; its SHA-256 is recorded in the classifier's JSON and
checked at load.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from warden.guard.npz import npz_bytes

MODELS_DIR = Path(__file__).parent / "models"
EMBED_NAME = "static-embed-v1"
DEFAULT_EMBED = MODELS_DIR / f"{EMBED_NAME}.npz"

#: a word of lower-cased UTF-8 (letters, digits, any non-ASCII byte), or one punctuation
#: character; the same split as BERT's basic tokenizer for ASCII text
_WORD = re.compile(rb"[a-z0-9\x80-\xff]+|[^\sa-z0-9\x80-\xff]")
_MAX_PIECES_WORD = 100  # longer "words" (hashes, base64) are one [UNK], as in BERT
_CACHE_LIMIT = 50_000

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class EmbeddingError(RuntimeError):
    """The embedding table is missing or altered."""


@dataclass
class StaticEmbedding:
    table: F32  # (vocabulary, dims)
    vocab: dict[str, int]
    sha256: str
    unk: int
    _cache: dict[bytes, tuple[int, ...]] = field(default_factory=dict, repr=False)

    @property
    def dims(self) -> int:
        return int(self.table.shape[1])

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: Path, sha256: str | None = None) -> StaticEmbedding:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise EmbeddingError(f"cannot read the embedding table: {exc}") from exc
        digest = hashlib.sha256(raw).hexdigest()
        if sha256 is not None and digest != sha256:
            raise EmbeddingError(f"{path.name}: SHA-256 {digest} is not the expected {sha256}")
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            table = np.asarray(z["table"], dtype=np.float32)
            blob = bytes(np.asarray(z["vocab"], dtype=np.uint8))
        pieces = blob.decode("utf-8").split("\n")
        if len(pieces) != table.shape[0]:
            raise EmbeddingError(f"{path.name}: vocabulary and table sizes differ")
        vocab = {p: i for i, p in enumerate(pieces)}
        return cls(table, vocab, digest, vocab.get("[UNK]", 0))

    @classmethod
    def load_default(cls, sha256: str | None = None) -> StaticEmbedding:
        return _default(sha256)

    # ------------------------------------------------------------------ tokenizing
    def _pieces(self, word: bytes) -> tuple[int, ...]:
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        text = word.decode("utf-8", "replace")
        if not text.isascii():  # BERT uncased: strip accents
            text = "".join(
                c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
            )
        out = self._wordpiece(text)
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[word] = out
        return out

    def _wordpiece(self, text: str) -> tuple[int, ...]:
        vocab = self.vocab
        whole = vocab.get(text)
        if whole is not None:
            return (whole,)
        if len(text) > _MAX_PIECES_WORD:
            return (self.unk,)
        out: list[int] = []
        s, n = 0, len(text)
        while s < n:
            e, cur = n, -1
            while s < e:
                cur = vocab.get(text[s:e] if s == 0 else "##" + text[s:e], -1)
                if cur >= 0:
                    break
                e -= 1
            if cur < 0:
                return (self.unk,)
            out.append(cur)
            s = e
        return tuple(out)

    def tokens(self, low_raw: bytes) -> tuple[I64, I64]:
        """Word-piece ids of lower-cased UTF-8 text and the byte offset each starts at
        (every piece of a word starts where the word does)."""
        found = list(_WORD.finditer(low_raw))
        get, slow = self._cache.get, self._pieces
        pieces = [get(w) or slow(w) for w in [m.group() for m in found]]
        counts = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        ids = np.fromiter(itertools.chain.from_iterable(pieces), dtype=np.int64)
        starts = np.repeat(np.fromiter((m.start() for m in found), np.int64, len(found)), counts)
        return ids, starts

    # ------------------------------------------------------------------ vectors
    def span_sums(self, low_raw: bytes, spans: I64) -> F32:
        """The summed piece vectors of the words starting in each span, shape (k, dims)."""
        ids, starts = self.tokens(low_raw)
        if len(spans) == 0:
            return np.zeros((0, self.dims), dtype=np.float32)
        # rows of the pieces plus a zero row, so that every span end is a valid index;
        # reduceat sums rows[lo:hi] at the even positions (spans may overlap)
        rows = np.zeros((len(ids) + 1, self.dims), dtype=np.float32)
        rows[: len(ids)] = self.table[ids]
        lo = np.searchsorted(starts, spans[:, 0])
        hi = np.searchsorted(starts, spans[:, 1])
        out: F32 = np.add.reduceat(rows, np.stack([lo, hi], axis=1).ravel(), axis=0)[::2]
        out[lo >= hi] = 0.0
        return out


#: segments on each side that make up a segment's neighbourhood
NEIGHBOURS = 2
#: the unit vector's features are scaled by this (a stronger prior on their weights than
#: the n-grams': chosen by cross-validation on the training split, 0.1-1.0 tried)
UNIT_SCALE = 0.3
#: names of the dense features after the embedding's dimensions
EXTRA_FEATURES = ("cosine_rest", "cosine_neighbours", "question")


def _cosine(unit: F32, other: F32) -> F32:
    """Cosine of unit rows with other rows; 1 (no evidence of a shift) where the other
    side is empty, as in a document of one sentence."""
    norm = np.linalg.norm(other, axis=1)
    cos = np.einsum("ij,ij->i", unit, other) / np.maximum(norm, 1e-6)
    out: F32 = np.where(norm > 1e-6, cos, 1.0).astype(np.float32)
    return out


def segment_features(emb: StaticEmbedding, low_raw: bytes, spans: I64) -> F32:
    """Dense features of each segment of one document, shape (k, dims + 3): the
    segment's unit vector (times ``UNIT_SCALE``), its cosine with the rest of the document
    and with its neighbourhood (``NEIGHBOURS`` segments each side), and whether it is a
    question."""
    sums = emb.span_sums(low_raw, spans)
    k = len(sums)
    total = sums.sum(axis=0, dtype=np.float32)
    prefix = np.zeros((k + 1, sums.shape[1]), dtype=np.float32)
    np.cumsum(sums, axis=0, out=prefix[1:])
    idx = np.arange(k)
    lo = np.maximum(idx - NEIGHBOURS, 0)
    hi = np.minimum(idx + NEIGHBOURS + 1, k)
    near = prefix[hi] - prefix[lo] - sums
    unit = sums / np.maximum(np.linalg.norm(sums, axis=1), 1e-6)[:, None]
    question = np.array(
        [1.0 if low_raw[s:e].rstrip().endswith(b"?") else 0.0 for s, e in spans.tolist()],
        dtype=np.float32,
    )
    cols = [_cosine(unit, total[None, :] - sums), _cosine(unit, near), question]
    out: F32 = np.concatenate([unit * np.float32(UNIT_SCALE), np.stack(cols, axis=1)], axis=1)
    return out


@functools.cache
def _default(sha256: str | None) -> StaticEmbedding:
    return StaticEmbedding.load(DEFAULT_EMBED, sha256)


def save_table(path: Path, table: npt.NDArray[np.float16], vocab: list[str]) -> str:
    """Write the table reproducibly (fixed zip timestamps) and return its SHA-256."""
    blob = np.frombuffer("\n".join(vocab).encode("utf-8"), dtype=np.uint8)
    raw = npz_bytes([("table", table), ("vocab", blob)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()
