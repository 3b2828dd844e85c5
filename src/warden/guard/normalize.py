"""Layer 1 of the injection detector: canonical text, and the invisible characters it hid.

``normalize(text)`` returns the text every later layer scans:

* Unicode tag characters (U+E0000–U+E007F) are removed and the ASCII they smuggle is
  decoded *in place* (between spaces), so a hidden instruction is scanned like visible
  text. A valid emoji subdivision flag (🏴 + tags + CANCEL TAG) is legitimate and kept quiet.
* zero-width characters, bidi controls and other invisible format characters are removed
  and counted per class; their presence is itself a signal. Legitimate uses are left in
  place and not counted: ZWJ inside emoji sequences, ZWNJ/ZWJ between letters of scripts
  that need them (Arabic, Persian, Indic, …).
* NFKC (fullwidth ``ｉｇｎｏｒｅ`` becomes ``ignore``, ligatures are split, …).
* words that mix Latin letters with Cyrillic/Greek look-alikes (``ignоre`` with a Cyrillic
  ``о``) are folded to Latin and flagged.
* whitespace is collapsed: runs of spaces/tabs become one space, line breaks are kept
  (at most one blank line), CR/LF and Unicode line separators become ``\\n``.

The common case (ASCII text with ordinary spacing) takes a fast path of a few regex
searches. An index mapping back to the original text is computed lazily, on demand
(:meth:`NormalizedText.original_index`).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from warden.guard.signals import Signal, Surface

DETECTOR = "injection.normalise"

CLASSES = ("zero_width", "bidi_control", "unicode_tag", "other_invisible")

_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u180e"
_BIDI_MARKS = "\u200e\u200f\u061c"
_BIDI_STRONG = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_OTHER = (
    "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u2061\u2062\u2063\u2064"
    "\u206a\u206b\u206c\u206d\u206e\u206f\u3164\uffa0\ufff9\ufffa\ufffb"
    "\x00-\x08\x0e-\x1f\x7f"
)
_TAGS = "\U000e0000-\U000e007f"
_VS_SUPPLEMENT = "\U000e0100-\U000e01ef"
_MUSICAL_FORMAT = "\U0001d173-\U0001d17a"

#: one match per invisible character, or per run of tag characters
_INVISIBLE = re.compile(
    f"[{_TAGS}]+|[{_ZERO_WIDTH}{_BIDI_MARKS}{_BIDI_STRONG}{_OTHER}{_VS_SUPPLEMENT}{_MUSICAL_FORMAT}]"
)
#: the same characters as one class: a much faster search when the answer is "none"
_ANY_INVISIBLE = re.compile(
    f"[{_TAGS}{_ZERO_WIDTH}{_BIDI_MARKS}{_BIDI_STRONG}{_OTHER}{_VS_SUPPLEMENT}{_MUSICAL_FORMAT}]"
)
#: in ASCII text only C0 controls (other than tab and line breaks) and DEL can hide
_ASCII_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f]")
_FLAG_TAGS = re.compile("[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,7}\U000e007f")

_ZW_SET = frozenset(_ZERO_WIDTH)
_BIDI_SET = frozenset(_BIDI_MARKS + _BIDI_STRONG)
_BIDI_STRONG_SET = frozenset(_BIDI_STRONG)

# whitespace: runs with a line break, and horizontal runs that are not a single space
# (NFKC has already turned no-break, em, ideographic, … spaces into plain spaces; every
#  pattern starts with a literal or a small class, so the regex engine skips ahead fast)
_LINEBREAKS = re.compile("\r\n?|[\u2028\u2029\x85\x0b\x0c]")
_TABS = re.compile("[\t\u1680]+")
_SPACES = re.compile(" {2,}")
_SPACE_NEWLINE = re.compile(" \n")
_NEWLINE_SPACES = re.compile("\n +")
_BLANK_LINES = re.compile("\n{3,}")

# Latin-looking Cyrillic and Greek letters, folded only inside words that also hold Latin
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁɡӏԛԝвмнктАЕОРСУХІЈЅВМНКТοαειкνρτυχΑΒΕΗΙΚΜΝΟΡΤΧΥΖ",
    "aeopcyxijsdglqwbmhktAEOPCYXIJSBMHKToaeiknptuxABEHIKMNOPTXYZ",
)
_CYRILLIC_GREEK = re.compile("[\u0370-\u03ff\u0400-\u04ff]")
_MIXED_WORD = re.compile(r"\b(?=[^\W\d_]*[A-Za-z])(?=[^\W\d_]*[\u0370-\u03ff\u0400-\u04ff])\w+")

#: signal strength per finding; >= 0.5 flags on its own at the detector's default threshold
SCORES = {
    "unicode_tag": 0.9,  # tag characters carrying a message
    "unicode_tag_empty": 0.6,  # tag characters that decode to nothing readable
    "bidi_override": 0.6,  # embeddings, overrides, isolates (Trojan-Source style)
    "bidi_mark": 0.2,  # LRM/RLM/ALM — common in right-to-left text
    "zero_width_in_word": 0.6,  # splits a Latin word: keyword-filter evasion
    "zero_width": 0.25,
    "vs_smuggling": 0.8,  # variation selectors 17–256 used as a data channel
    "other_invisible": 0.35,
    "mixed_script": 0.5,
}


#: (output position, input position, verbatim) — where a stretch of a step's output began
_Anchor = tuple[int, int, bool]


@dataclass(frozen=True)
class NormalizedText:
    text: str
    #: characters removed, per class (legitimate uses that were kept are not counted)
    removed: dict[str, int]
    signals: list[Signal]
    #: messages decoded from Unicode tag characters (also present, in place, in ``text``)
    hidden: list[str] = field(default_factory=list)
    #: words folded from mixed Latin/Cyrillic/Greek to Latin
    confusables_folded: int = 0
    original: str = ""
    _steps: list[list[_Anchor]] | None = field(default=None, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        return self.text != self.original

    def original_index(self, i: int) -> int:
        """Index in the original text of the character at ``i`` in ``text``. Exact for
        removed characters and collapsed whitespace; where NFKC changed the length of a
        character (ligatures, …) it points at that character."""
        if self.text == self.original:
            return i
        steps = self._steps
        if steps is None:
            steps = []
            _pipeline(self.original, _State(), steps)
            object.__setattr__(self, "_steps", steps)
        for anchors in reversed(steps):
            i = _map_back(anchors, i)
        return min(max(i, 0), max(len(self.original) - 1, 0))

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        if end <= start:
            s = self.original_index(start)
            return s, s
        return self.original_index(start), self.original_index(end - 1) + 1


@dataclass
class _State:
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    findings: dict[str, int] = field(default_factory=dict)
    hidden: list[str] = field(default_factory=list)
    folded: int = 0


def normalize(text: str, surface: Surface = "text") -> NormalizedText:
    """Canonical text for scanning; see the module docstring."""
    state = _State()
    out = _pipeline(text, state, None)
    return NormalizedText(
        text=out,
        removed=state.removed,
        signals=_signals(state, surface),
        hidden=state.hidden,
        confusables_folded=state.folded,
        original=text,
    )


def _pipeline(text: str, st: _State, track: list[list[_Anchor]] | None) -> str:
    if text.isascii():
        if _ASCII_INVISIBLE.search(text):
            text = _sub(_ASCII_INVISIBLE, _invisible_repl(text, st), text, track)
    else:
        if _ANY_INVISIBLE.search(text):
            text = _sub(_INVISIBLE, _invisible_repl(text, st), text, track)
        if not unicodedata.is_normalized("NFKC", text):
            text = _nfkc(text, track)
            if _ANY_INVISIBLE.search(text):  # NFKC can produce a filler (U+3164 -> U+1160)
                text = _sub(_INVISIBLE, _invisible_repl(text, st), text, track)
        if _CYRILLIC_GREEK.search(text) and _MIXED_WORD.search(text):
            text = _sub(_MIXED_WORD, _fold_repl(st), text, track)  # length-preserving
    if (
        "\r" in text
        or "\x0b" in text
        or "\x0c" in text
        or (not text.isascii() and ("\u2028" in text or "\u2029" in text or "\x85" in text))
    ):
        text = _sub(_LINEBREAKS, "\n", text, track)
    if "\t" in text or "\u1680" in text:
        text = _sub(_TABS, " ", text, track)
    if "  " in text:
        text = _sub(_SPACES, " ", text, track)
    if "\n" in text:
        if " \n" in text:
            text = _sub(_SPACE_NEWLINE, "\n", text, track)
        if "\n " in text:
            text = _sub(_NEWLINE_SPACES, "\n", text, track)
        if "\n\n\n" in text:
            text = _sub(_BLANK_LINES, "\n\n", text, track)
    stripped = text.strip()
    if track is not None:
        lead = len(text) - len(text.lstrip())
        track.append([(0, lead, True)])
    return stripped


def _sub(
    pattern: re.Pattern[str],
    repl: str | Callable[[re.Match[str]], str],
    text: str,
    track: list[list[_Anchor]] | None,
) -> str:
    if track is None:
        return pattern.sub(repl, text)
    parts: list[str] = []
    anchors: list[_Anchor] = [(0, 0, True)]
    out_pos = in_pos = 0
    for m in pattern.finditer(text):
        s, e = m.span()
        if s > in_pos:
            parts.append(text[in_pos:s])
            out_pos += s - in_pos
        r = repl if isinstance(repl, str) else repl(m)
        anchors.append((out_pos, s, len(r) == e - s))
        parts.append(r)
        out_pos += len(r)
        in_pos = e
        anchors.append((out_pos, e, True))
    parts.append(text[in_pos:])
    track.append(anchors)
    return "".join(parts)


def _nfkc(text: str, track: list[list[_Anchor]] | None) -> str:
    out = unicodedata.normalize("NFKC", text)
    if track is not None:
        anchors: list[_Anchor] = []
        pos = 0
        for i, ch in enumerate(text):
            piece = unicodedata.normalize("NFKC", ch)
            anchors.append((pos, i, len(piece) == 1))
            pos += len(piece)
        track.append(anchors or [(0, 0, True)])
    return out


def _map_back(anchors: list[_Anchor], i: int) -> int:
    k = bisect_right(anchors, (i, 1 << 62, True)) - 1
    if k < 0:
        return i
    out_pos, in_pos, verbatim = anchors[k]
    return in_pos + (i - out_pos) if verbatim else in_pos


def _is_emoji(ch: str) -> bool:
    o = ord(ch)
    return 0x1F000 <= o <= 0x1FAFF or 0x2600 <= o <= 0x27BF or o == 0xFE0F


def _needs_joiner(ch: str) -> bool:
    """Letters of scripts where ZWJ/ZWNJ are part of correct spelling."""
    o = ord(ch)
    return 0x0600 <= o <= 0x1CFF or 0xA8E0 <= o <= 0xABFF


def _invisible_repl(text: str, st: _State) -> Callable[[re.Match[str]], str]:
    n = len(text)
    removed, findings = st.removed, st.findings

    def note(key: str, count: int = 1) -> None:
        findings[key] = findings.get(key, 0) + count

    def repl(m: re.Match[str]) -> str:
        s = m.group()
        start, end = m.span()
        c = s[0]
        prev = text[start - 1] if start > 0 else ""
        nxt = text[end] if end < n else ""
        o = ord(c)
        if 0xE0000 <= o <= 0xE007F:
            if prev == "\U0001f3f4" and _FLAG_TAGS.fullmatch(s):
                return s  # emoji subdivision flag (England, Scotland, Wales, …)
            removed["unicode_tag"] += len(s)
            message = "".join(chr(ord(t) - 0xE0000) for t in s if 0xE0020 <= ord(t) <= 0xE007E)
            message = message.strip()
            if message:
                st.hidden.append(message)
                note("unicode_tag", len(s))
                return f" {message} "
            note("unicode_tag_empty", len(s))
            return ""
        if c in _ZW_SET:
            if c == "\u200d" and prev and nxt and _is_emoji(prev) and _is_emoji(nxt):
                return c  # emoji ZWJ sequence
            if c in "\u200c\u200d" and prev and nxt and (_needs_joiner(prev) or _needs_joiner(nxt)):
                return c
            removed["zero_width"] += 1
            in_word = prev.isascii() and prev.isalpha() and nxt.isascii() and nxt.isalpha()
            note("zero_width_in_word" if in_word else "zero_width")
            return ""
        if c in _BIDI_SET:
            removed["bidi_control"] += 1
            note("bidi_override" if c in _BIDI_STRONG_SET else "bidi_mark")
            return ""
        removed["other_invisible"] += 1
        if c == "\u00ad" and prev.isalpha() and nxt.isalpha():
            return ""  # soft hyphen inside a word: a hyphenation hint, counted, not a finding
        note("vs_smuggling" if 0xE0100 <= o <= 0xE01EF else "other_invisible")
        return ""

    return repl


def _fold_repl(st: _State) -> Callable[[re.Match[str]], str]:
    def repl(m: re.Match[str]) -> str:
        word = m.group()
        folded = word.translate(_CONFUSABLES)
        if folded != word:
            st.folded += 1
            st.findings["mixed_script"] = st.folded
        return folded

    return repl


def _signals(st: _State, surface: Surface) -> list[Signal]:
    if not st.findings:
        return []
    removed = st.removed
    # one signal per class, carrying the strongest finding of that class
    per_class: dict[str, tuple[float, str]] = {}
    for key, count in st.findings.items():
        if key.startswith("unicode_tag"):
            cls = "unicode_tag"
            hidden_chars = sum(len(h) for h in st.hidden)
            detail = f"{removed['unicode_tag']} tag characters" + (
                f" hiding {hidden_chars} ASCII characters" if hidden_chars else ""
            )
        elif key.startswith("bidi"):
            cls, detail = "bidi_control", f"{removed['bidi_control']} bidi control characters"
        elif key.startswith("zero_width"):
            cls = "zero_width"
            detail = f"{removed['zero_width']} zero-width characters"
            if "zero_width_in_word" in st.findings:
                detail += f", {st.findings['zero_width_in_word']} inside words"
        elif key == "mixed_script":
            cls, detail = "mixed_script", f"{count} words mixing Latin with Cyrillic/Greek"
        else:
            cls = "other_invisible"
            detail = f"{removed['other_invisible']} other invisible characters"
            if key == "vs_smuggling":
                detail += " (variation selectors 17-256)"
        score = SCORES[key]
        if cls not in per_class or score > per_class[cls][0]:
            per_class[cls] = (score, detail)
    return [
        Signal(DETECTOR, cls, score, surface, detail) for cls, (score, detail) in per_class.items()
    ]
