"""Layer 2 of the injection detector: a curated, versioned set of signatures.

The rules live in ``rules/injection_signatures.yaml`` (see the header of that file for the
format). ``SignatureSet.load_default()`` loads it once; ``match(text)`` returns one
:class:`~warden.guard.signals.Signal` per rule that matched (its first match), with the
span in the scanned text. Encoded payloads (long base64 or hex blobs) are decoded and, if
they hold text, rescanned with every other rule, so an instruction hidden in base64 is
found.

``version`` is the SHA-256 of the YAML file's bytes: a decision record that names it can
fetch exactly this rule set again.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from warden.guard.signals import Signal, Surface

DETECTOR = "injection.signature"
DEFAULT_PATH = Path(__file__).parent / "rules" / "injection_signatures.yaml"

CATEGORIES = (
    "instruction_override",
    "role_hijack",
    "fake_delimiter",
    "exfiltration_link",
    "encoded_payload",
    "prompt_leak",
)

_FRAGMENT = re.compile(r"\{\{(\w+)\}\}")
_ESCAPES = re.compile(r"\\.")
#: bytes.translate table: whitespace stays a space, every other byte becomes "x"; a run
#: of min_length "x" is a whitespace-free token long enough to be an encoded blob
_BLOB_TABLE = bytes(32 if c in b" \t\n\r\x0b\x0c" else 120 for c in range(256))
#: bytes.translate table: ASCII punctuation and digits become spaces, so split() gives words
_WORD_TABLE = bytes(c if (97 <= c <= 122 or c >= 128) else 32 for c in range(256))
#: decoded payloads must look like text to be rescanned
_MIN_DECODED_LETTERS = 12
#: score of a blob that decodes to readable text (supporting evidence, below 0.5)
DECODED_TEXT_SCORE = 0.45
#: floor for a decoded payload that matches another rule
DECODED_INJECTION_SCORE = 0.9
#: blobs decoded per scan, at most (bounds the work an adversary can cause)
MAX_DECODES = 16


class SignatureError(ValueError):
    """The rule file is malformed (the message names the rule and the problem)."""


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    score: float
    description: str
    patterns: tuple[re.Pattern[str], ...]
    #: whole-word keywords (letters only) and substring keywords, lowercase
    words: frozenset[bytes] = frozenset()
    substrings: tuple[str, ...] = ()
    #: a second keyword group that must match too (empty: no second condition)
    and_words: frozenset[bytes] = frozenset()
    and_substrings: tuple[str, ...] = ()
    decode: str | None = None
    min_length: int = 0

    @functools.cached_property
    def substring_set(self) -> frozenset[str]:
        return frozenset(self.substrings)

    @functools.cached_property
    def and_substring_set(self) -> frozenset[str]:
        return frozenset(self.and_substrings)

    @functools.cached_property
    def has_and(self) -> bool:
        return bool(self.and_words or self.and_substrings)

    def search(self, text: str) -> re.Match[str] | None:
        best: re.Match[str] | None = None
        for pattern in self.patterns:
            m = pattern.search(text)
            if m is not None and (best is None or m.start() < best.start()):
                best = m
        return best


@dataclass(frozen=True)
class Decoded:
    """A blob decoded to text: where it was, and what it said."""

    rule_id: str
    start: int
    end: int
    text: str


class SignatureSet:
    def __init__(self, rules: Iterable[Rule], *, version: str, declared_version: str) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        #: "sha256:<hex>" of the rule file's bytes
        self.version = version
        #: the ``version:`` field inside the file
        self.declared_version = declared_version
        self._plain = tuple(r for r in self.rules if r.decode is None)
        self._decoders = tuple(r for r in self.rules if r.decode is not None)
        self._min_blob = min((r.min_length for r in self._decoders), default=0)
        self._blob_probe = b"x" * self._min_blob
        # substring keywords grouped by what must be present first (see _anchor)
        by_anchor: dict[tuple[bytes, ...] | str, list[str]] = {}
        for k in sorted({k for r in self._plain for k in (*r.substrings, *r.and_substrings)}):
            by_anchor.setdefault(_anchor(k), []).append(k)
        self._word_anchored = tuple(
            (frozenset(a), tuple(v)) for a, v in by_anchor.items() if isinstance(a, tuple)
        )
        self._char_anchored = tuple(
            (a, tuple(v)) for a, v in by_anchor.items() if isinstance(a, str)
        )

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path) -> SignatureSet:
        raw = Path(path).read_bytes()
        return cls.from_yaml(raw)

    @classmethod
    def from_yaml(cls, raw: bytes) -> SignatureSet:
        version = "sha256:" + hashlib.sha256(raw).hexdigest()
        doc = yaml.safe_load(raw)
        if not isinstance(doc, dict) or "rules" not in doc or "version" not in doc:
            raise SignatureError("rule file needs a 'version' and a 'rules' list")
        fragments = {str(k): str(v) for k, v in (doc.get("fragments") or {}).items()}
        rules: list[Rule] = []
        seen: set[str] = set()
        for i, entry in enumerate(doc["rules"]):
            rule = _parse_rule(entry, i, fragments)
            if rule.id in seen:
                raise SignatureError(f"rule {rule.id!r}: duplicate id")
            seen.add(rule.id)
            rules.append(rule)
        return cls(rules, version=version, declared_version=str(doc["version"]))

    @classmethod
    def load_default(cls) -> SignatureSet:
        return _default()

    # ------------------------------------------------------------------ matching
    def match(
        self,
        text: str,
        surface: Surface = "text",
        *,
        decoded: list[Decoded] | None = None,
        low: str | None = None,
    ) -> list[Signal]:
        """One signal per rule that matched ``text``. Blobs that decode to text are
        rescanned; pass a list as ``decoded`` to receive them (the detector also runs the
        classifier over them). ``low`` is ``text.lower()`` if the caller has it."""
        if low is None:
            low = text.lower()
        signals = self._match_plain(text, surface, low)
        if (
            self._decoders
            and len(low) == len(text)
            and len(low) >= self._min_blob
            and self._blob_probe in low.encode("utf-8", "replace").translate(_BLOB_TABLE)
        ):
            signals += self._match_encoded(text, low, surface, decoded)
        return signals

    def _match_plain(self, text: str, surface: Surface, low: str | None = None) -> list[Signal]:
        if low is None:
            low = text.lower()
        words = set(low.encode("utf-8", "replace").translate(_WORD_TABLE).split())
        present: set[str] = set()
        for anchor, keys in self._word_anchored:
            if anchor <= words:
                for k in keys:
                    if k in low:
                        present.add(k)
        for char, keys in self._char_anchored:
            if char in low:
                for k in keys:
                    if k in low:
                        present.add(k)
        out: list[Signal] = []
        for rule in self._plain:
            if rule.words.isdisjoint(words) and rule.substring_set.isdisjoint(present):
                continue
            if rule.has_and and (
                rule.and_words.isdisjoint(words) and rule.and_substring_set.isdisjoint(present)
            ):
                continue
            m = rule.search(low)
            if m is not None:
                out.append(
                    Signal(
                        DETECTOR,
                        rule.id,
                        rule.score,
                        surface,
                        f"{rule.category}: {rule.description}",
                        start=m.start(),
                        end=m.end(),
                    )
                )
        return out

    def _match_encoded(
        self, text: str, low: str, surface: Surface, sink: list[Decoded] | None
    ) -> list[Signal]:
        # blobs are whitespace-free: only the long tokens are searched (original case)
        spans: list[tuple[int, int]] = []
        cursor = 0
        for token in [t for t in low.split() if len(t) >= self._min_blob]:
            pos = low.find(token, cursor)
            cursor = pos + len(token)
            spans.append((pos, cursor))
        out: list[Signal] = []
        budget = MAX_DECODES
        for rule in self._decoders:
            first: tuple[int, int] | None = None
            best_text: tuple[float, str, int, int] | None = None
            for s0, e0 in spans:
                if e0 - s0 < rule.min_length:
                    continue
                token = text[s0:e0]
                for pattern in rule.patterns:
                    for m in pattern.finditer(token):
                        blob = m.group()
                        if rule.decode == "base64" and not _looks_base64(blob):
                            continue
                        start, end = s0 + m.start(), s0 + m.end()
                        if first is None or start < first[0]:
                            first = (start, end)
                        if budget <= 0:
                            continue
                        budget -= 1
                        plain = _decode(rule.decode or "", blob)
                        if plain is None:
                            continue
                        if sink is not None:
                            sink.append(Decoded(rule.id, start, end, plain))
                        inner = self._match_plain(plain, surface)
                        if inner:
                            score = max(DECODED_INJECTION_SCORE, *(s.score for s in inner))
                            names = ", ".join(s.name for s in inner)
                            detail = f"decoded {rule.decode} payload matches {names}"
                        else:
                            score = DECODED_TEXT_SCORE
                            detail = f"{rule.decode} payload decodes to text"
                        if best_text is None or score > best_text[0]:
                            best_text = (score, detail, start, end)
            if first is not None:
                out.append(
                    Signal(
                        DETECTOR,
                        rule.id,
                        rule.score,
                        surface,
                        f"{rule.category}: {rule.description}",
                        start=first[0],
                        end=first[1],
                    )
                )
            if best_text is not None:
                score, detail, s, e = best_text
                suffix = "injection" if score >= DECODED_INJECTION_SCORE else "text"
                out.append(
                    Signal(
                        DETECTOR,
                        f"{rule.id}_{suffix}",
                        score,
                        surface,
                        f"{rule.category}: {detail}",
                        start=s,
                        end=e,
                    )
                )
        return out


def _parse_rule(entry: Any, index: int, fragments: dict[str, str]) -> Rule:
    if not isinstance(entry, dict):
        raise SignatureError(f"rules[{index}]: not a mapping")
    rid = entry.get("id")
    where = f"rule {rid!r}" if rid else f"rules[{index}]"
    for key in ("id", "category", "score", "description", "patterns"):
        if key not in entry:
            raise SignatureError(f"{where}: missing {key!r}")
    unknown = set(entry) - {
        "id",
        "category",
        "score",
        "description",
        "patterns",
        "keywords",
        "decode",
        "min_length",
        "and_keywords",
    }
    if unknown:
        raise SignatureError(f"{where}: unknown keys {sorted(unknown)}")
    if entry["category"] not in CATEGORIES:
        raise SignatureError(f"{where}: unknown category {entry['category']!r}")
    score = float(entry["score"])
    if not 0.0 < score <= 1.0:
        raise SignatureError(f"{where}: score must be in (0, 1]")
    decode = entry.get("decode")
    if decode not in (None, "base64", "hex"):
        raise SignatureError(f"{where}: decode must be base64 or hex")
    keywords = [str(k).lower() for k in entry.get("keywords") or ()]
    and_keywords = [str(k).lower() for k in entry.get("and_keywords") or ()]
    if decode is None and not keywords:
        raise SignatureError(f"{where}: a rule needs keywords (its prefilter)")
    patterns = []
    for source in entry["patterns"]:
        expanded = _expand(str(source), fragments, where)
        bare = _ESCAPES.sub("", expanded)
        if decode is None and bare != bare.lower():
            raise SignatureError(f"{where}: patterns match lowercased text, write them lowercase")
        try:
            patterns.append(re.compile(expanded, re.MULTILINE))
        except re.error as exc:
            raise SignatureError(f"{where}: pattern does not compile: {exc}") from exc
    return Rule(
        id=str(rid),
        category=str(entry["category"]),
        score=score,
        description=str(entry["description"]),
        patterns=tuple(patterns),
        words=frozenset(k.encode() for k in keywords if _is_word(k)),
        substrings=tuple(k for k in keywords if not _is_word(k)),
        and_words=frozenset(k.encode() for k in and_keywords if _is_word(k)),
        and_substrings=tuple(k for k in and_keywords if not _is_word(k)),
        decode=decode,
        min_length=int(entry.get("min_length", 40)),
    )


def _expand(source: str, fragments: dict[str, str], where: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in fragments:
            raise SignatureError(f"{where}: unknown fragment {{{{{name}}}}}")
        return fragments[name]

    return _FRAGMENT.sub(repl, source)


def _is_word(keyword: str) -> bool:
    return keyword.isascii() and keyword.isalpha()


def _anchor(keyword: str) -> tuple[bytes, ...] | str:
    """What must be present before a substring keyword is looked for: its complete words
    as whole words ("you are now" -> you, are; "don't obey" -> don), or else its first
    character ("<|" -> "<"). Checking those first is much cheaper than every substring."""
    tokens = re.findall(r"[a-z]+(?=[^a-z])", keyword)
    if tokens and keyword[0].isalpha():
        return tuple(t.encode() for t in tokens)
    return keyword[0]


def _looks_base64(blob: str) -> bool:
    """Mixed case and a digit or symbol: what encoded bytes look like, unlike a long path
    or identifier."""
    return (
        any(c.islower() for c in blob)
        and any(c.isupper() for c in blob)
        and any(c.isdigit() or c in "+/" for c in blob)
    )


def _decode(kind: str, blob: str) -> str | None:
    """The text a blob encodes, or None if it is not (mostly printable) text."""
    try:
        if kind == "base64":
            s = blob.rstrip("=")
            alt = "-_" if ("-" in s or "_" in s) else None
            s += "=" * (-len(s) % 4)
            data = base64.b64decode(s, altchars=alt.encode() if alt else None, validate=True)
        else:
            data = bytes.fromhex(blob.replace("\\x", ""))
        plain = data.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    printable = sum(1 for c in plain if c.isprintable() or c in "\n\t\r")
    letters = sum(1 for c in plain if c.isalpha())
    if printable < 0.95 * len(plain) or letters < _MIN_DECODED_LETTERS or " " not in plain:
        return None
    return plain


@functools.cache
def _default() -> SignatureSet:
    return SignatureSet.load(DEFAULT_PATH)
