"""Output anomaly checks: evidence that a model's answer is not the kind of answer this
decision type produces — or that it is carrying something out.

Three detectors, each reporting :class:`~warden.guard.signals.Signal`\\ s on the ``output``
surface (evidence, not verdicts; the outputs gate applies the policy):

``output.length``
    The answer's length against a rolling baseline per decision type: the last ``window``
    lengths (default 500) fed through :meth:`OutputAnomalyChecker.observe`. Statistics are
    robust — median and MAD of log(1 + length) — so a few odd answers do not move the
    baseline; the window is kept sorted as it rolls, so both are exact and cost O(log n)
    per answer, not a sort of the window. Flagged only after ``min_observations``
    (default 30), when the robust z-score is at least ``z_threshold`` (default 4) *and*
    the answer is at least ``min_ratio`` (default 3×) longer or shorter than the median.
    A floor on the spread (``min_spread``, ≈ ±15 %) keeps a very regular baseline from
    flagging small changes. Names: ``too_long``, ``too_short``.

``output.content_type``
    Content that does not belong in a decision's answer: fenced or indented code
    (``code_block``), shell commands (``shell_command``), HTML (``html``), active content —
    script/iframe/object tags, ``javascript:`` URLs, event handlers (``script``), bare URLs
    (``url``), markdown links (``markdown_link``) and images (``markdown_image``, also
    ``<img>`` tags). Images fetch themselves when the answer is rendered, so an image
    whose URL carries data (a query string, or a long encoded path segment) is the classic
    exfiltration channel and scores 1.0; links and URLs carrying data score higher than
    plain ones. ``allow`` names content types a decision type may contain, and
    ``"host:<domain>"`` entries allow URLs, links and images to that domain and its
    subdomains.

``output.canary``
    The per-request canary token (placed in the system prompt; see :func:`new_canary`)
    appears in the answer — verbatim, spaced out / case-changed / split by punctuation or
    zero-width characters (``obfuscated``), base64-encoded (standard or URL-safe, alone or
    inside a larger base64 blob, also across line wraps), hex-encoded or reversed. Any of
    these is a leak of the system prompt: score 1.0.

Thread-safe: the baselines sit behind one lock; ``check`` only reads them.
"""

from __future__ import annotations

import base64
import bisect
import math
import re
import secrets
import threading
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from warden.guard.signals import Signal
from warden.series_board import SeriesBoard, SharedSeries

__all__ = [
    "CANARY_PREFIX",
    "CONTENT_TYPES",
    "LengthBaseline",
    "OutputAnomalyChecker",
    "new_canary",
]

CANARY_PREFIX = "WARDEN-CANARY-"

#: names reported by ``output.content_type`` (and accepted in ``allow``)
CONTENT_TYPES: frozenset[str] = frozenset(
    {
        "code_block",
        "shell_command",
        "html",
        "script",
        "url",
        "markdown_link",
        "markdown_image",
    }
)


def length_value(length: int) -> float:
    """An answer length as the windows hold it: on a log scale (lengths are skewed)."""
    if length < 0:
        raise ValueError("length must be >= 0")
    return math.log1p(length)


def new_canary() -> str:
    """A fresh, unguessable canary token: ``WARDEN-CANARY-`` and 16 hex digits (64 bits)."""
    return CANARY_PREFIX + secrets.token_hex(8)


# --------------------------------------------------------------------------- length


@dataclass(frozen=True)
class LengthBaseline:
    #: observations in the window
    n: int
    #: median of log(1 + length)
    log_median: float
    #: median absolute deviation of log(1 + length)
    log_mad: float

    @property
    def median_length(self) -> float:
        return math.expm1(self.log_median)


class _Window:
    """The last ``size`` values in arrival order and the same values sorted, so that the
    median and the MAD come out exactly as :func:`statistics.median` would compute them
    over the window, in O(log n) instead of two sorts of the whole window per answer."""

    __slots__ = ("cached", "order", "size", "sorted")

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: deque[float] = deque()
        self.sorted: list[float] = []
        self.cached: LengthBaseline | None = None

    def add(self, value: float) -> None:
        if len(self.order) == self.size:
            old = self.order.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]
        self.order.append(value)
        bisect.insort(self.sorted, value)
        self.cached = None

    def baseline(self) -> LengthBaseline:
        s = self.sorted
        n = len(s)
        half = n // 2
        med = s[half] if n % 2 else (s[half - 1] + s[half]) / 2
        # deviations |v - med| form two sorted runs: below the median (read downwards) and
        # from it up; their median is a k-th-smallest of two sorted sequences
        split = bisect.bisect_left(s, med)

        def dev(i: int) -> float:  # the i-th smallest deviation
            return _kth_of_two(s, split, med, i)

        mad = dev(half) if n % 2 else (dev(half - 1) + dev(half)) / 2
        return LengthBaseline(n, med, mad)


def _kth_of_two(s: list[float], split: int, med: float, k: int) -> float:
    """The k-th smallest (0-based) of ``med - s[split-1], med - s[split-2], …`` (a) and
    ``s[split] - med, s[split+1] - med, …`` (b), both ascending, by binary search on how
    many of the first k+1 come from a."""
    len_a, len_b = split, len(s) - split

    def a(i: int) -> float:
        return abs(s[split - 1 - i] - med)

    def b(j: int) -> float:
        return abs(s[split + j] - med)

    lo, hi = max(0, k + 1 - len_b), min(k + 1, len_a)
    while True:
        i = (lo + hi) // 2
        j = k + 1 - i
        if i < len_a and j > 0 and b(j - 1) > a(i):
            lo = i + 1
        elif i > 0 and j < len_b and a(i - 1) > b(j):
            hi = i - 1
        else:
            left_a = a(i - 1) if i > 0 else -math.inf
            left_b = b(j - 1) if j > 0 else -math.inf
            return max(left_a, left_b)


# --------------------------------------------------------------------------- content


@dataclass(frozen=True)
class _Hit:
    name: str
    score: float
    start: int
    end: int
    host: str = ""
    carries_data: bool = False


_FENCE = re.compile(r"^[ \t]{0,3}(?:```|~~~)", re.MULTILINE)
_INDENTED_LINE = re.compile(r"^(?: {4,}|\t+)(?![-*+] |\d+[.)] )\S.*$")
_CODE_CHARS = re.compile(r"[;{}=]|\(\)|=>|\b(?:def|return|import|function|var|const|let|class)\b")
#: a prompt ("$ ", "# ", "> ", "PS C:\\> ") then a command, in lower case as typed
#: ("# Export" is a markdown heading, not a root shell)
_SHELL_PROMPT = re.compile(
    r"(?m)^[ \t]*(?:\$|#|>|PS[^>\n]{0,40}>)[ \t]+"
    r"(?:sudo|curl|wget|rm|chmod|chown|bash|sh|zsh|python3?|perl|nc|ncat|ssh|scp|"
    r"powershell|pwsh|cat|echo|export|env|base64|git|pip|npm|docker|kubectl)\b"
)
#: tell-tale commands anywhere, each behind a cheap substring test of the lower-cased text
_SHELL_ANYWHERE: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (
        ("curl", "wget"),
        re.compile(
            r"\b(?:curl|wget)[ \t]+(?:-{1,2}[\w-]+[ \t]+(?:\S+[ \t]+)?)*['\"]?(?:https?|ftp)://"
        ),
    ),
    (("rm ", "rm\t"), re.compile(r"\brm[ \t]+-[a-z]*(?:r[a-z]*f|f[a-z]*r)")),
    (("|",), re.compile(r"\|[ \t]*(?:sudo[ \t]+)?(?:ba|z)?sh\b")),
    (("base64",), re.compile(r"\bbase64[ \t]+(?:-d|--decode)\b")),
    (("nc ", "ncat"), re.compile(r"\b(?:nc|ncat)[ \t]+-[a-z]*[el]\b")),
    (
        ("powershell", "pwsh"),
        re.compile(
            r"(?i)\b(?:powershell|pwsh)(?:\.exe)?[ \t]+-(?:e|enc|encodedcommand|c|command)\b"
        ),
    ),
    (
        ("invoke-", "iwr", "iex"),
        re.compile(r"(?i)\b(?:invoke-webrequest|invoke-expression|iwr|iex)[ \t(]"),
    ),
    (("chmod",), re.compile(r"\bchmod[ \t]+\+x\b")),
)
_ACTIVE_TAG = re.compile(
    r"<\s*(?:script|iframe|object|embed|applet|frame|frameset|base|meta\s+http-equiv)\b"
    r"|\bjavascript\s*:"
    r"|<[a-z][^>]*\son[a-z]+\s*=",
    re.IGNORECASE,
)
_HTML_TAG = re.compile(
    r"</?(?:a|abbr|b|blockquote|body|br|button|code|div|em|font|form|h[1-6]|head|hr|"
    r"html|i|input|label|li|link|ol|p|pre|section|select|small|span|strong|style|sub|sup|"
    r"svg|table|tbody|td|textarea|th|thead|tr|u|ul|video|audio|source|img)\b[^<>]*>",
    re.IGNORECASE,
)
_IMG_TAG_SRC = re.compile(r"<\s*img\b[^>]*?\bsrc\s*=\s*[\"']?([^\"'\s>]+)", re.IGNORECASE)
_MD_IMAGE = re.compile(r"!\[([^\]\n]{0,500})\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
_MD_LINK = re.compile(
    r"(?<!!)\[([^\]\n]{0,500})\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)"
)
_MD_REF_IMAGE = re.compile(r"!\[([^\]\n]{0,500})\]\[([^\]\n]{0,100})\]")
_MD_REF_DEF = re.compile(r"(?m)^[ \t]{0,3}\[([^\]\n]{1,100})\]:[ \t]*<?(\S+?)>?(?:[ \t].*)?$")
_URL = re.compile(
    r"\b(?:(?:https?|ftp|wss?)://|www\.)[^\s<>\"'`\])}]+|\bdata:[a-z]+/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]{8,}",
    re.IGNORECASE,
)
_DATA_SEGMENT = re.compile(r"[A-Za-z0-9+/=_%-]{24,}")
_TRAILING_PUNCT = ".,;:!?'\""


def _url_info(url: str) -> tuple[str, bool]:
    """(host, carries data) for a URL; data = a query string, or a long encoded segment."""
    if url.lower().startswith("data:"):
        return "data:", True
    target = url if "://" in url else "http://" + url
    try:
        parts = urlsplit(target)
        host = (parts.hostname or "").lower()
    except ValueError:
        return "", True
    carries = bool(parts.query) or len(parts.fragment) >= 24
    if not carries:
        carries = any(_DATA_SEGMENT.fullmatch(seg) for seg in parts.path.split("/") if seg)
    return host, carries


def _host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in allowed_hosts if d)


#: off only in tests, which check that the prefilter changes no result
_PREFILTER = True


def _find_content(text: str) -> list[_Hit]:
    """Every content hit in ``text``. Each pattern runs only when a substring that every
    match of it contains is present (exact: the patterns' literal characters, and for the
    case-insensitive ones letters without non-ASCII case variants, so ``text.lower()`` finds
    them); ordinary prose then costs a few substring tests instead of a dozen regex scans
    (486-character answer: 59 -> ~5 µs)."""
    hits: list[_Hit] = []
    covered: list[tuple[int, int]] = []  # spans of links/images, so URLs inside are not re-counted
    low = text.lower()
    every = not _PREFILTER  # tests turn the prefilter off to compare
    tag = every or "<" in text
    link = every or "](" in text

    if every or "```" in text or "~~~" in text:
        fences = list(_FENCE.finditer(text))
        for opening, closing in zip(fences[::2], [*fences[1::2], None], strict=False):
            hits.append(_Hit("code_block", 0.6, opening.start(), (closing or opening).end()))
    if every or "    " in text or "\t" in text:
        hits.extend(_indented_code(text))
    if every or "$" in text or "#" in text or ">" in text:
        for m in _SHELL_PROMPT.finditer(text):
            hits.append(_Hit("shell_command", 0.7, m.start(), m.end()))
    for triggers, rx in _SHELL_ANYWHERE:
        if any(t in low for t in triggers):
            for m in rx.finditer(text):
                hits.append(_Hit("shell_command", 0.7, m.start(), m.end()))
    # "javascript:" case-insensitively: "java" has no non-ASCII case variant ("s" has: ſ)
    if tag or (":" in text and "java" in low):
        for m in _ACTIVE_TAG.finditer(text):
            hits.append(_Hit("script", 0.9, m.start(), m.end()))
    if tag:
        for m in _HTML_TAG.finditer(text):
            hits.append(_Hit("html", 0.5, m.start(), m.end()))

    def image(url: str, start: int, end: int) -> None:
        host, data = _url_info(url)
        if not (host or "://" in url or url.lower().startswith(("data:", "//"))):
            return  # a relative path: not fetched from elsewhere
        hits.append(_Hit("markdown_image", 1.0 if data else 0.8, start, end, host, data))
        covered.append((start, end))

    if link:
        for m in _MD_IMAGE.finditer(text):
            image(m.group(2), m.start(), m.end())
    if tag:
        for m in _IMG_TAG_SRC.finditer(text):
            image(m.group(1), m.start(), m.end())
    if every or "]:" in text:
        refs = {k.strip().lower(): v for k, v in _MD_REF_DEF.findall(text)}
        image_refs: set[str] = set()
        if every or "][" in text:
            for m in _MD_REF_IMAGE.finditer(text):
                key = (m.group(2) or m.group(1)).strip().lower()
                if key in refs:
                    image(refs[key], m.start(), m.end())
                    image_refs.add(key)
        for m in _MD_REF_DEF.finditer(text):
            covered.append((m.start(), m.end()))
            if m.group(1).strip().lower() in image_refs:
                continue  # reported with its image
            host, data = _url_info(m.group(2))
            hits.append(
                _Hit("markdown_link", 0.85 if data else 0.6, m.start(), m.end(), host, data)
            )
    if link:
        for m in _MD_LINK.finditer(text):
            url = m.group(2)
            if url.lower().startswith("javascript:"):
                continue  # reported as "script"
            host, data = _url_info(url)
            if not host and "://" not in url:
                continue  # relative link or anchor
            hits.append(
                _Hit("markdown_link", 0.85 if data else 0.6, m.start(), m.end(), host, data)
            )
            covered.append((m.start(), m.end()))
    if every or "://" in text or "www." in low or "data:" in low:
        for m in _URL.finditer(text):
            if any(s <= m.start() < e for s, e in covered):
                continue
            url = m.group().rstrip(_TRAILING_PUNCT)
            host, data = _url_info(url)
            score = 0.7 if url.lower().startswith("data:") else (0.6 if data else 0.4)
            hits.append(_Hit("url", score, m.start(), m.start() + len(url), host, data))
    return hits


def _indented_code(text: str) -> list[_Hit]:
    """Two or more consecutive lines indented by 4+ spaces (or a tab) after a blank line,
    at least one with code-like characters; nested list items are not code."""
    hits: list[_Hit] = []
    pos = 0
    prev_blank = True
    block_start = -1
    block_lines: list[str] = []

    def flush(end: int) -> None:
        if len(block_lines) >= 2 and any(_CODE_CHARS.search(line) for line in block_lines):
            hits.append(_Hit("code_block", 0.4, block_start, end))

    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if _INDENTED_LINE.match(body) and (block_lines or prev_blank):
            if not block_lines:
                block_start = pos
            block_lines.append(body)
        else:
            flush(pos)
            block_lines = []
        prev_blank = not body.strip()
        pos += len(line)
    flush(pos)
    return hits


_LABELS = {
    "code_block": "code block",
    "shell_command": "shell command",
    "html": "HTML tag",
    "script": "active-content tag or handler",
    "url": "URL",
    "markdown_link": "markdown link",
    "markdown_image": "markdown/HTML image",
}


# --------------------------------------------------------------------------- canary

_NOT_ALNUM = re.compile(r"[\W_]+")
_WS = re.compile(r"\s+")


#: for ASCII text, what the two patterns above remove, as byte tables (NFKC leaves ASCII
#: as it is; `\s` on str also matches \x1c-\x1f): the same result at a tenth of the cost
_ASCII_NOT_ALNUM = bytes(c for c in range(128) if not chr(c).isalnum() or c == 0x5F)
_ASCII_WS = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def _alnum_lower(s: str) -> str:
    if s.isascii():
        return s.encode().translate(None, _ASCII_NOT_ALNUM).decode().lower()
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", s)).lower()


def _without_whitespace(s: str) -> str:
    if s.isascii():
        return s.encode().translate(None, _ASCII_WS).decode()
    return _WS.sub("", s)


def _b64_fragments(secret: bytes) -> set[str]:
    """Substrings present in any base64 encoding of a byte string containing ``secret``,
    whatever its alignment (offset mod 3) — standard and URL-safe alphabets."""
    out: set[str] = set()
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + secret).decode()
        # characters touched by the k prefix bytes, and the last (partial) group
        head = math.ceil(k * 4 / 3)
        tail = (len(secret) + k) % 3
        body = enc[head : len(enc) - (4 if tail else 0)]
        if len(body) >= 12:
            out.add(body)
            out.add(body.replace("+", "-").replace("/", "_"))
    return out


@dataclass(frozen=True)
class _CanaryForms:
    core: str
    alnum: str
    b64: frozenset[str]
    hexes: frozenset[str]


def _canary_forms(canary: str) -> _CanaryForms:
    alnum = _alnum_lower(canary)
    # the random part ("…-<hex>") alone is what is unguessable; a leak of just that counts
    tail = re.split(r"[\W_]+", canary.strip())[-1]
    core = tail.lower() if len(tail) >= 12 and tail.isalnum() else alnum
    b64: set[str] = set()
    hexes: set[str] = set()
    for variant in {canary, canary.lower(), canary.upper(), tail, tail.lower(), tail.upper()}:
        if len(variant) >= 8:
            b64 |= _b64_fragments(variant.encode())
            hexes.add(variant.encode().hex())
    return _CanaryForms(core, alnum, frozenset(b64), frozenset(hexes))


def _canary_leak(text: str, canary: str) -> tuple[str, int, int] | None:
    """(how, start, end) of the first way the canary shows up in ``text``, if any."""
    if not canary.strip():
        return None
    forms = _canary_forms(canary)
    low = text.lower()
    i = low.find(canary.lower())
    if i >= 0:
        return "plain", i, i + len(canary)
    i = low.find(forms.core)
    if i >= 0:
        return "plain", i, i + len(forms.core)
    squeezed = _alnum_lower(text)
    if forms.alnum in squeezed or forms.core in squeezed:
        return "obfuscated", 0, len(text)
    if forms.alnum[::-1] in squeezed or forms.core[::-1] in squeezed:
        return "reversed", 0, len(text)
    compact = _without_whitespace(text)
    for frag in forms.b64:
        if frag in compact:
            return "base64", 0, len(text)
    compact_low = compact.lower()
    for h in forms.hexes:
        if h in compact_low:
            return "hex", 0, len(text)
    return None


# --------------------------------------------------------------------------- checker


class OutputAnomalyChecker:
    """Length, content-type and canary checks on a model's answer."""

    def __init__(
        self,
        *,
        window: int = 500,
        min_observations: int = 30,
        z_threshold: float = 4.0,
        min_ratio: float = 3.0,
        min_spread: float = 0.1,
        max_decision_types: int = 1000,
    ) -> None:
        if window < 2 or min_observations < 2 or min_observations > window:
            raise ValueError("need 2 <= min_observations <= window")
        self.window = window
        self.min_observations = min_observations
        self.z_threshold = z_threshold
        self.min_ratio = min_ratio
        #: floor on the log-MAD (0.1 → a robust σ of ≈ 15 %)
        self.min_spread = min_spread
        self.max_decision_types = max_decision_types
        self._lock = threading.Lock()
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._board: SeriesBoard | None = None
        self._shared: dict[str, SharedSeries] = {}

    # ---------------------------------------------------------------- baseline

    def share(self, board: SeriesBoard) -> None:
        """Keep the length windows of the decision types on `board` with the other request
        workers (`warden serve --workers N`): each answer's length is appended there, and
        every worker's window takes in all of them, in the board's order."""
        with self._lock:
            self._board, self._shared = board, {}
            self._windows.clear()

    @property
    def shared(self) -> bool:
        """Whether the windows are kept on a series board with other workers."""
        return self._board is not None

    def _series(self, decision_type: str) -> SharedSeries | None:
        if self._board is None or f"length:{decision_type}" not in self._board:
            return None
        series = self._shared.get(decision_type)
        if series is None:
            series = self._shared[decision_type] = self._board.series(f"length:{decision_type}")
        return series

    def _window(self, decision_type: str, *, fresh: bool = False) -> _Window:
        w = self._windows.get(decision_type)
        if w is None or fresh:
            w = self._windows[decision_type] = _Window(self.window)
            while len(self._windows) > self.max_decision_types:
                self._windows.popitem(last=False)
        return w

    def _sync(self, decision_type: str) -> None:
        """Take in the lengths the workers appended since the last look (lock held)."""
        series = self._series(decision_type)
        if series is None:
            return
        _first, lost, pairs = series.pull()
        if pairs or lost:
            w = self._window(decision_type, fresh=lost)  # a gap: start the window over
            for value, _owner in pairs:
                w.add(value)

    def observe(self, decision_type: str, length: int) -> None:
        """Add one answer's length to the decision type's rolling window."""
        value = length_value(length)
        with self._lock:
            series = self._series(decision_type)
            if series is not None:  # the window takes it in at the next look, in order
                series.append(value)
                return
            self._window(decision_type).add(value)

    def baseline(self, decision_type: str) -> LengthBaseline | None:
        """The decision type's current baseline, or None before any observation."""
        with self._lock:
            self._sync(decision_type)
            w = self._windows.get(decision_type)
            if w is None or not w.order:
                return None
            if w.cached is None:
                w.cached = w.baseline()
            return w.cached

    def check_length(self, length: int, *, decision_type: str) -> Signal | None:
        base = self.baseline(decision_type)
        if base is None or base.n < self.min_observations:
            return None
        value = length_value(length)
        scale = 1.4826 * max(base.log_mad, self.min_spread)
        z = (value - base.log_median) / scale
        ratio = math.exp(value - base.log_median)
        if abs(z) < self.z_threshold:
            return None
        if 1 / self.min_ratio < ratio < self.min_ratio:
            return None
        strength = min(1.0, 0.5 + 0.5 * (abs(z) - self.z_threshold) / self.z_threshold)
        name = "too_long" if z > 0 else "too_short"
        if name == "too_short":
            strength = min(strength, 0.6)  # a terse answer is odd, not exfiltration
        return Signal(
            detector="output.length",
            name=name,
            score=round(strength, 3),
            surface="output",
            detail=(
                f"{length} chars vs median {base.median_length:.0f} for {decision_type!r} "
                f"({ratio:.1f}x, robust z {z:+.1f}, n={base.n})"
            ),
        )

    # ---------------------------------------------------------------- check

    def check(
        self,
        text: str,
        *,
        decision_type: str,
        canary: str | None,
        allow: Iterable[str] = frozenset(),
    ) -> list[Signal]:
        """All signals for one answer. Does not update the baseline: call :meth:`observe`
        (typically with the same length) once the answer is settled."""
        signals: list[Signal] = []
        length_signal = self.check_length(len(text), decision_type=decision_type)
        if length_signal is not None:
            signals.append(length_signal)
        signals.extend(self.check_content(text, allow=allow))
        if canary:
            leak = _canary_leak(text, canary)
            if leak is not None:
                how, start, end = leak
                signals.append(
                    Signal(
                        detector="output.canary",
                        name=how,
                        score=1.0,
                        surface="output",
                        detail=f"the request's canary token appears in the output ({how})",
                        start=start,
                        end=end,
                    )
                )
        return signals

    def check_content(self, text: str, *, allow: Iterable[str] = frozenset()) -> list[Signal]:
        allow = set(allow)
        hosts = [a.split(":", 1)[1].strip().lower() for a in allow if a.startswith("host:")]
        by_name: dict[str, list[_Hit]] = {}
        for hit in _find_content(text):
            if hit.name in allow:
                continue
            if hit.host and hosts and _host_allowed(hit.host, hosts):
                continue
            by_name.setdefault(hit.name, []).append(hit)
        signals: list[Signal] = []
        for name in sorted(by_name):
            hits = by_name[name]
            best = max(hits, key=lambda h: (h.score, -h.start))
            n_data = sum(h.carries_data for h in hits)
            label = _LABELS[name]
            detail = f"{len(hits)} {label}{'' if len(hits) == 1 else 's'}"
            if n_data:
                detail += f", {n_data} carrying data (query string or encoded path)"
            if best.host:
                detail += f"; e.g. host {best.host[:64]}"
            signals.append(
                Signal(
                    detector="output.content_type",
                    name=name,
                    score=best.score,
                    surface="output",
                    detail=detail,
                    start=best.start,
                    end=best.end,
                )
            )
        return signals
