"""The layered prompt-injection detector.

``InjectionDetector.load_default().scan(text, surface)`` runs three layers (four on the
document surface), each reporting
its own signals, and combines them into one score in [0, 1]:

1. **normalise** (``injection.normalise``) — NFKC; zero-width, bidi-control, tag and other
   invisible characters stripped and counted (their presence is evidence); text smuggled in
   Unicode tag characters decoded in place so the next layers read it.
2. **signature** (``injection.signature``) — the curated, versioned rule set in
   ``rules/injection_signatures.yaml``; base64/hex payloads are decoded and rescanned.
3. **classifier** (``injection.classifier``) — hashed n-gram logistic regression
   (``models/injection-clf-v3.*``, see ``MODEL_CARD.md``). Its *prompt* head scores windows
   of any text for jailbreak/override language; on the *document* surface its *document*
   head also scores every sentence-like segment for an instruction planted for the model,
   from its n-grams and from static word-piece embeddings (what the sentence is about,
   and how far that is from the rest of the document).

Texts longer than one chunk, and every document, are read as overlapping chunks of
``CHUNK_BYTES`` bytes (UTF-8) advancing by half a chunk, so an instruction that straddles a
boundary lies whole in the next chunk. A chunk's score combines the evidence found in it;
the report's score is the highest chunk score and ``top_chunk`` says which chunk that was.

Scores are calibrated so that ``default_threshold`` (0.5) is each layer's operating point:
a signature rule's own score, a classifier head's threshold chosen by cross-validation on
the training split. Evidence from different layers in one chunk adds up (noisy-OR), so two
weak findings (say, zero-width characters inside words and a borderline classifier score)
can flag together what neither would alone. The policy sets per-surface thresholds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from warden.guard.classifier import (
    Head,
    InjectionClassifier,
    featurize,
    logit,
    unit_array,
    window_array,
)
from warden.guard.normalize import NormalizedText, normalize
from warden.guard.signals import Signal, Surface
from warden.guard.signatures import Decoded, SignatureSet

DETECTOR_CLASSIFIER = "injection.classifier"
DETECTOR_ENCODER = "injection.encoder"

#: a classifier finding is reported as a signal from this calibrated score up
CLASSIFIER_REPORT_FLOOR = 0.25


@dataclass(frozen=True)
class InjectionReport:
    #: combined score in [0, 1]; compare with a threshold (default 0.5)
    score: float
    #: evidence, one or more per layer that found something
    signals: list[Signal]
    #: how many chunks the text was read as
    chunks: int
    surface: Surface
    #: the chunk with the highest score (None for empty text)
    top_chunk: int | None = None
    #: score of every chunk
    chunk_scores: list[float] = field(default_factory=list)
    #: (start, end) of every chunk, in characters of the normalised text
    chunk_spans: list[tuple[int, int]] = field(default_factory=list)
    #: highest score of each layer, before combination
    layer_scores: dict[str, float] = field(default_factory=dict)
    normalized: NormalizedText | None = field(default=None, repr=False, compare=False)

    def flagged(self, threshold: float = 0.5) -> bool:
        return self.score >= threshold

    def hit_chunks(self, threshold: float = 0.5) -> list[int]:
        return [i for i, s in enumerate(self.chunk_scores) if s >= threshold]

    def as_record(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "surface": self.surface,
            "chunks": self.chunks,
            "top_chunk": self.top_chunk,
            "layer_scores": {k: round(v, 4) for k, v in self.layer_scores.items()},
            "signals": [s.as_record() for s in self.signals],
        }


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _noisy_or(*scores: float) -> float:
    miss = 1.0
    for s in scores:
        miss *= 1.0 - min(max(s, 0.0), 1.0)
    return 1.0 - miss


class InjectionDetector:
    #: every layer's operating point maps to this score (see the module docstring)
    default_threshold: ClassVar[float] = 0.5
    #: chunk size and step in bytes (UTF-8) for documents and long texts
    CHUNK_BYTES: ClassVar[int] = 512
    CHUNK_STEP: ClassVar[int] = 256

    def __init__(self, signatures: SignatureSet, classifier: InjectionClassifier) -> None:
        self.signatures = signatures
        self.classifier = classifier
        spec = classifier.spec
        if (spec.window, spec.stride) != (self.CHUNK_BYTES, self.CHUNK_STEP):
            raise ValueError("the classifier's windows must be the detector's chunks")
        #: per head, the logit the cross-validated threshold sits at
        self._offsets: dict[str, float] = {h: logit(p) for h, p in classifier.thresholds.items()}

    @classmethod
    def load_default(cls) -> InjectionDetector:
        """The shipped rules and model, loaded once per process."""
        return _default()

    def warm(self) -> InjectionDetector:
        """Load the second stage's encoder now (else the first document scan does) and run
        it once, so the first request pays neither."""
        if self.classifier.stage is not None:
            self.classifier.encoder().encode(["warm up."])
        return self

    @property
    def version(self) -> dict[str, str]:
        """What a decision record names to reproduce a scan."""
        return {
            "signatures": self.signatures.version,
            "classifier": "sha256:" + self.classifier.sha256,
            **(
                {"encoder": "sha256:" + self.classifier.stage.encoder_sha256}
                if self.classifier.stage is not None
                else {}
            ),
        }

    # ------------------------------------------------------------------ scanning
    def scan(self, text: str, surface: Surface = "text") -> InjectionReport:
        norm = normalize(text, surface)
        t = norm.text
        low = t.lower()
        raw = low.encode("utf-8", "surrogatepass")
        spec = self.classifier.spec
        chunk_spans_b = window_array(len(raw), self.CHUNK_BYTES, self.CHUNK_STEP)
        n_chunks = len(chunk_spans_b)
        if len(raw) == len(low):
            char_at = None  # ASCII: byte offsets are character offsets
        else:
            starts_char = (np.frombuffer(raw, dtype=np.uint8) & 0xC0) != 0x80
            char_at = np.concatenate(([0], np.cumsum(starts_char)))

        def to_chars(b: int) -> int:
            return b if char_at is None else int(char_at[b])

        def to_bytes(c: int) -> int:
            return c if char_at is None else len(low[:c].encode("utf-8", "surrogatepass"))

        def chunk_of(bs: int) -> int:
            # chunk j covers [j*step, j*step + 2*step): the one whose first half holds bs
            # holds whole every span that starts at bs and is at most a step long
            return min(bs // self.CHUNK_STEP, n_chunks - 1)

        signals: list[Signal] = list(norm.signals)
        norm_score = max((s.score for s in norm.signals), default=0.0)

        # ---- signatures
        decoded: list[Decoded] = []
        sig_chunk = [0.0] * n_chunks
        for sig in self.signatures.match(t, surface, decoded=decoded, low=low):
            c = 0
            if sig.start is not None and sig.end is not None:
                c = chunk_of(to_bytes(sig.start))
            sig_chunk[c] = max(sig_chunk[c], sig.score)
            signals.append(replace(sig, chunk=c if n_chunks > 1 else None))

        # ---- classifier
        clf_chunk = np.zeros(n_chunks)
        best: tuple[float, str, int, int, int] | None = None  # score, source, bs, be, chunk
        enc_chunk = [0.0] * n_chunks
        enc_best: tuple[float, int, int, int] | None = None  # score, bs, be, chunk
        dense_x = None
        if raw:
            feats = featurize(low, spec)
            heads: tuple[Head, ...] = (
                ("prompt", "document") if surface == "document" else ("prompt",)
            )
            for head in heads:
                if head == "prompt":
                    spans = chunk_spans_b
                    z = self.classifier.head_logits(feats, spans, head, raw)
                else:
                    spans = unit_array(t, "document", spec, low)
                    z, dense_x = self.classifier.document_logits(feats, spans, raw)
                z = z - self._offsets[head]
                scores = 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))
                chunk_idx = np.minimum(spans[:, 0] // self.CHUNK_STEP, n_chunks - 1)
                np.maximum.at(clf_chunk, chunk_idx, scores)
                k = int(np.argmax(scores))
                if best is None or scores[k] > best[0]:
                    bs, be = int(spans[k, 0]), int(spans[k, 1])
                    best = (float(scores[k]), str(head), bs, be, int(chunk_idx[k]))
                stage = self.classifier.stage
                if head == "document" and stage is not None and dense_x is not None:
                    cand = stage.candidates(z)
                    if cand:
                        z2 = self.classifier.stage_logits(raw, spans, cand, dense_x)
                        for kk, zz in zip(cand, z2.tolist(), strict=True):
                            s2 = _sigmoid(zz)
                            c = int(chunk_idx[kk])
                            enc_chunk[c] = max(enc_chunk[c], s2)
                            if enc_best is None or s2 > enc_best[0]:
                                enc_best = (s2, int(spans[kk, 0]), int(spans[kk, 1]), c)
        for d in decoded:  # text hidden in base64/hex, read as a prompt
            hidden = max(zz for _, _, zz in self.classifier.window_logits(d.text, "prompt"))
            score = _sigmoid(hidden - self._offsets["prompt"])
            c = chunk_of(to_bytes(d.start))
            clf_chunk[c] = max(float(clf_chunk[c]), score)
            if best is None or score > best[0]:
                best = (score, "decoded", to_bytes(d.start), to_bytes(d.end), c)
        clf_score = float(clf_chunk.max()) if n_chunks else 0.0
        if best is not None and best[0] >= CLASSIFIER_REPORT_FLOOR:
            score, source, bs, be, c = best
            what = {
                "prompt": "jailbreak/override language (prompt head)",
                "document": "instruction planted for the model (document head)",
                "decoded": "jailbreak/override language in a decoded payload",
            }[source]
            signals.append(
                Signal(
                    DETECTOR_CLASSIFIER,
                    f"{source}_head" if source != "decoded" else "decoded_payload",
                    round(score, 6),
                    surface,
                    what,
                    start=to_chars(bs),
                    end=to_chars(be),
                    chunk=c if n_chunks > 1 else None,
                )
            )

        if enc_best is not None and enc_best[0] >= CLASSIFIER_REPORT_FLOOR:
            score, bs, be, c = enc_best
            signals.append(
                Signal(
                    DETECTOR_ENCODER,
                    "second_stage",
                    round(score, 6),
                    surface,
                    "task planted for the model (sentence encoder, second stage)",
                    start=to_chars(bs),
                    end=to_chars(be),
                    chunk=c if n_chunks > 1 else None,
                )
            )

        # the second stage only re-reads segments the document head left undecided: the two
        # stages are one layer, so a chunk takes the higher of them (not a noisy-OR, which
        # would flag two near misses that neither stage flags on its own)
        chunk_scores = [
            _noisy_or(norm_score, sig_chunk[i], max(float(clf_chunk[i]), enc_chunk[i]))
            for i in range(n_chunks)
        ]
        top = max(range(n_chunks), key=lambda i: chunk_scores[i]) if raw else None
        return InjectionReport(
            score=max(chunk_scores, default=norm_score) if raw else norm_score,
            signals=signals,
            chunks=n_chunks if raw else 0,
            surface=surface,
            top_chunk=top,
            chunk_scores=chunk_scores if raw else [],
            chunk_spans=(
                [(to_chars(s), to_chars(e)) for s, e in chunk_spans_b.tolist()] if raw else []
            ),
            layer_scores={
                "normalise": norm_score,
                "signature": max(sig_chunk, default=0.0),
                "classifier": clf_score,
                "encoder": max(enc_chunk, default=0.0),
            },
            normalized=norm,
        )


@functools.cache
def _default() -> InjectionDetector:
    return InjectionDetector(SignatureSet.load_default(), InjectionClassifier.load_default())
