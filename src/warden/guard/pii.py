"""PII detection and redaction for the output gate, with Microsoft Presidio running offline.

What runs
---------
Presidio's ``AnalyzerEngine`` normally loads a large spaCy model (``en_core_web_lg``) for
named-entity recognition and downloads it when it is missing. Warden ships none of that:

* the NLP engine is presidio's ``NoOpNlpEngine``: no spaCy pipeline is loaded at all, no
  weights, nothing to download. The only thing Presidio used the NLP pipeline for with
  pattern recognizers is the context boost (words near a match such as "card", "SSN");
  :class:`WindowContextEnhancer` does that from the raw text instead. (A ``spacy.blank``
  tokenizer plus presidio's lemma enhancer does the same job in ~2 ms per 2 KB answer with
  five matches; the window enhancer takes ~0.1 ms.)
* only pattern recognizers with validation are registered:

  ============== ============================================================= ==============
  entity         recognizer                                                     validation
  ============== ============================================================= ==============
  CREDIT_CARD    presidio ``CreditCardRecognizer``, plus                        Luhn checksum
                 :class:`CardBrandRecognizer` (ours) for brands/lengths its     (+ IIN range
                 pattern misses (Mastercard 2-series, 19-digit Visa, Maestro)   or context)
  IBAN_CODE      presidio ``IbanRecognizer``, also on lower-case IBANs          per-country
                                                                                format + mod 97
  US_SSN         presidio ``UsSsnRecognizer``                                   area/group/serial
                                                                                rules; bare
                                                                                9-digit runs need
                                                                                context ("ssn")
  EMAIL_ADDRESS  presidio ``EmailRecognizer`` (public-suffix check against the  known TLD
                 snapshot bundled with ``tldextract``; never fetched)
  PHONE_NUMBER   presidio ``PhoneRecognizer`` (``phonenumbers`` metadata,      valid number
                 offline), run only on digit runs (see                          for a region
                 :class:`_PrefilteredPhoneRecognizer`)
  SWIFT_BIC      :class:`SwiftBicRecognizer` (ours)                             ISO 3166 country
                                                                                + context words
  BANK_ACCOUNT   :class:`BankAccountRecognizer` (ours)                          context-gated;
                                                                                ABA checksum for
                                                                                routing numbers
  ============== ============================================================= ==============

Names (PERSON), street addresses and the like need an NER model, which Warden does not ship;
they are deliberately out of scope here (see ``evaluate_pii``).

Before the analyzer runs, a necessary condition per entity type (a digit pattern, an "@",
a recognizer's own first step; see ``_possible_entities``) leaves out the types that cannot
be in the text, and the analyzer is not run at all when none can: same findings (checked on
the whole evaluation dataset), ~4x less time on a typical answer without PII.

The engine is built once per process (:meth:`PiiRedactor.default`) and warmed up so that
lazy regex compilation happens before concurrent use.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import phonenumbers
import phonenumbers.phonenumbermatcher
import regex
import tldextract
from presidio_analyzer import (
    AnalysisExplanation,
    AnalyzerEngine,
    EntityRecognizer,
    LocalRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, NoOpNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

from warden.countries import ISO_COUNTRIES_AND_XK
from warden.guard.signals import Signal

__all__ = [
    "ENTITIES",
    "BankAccountRecognizer",
    "CardBrandRecognizer",
    "PiiFinding",
    "PiiRedactor",
    "RedactionResult",
    "SwiftBicRecognizer",
]

#: every entity type this module detects, in tie-break priority order (first wins)
ENTITIES: tuple[str, ...] = (
    "IBAN_CODE",
    "CREDIT_CARD",
    "US_SSN",
    "SWIFT_BIC",
    "BANK_ACCOUNT",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
)
_PRIORITY: dict[str, int] = {name: i for i, name in enumerate(ENTITIES)}

#: phonenumbers regions tried for numbers written without a "+country" prefix (numbers
#: with one are found whatever the region). Each region costs one parse per digit run.
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "IE", "NL", "IN", "CA")

#: results below this score are not reported. Presidio's bare-9-digit SSN pattern scores
#: 0.05 and only clears it with a context word; a valid phone number scores 0.4.
DEFAULT_SCORE_THRESHOLD = 0.35

ISO_3166_ALPHA2 = ISO_COUNTRIES_AND_XK


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PiiFinding:
    entity_type: str
    start: int
    end: int
    score: float
    #: the presidio recognizer that produced it, e.g. "CreditCardRecognizer"
    recognizer: str


@dataclass(frozen=True)
class RedactionResult:
    #: the text with every finding replaced
    text: str
    #: the findings that were replaced, positions in the *original* text, ordered by start
    findings: tuple[PiiFinding, ...]
    #: number of replaced findings per entity type
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def redacted(self) -> bool:
        return bool(self.findings)


# --------------------------------------------------------------------------- context


class WindowContextEnhancer(ContextAwareEnhancer):
    """Presidio's context boost without an NLP pipeline.

    Presidio's ``LemmaContextAwareEnhancer`` compares the lemmas of the words before a
    match with each recognizer's context words. Here the words come straight from the
    text: the last ``context_prefix_count`` words before the match and the first
    ``context_suffix_count`` after it, lower-cased, split on anything that is not a
    letter. Matching is presidio's default "substring" mode (context word "card" matches
    "creditcard"), the boost is the same (+0.35, at least 0.4, at most 1.0).
    """

    _WORD = re.compile(r"[^\W\d_]+")
    #: characters looked at on each side; plenty for 6 words of running text
    SPAN = 64

    def __init__(
        self,
        context_similarity_factor: float = 0.35,
        min_score_with_context_similarity: float = 0.4,
        context_prefix_count: int = 6,
        context_suffix_count: int = 1,
    ) -> None:
        super().__init__(
            context_similarity_factor=context_similarity_factor,
            min_score_with_context_similarity=min_score_with_context_similarity,
            context_prefix_count=context_prefix_count,
            context_suffix_count=context_suffix_count,
        )

    def enhance_using_context(
        self,
        text: str,
        raw_results: list[RecognizerResult],
        nlp_artifacts: NlpArtifacts | None,
        recognizers: list[Any],
        context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        by_id = {r.id: r for r in recognizers}
        extra = [w.lower() for w in context or []]
        for result in raw_results:
            meta = result.recognition_metadata or {}
            recognizer = by_id.get(meta.get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY))
            if recognizer is None or not recognizer.context:
                continue
            if meta.get(RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY):
                continue
            words = self.surrounding_words(text, result.start, result.end) + extra
            hit = next((c for c in recognizer.context if any(c.lower() in w for w in words)), None)
            if hit is None:
                continue
            score = max(
                result.score + self.context_similarity_factor,
                self.min_score_with_context_similarity,
            )
            result.score = min(score, self.MAX_SCORE)
            if result.analysis_explanation is not None:
                result.analysis_explanation.set_supportive_context_word(hit)
                result.analysis_explanation.set_improved_score(result.score)
        return raw_results

    def surrounding_words(self, text: str, start: int, end: int) -> list[str]:
        before = self._WORD.findall(text[max(0, start - self.SPAN) : start])
        words = [w.lower() for w in before[-self.context_prefix_count :]]
        if self.context_suffix_count:
            after = self._WORD.findall(text[end : end + self.SPAN])
            words += [w.lower() for w in after[: self.context_suffix_count]]
        return words


# --------------------------------------------------------------------------- recognizers


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, with two changes:

    * the public-suffix check uses the snapshot bundled in ``tldextract`` (the stock one
      may fetch the suffix list over HTTP on first use);
    * the pattern runs only around each "@" (64 characters before — the RFC 5321 limit of
      a local part — and 256 after), not over the whole text: the stock pattern costs
      ~0.8 ms per 2 KB even when there is no "@" at all.
    """

    BEFORE = 64
    AFTER = 256

    def __init__(self) -> None:
        self._tld = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())
        super().__init__()

    def validate_result(self, pattern_text: str) -> bool:
        return bool(self._tld(pattern_text).fqdn)

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        windows: list[list[int]] = []
        at = text.find("@")
        while at != -1:
            lo, hi = max(0, at - self.BEFORE), at + self.AFTER
            if windows and lo <= windows[-1][1]:
                windows[-1][1] = hi
            else:
                windows.append([lo, hi])
            at = text.find("@", at + 1)
        results: list[RecognizerResult] = []
        for lo, hi in windows:
            for r in super().analyze(text[lo:hi], entities, nlp_artifacts, regex_flags):
                r.start += lo
                r.end += lo
                results.append(r)
        return results


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class _AnyCaseIbanRecognizer(IbanRecognizer):
    """Presidio's IBAN recognizer (format per country + mod-97 checksum), also for IBANs
    written in lower case. The stock pattern is case-sensitive, and running it
    case-insensitively costs 15×; instead, when something IBAN-like in lower case is
    present, it runs again over an ASCII-upper-cased copy (same length, same offsets)."""

    _LOWER_HINT = re.compile(r"(?<![A-Za-z0-9])[a-zA-Z]{2}\d{2}[ -]?[a-zA-Z0-9]{4}")

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = super().analyze(
            text,
            entities,
            nlp_artifacts,  # type: ignore[arg-type]
        )
        if any(not m.group().isupper() for m in self._LOWER_HINT.finditer(text)):
            upper = text.translate(_ASCII_UPPER)
            for r in super().analyze(upper, entities, nlp_artifacts):  # type: ignore[arg-type]
                if not any(r.start < o.end and o.start < r.end for o in results):
                    results.append(r)
        return results


#: the matcher's per-candidate check; private, so without it: is_valid_number only
_matcher_verify: Callable[..., bool] | None = getattr(
    phonenumbers.phonenumbermatcher, "_verify", None
)


class _PrefilteredPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recognizer, run only where a phone number can be.

    The stock recognizer runs ``phonenumbers.PhoneNumberMatcher`` over the whole text once
    per region (~10 ms for 2 KB with 8 regions; ``phonenumbers`` is pure Python). Here:

    1. a cheap regex finds candidate runs — digits joined by at most two spaces or phone
       punctuation characters, optionally after "+" or "(" — holding 6 to 15 digits (17
       after "+" or "00"; E.164 numbers have at most 15); longer runs are card numbers,
       IBAN tails or tables; dates and IPv4 addresses are skipped;
    2. the candidate is parsed for each region in turn (one parse when it starts with
       "+"); a region is tried further only if the matcher's own verification for the
       leniency (valid number, national prefix where required) holds there;
    3. for such a region the matcher's own per-candidate path runs (``_extract_match``:
       its date, time-stamp, bracket and neighbouring-character checks against the full
       text), with the configured leniency; the first region with a match wins.

    The price: a valid number glued to other digits by punctuation in a way the regex joins
    (e.g. "0207 946 0958-12") is missed when the joined run is not itself valid, and
    16-digit runs the stock recognizer sometimes reports as phone numbers (card numbers
    failing Luhn) are not.
    """

    _CANDIDATE = re.compile(
        r"\+?\(?\d(?:[ ().\-]{0,2}\d)*\)?(?:,?\s?(?:x|ext\.?|extension)\s?\d{1,6})?",
        re.IGNORECASE,
    )
    #: dates, IPv4 addresses and decimal amounts ("3903.19"): never phone numbers
    _NOT_PHONE = re.compile(
        r"\d{4}-\d{2}-\d{2}|\d{1,2}[.\-]\d{1,2}[.\-]\d{4}|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
        r"|\d+\.\d{2}"
    )
    #: digits glued to letters ("RF16 2154 2363", an ISO 11649 payment reference) or
    #: joined to them by one hyphen, slash or hash ("P-330849", "CLM-982633"): the tail of
    #: an identifier (claim, policy, reference numbers), not a phone number
    _IDENTIFIER_BEFORE = re.compile(r"[A-Za-z][-/#]?\Z")
    #: without the matcher's private per-candidate method: characters of context either
    #: side for a scan (it rejects "2015-12-22 04:34:22" time stamps by what follows)
    MARGIN = 8

    @property
    def _leniency(self) -> int:
        return 1 if self.leniency is None else int(self.leniency)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for m in self.candidates(text):
            candidate = m.group()
            # "+…" parses the same whatever the region
            regions = self.supported_regions[:1] if candidate[0] == "+" else self.supported_regions
            for region in regions:
                if not self._parses_valid(candidate, region):
                    continue
                found = self._match(text, m.start(), m.end(), region)
                if found:
                    results.extend(found)
                    break
        return list(EntityRecognizer.remove_duplicates(results))

    def candidates(self, text: str) -> Iterator[re.Match[str]]:
        """Step 1: the digit runs that can be a phone number (nothing else is parsed)."""
        for m in self._CANDIDATE.finditer(text):
            candidate = m.group()
            if len(candidate) < 6:  # fewer than 6 characters: fewer than 6 digits
                continue
            n_digits = sum(c.isdigit() for c in candidate)
            if not 6 <= n_digits <= (17 if candidate.startswith(("+", "00")) else 15):
                continue
            if self._NOT_PHONE.fullmatch(candidate):
                continue
            start = m.start()
            if candidate[0] != "+" and self._IDENTIFIER_BEFORE.search(
                text, max(0, start - 2), start
            ):
                continue
            yield m

    def _match(self, text: str, start: int, end: int, region: str) -> list[RecognizerResult]:
        matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=self._leniency)
        extract = getattr(matcher, "_extract_match", None)
        if extract is not None:
            # the matcher's own per-candidate path (date/time-stamp/bracket checks, the
            # neighbouring characters in the full text, inner matches) without its scan
            found = extract(text[start:end], start)
            matches = [] if found is None else [found]
        else:  # pragma: no cover - private API gone: scan the candidate and its margins
            lo = max(0, start - self.MARGIN)
            matches = []
            for m in phonenumbers.PhoneNumberMatcher(
                text[lo : end + self.MARGIN], region, leniency=self._leniency
            ):
                m.start += lo
                m.end += lo
                if m.start < end and m.end > start:  # not a number cut by the margin
                    matches.append(m)
        out: list[RecognizerResult] = []
        for match in matches:
            where = phonenumbers.region_code_for_number(match.number) or region
            out.append(self._get_recognizer_result(match, text, where, None))  # type: ignore[no-untyped-call]
        return out

    def _parses_valid(self, candidate: str, region: str) -> bool:
        """The matcher's own verification of a whole candidate at this leniency (valid
        number, national prefix present where the region requires it, …), without its
        text scan and inner-match search."""
        try:
            number = phonenumbers.parse(candidate, region, keep_raw_input=True)
        except phonenumbers.NumberParseException:
            return False
        if _matcher_verify is not None:
            return bool(_matcher_verify(self._leniency, number, candidate, None))
        return bool(phonenumbers.is_valid_number(number))


class _ContextGatedRecognizer(LocalRecognizer):
    """A recognizer that scores its own matches from nearby context words.

    ``context`` is left empty so that presidio's enhancer does not boost a second time.
    """

    ENTITY: ClassVar[str]
    #: characters of text searched for context before the match and after it
    BEFORE: ClassVar[int] = 32
    AFTER: ClassVar[int] = 16

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.ENTITY], supported_language="en")

    def load(self) -> None:
        pass

    def _result(self, start: int, end: int, score: float, why: str) -> RecognizerResult:
        name = type(self).__name__
        return RecognizerResult(
            entity_type=self.ENTITY,
            start=start,
            end=end,
            score=score,
            analysis_explanation=AnalysisExplanation(
                recognizer=name, original_score=score, textual_explanation=why
            ),
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: name,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                "warden_reason": why,
            },
        )


class SwiftBicRecognizer(_ContextGatedRecognizer):
    """SWIFT/BIC codes (ISO 9362): 4 letters (institution), 2 letters (ISO 3166 country),
    2 alphanumerics (location), optional 3 alphanumerics (branch); upper case only.

    Many upper-case 8-letter words have that shape ("BUSINESS" → country NE), so the score
    comes from context: "SWIFT"/"BIC" nearby → 0.9; banking words (bank, wire, transfer,
    beneficiary, IBAN …) → 0.6; none → 0.3 if the location/branch part holds a digit, else
    0.1 — both below the default reporting threshold.
    """

    ENTITY = "SWIFT_BIC"
    _PATTERN = re.compile(r"\b[A-Z]{4}([A-Z]{2})[A-Z0-9]{2}(?:[A-Z0-9]{3})?\b")
    _STRONG = re.compile(r"\b(?:swift|bic)\b", re.IGNORECASE)
    _WEAK = re.compile(
        r"\b(?:banks?|banking|wire|transfer|beneficiary|correspondent|iban|remit\w*)\b",
        re.IGNORECASE,
    )

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for m in self._PATTERN.finditer(text):
            if m.group(1) not in ISO_3166_ALPHA2:
                continue
            window = text[max(0, m.start() - self.BEFORE) : m.end() + self.AFTER]
            if self._STRONG.search(window):
                score, why = 0.9, "swift/bic context"
            elif self._WEAK.search(window):
                score, why = 0.6, "banking context"
            elif any(c.isdigit() for c in m.group(0)[6:]):
                score, why = 0.3, "shape only (digit in location/branch)"
            else:
                score, why = 0.1, "shape only"
            results.append(self._result(m.start(), m.end(), score, why))
        return results


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of payment card numbers."""
    if not digits.isdigit():
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


#: (IIN prefix ranges, allowed lengths) of card brands; a prefix range is (low, high) over
#: numbers of the same digit count
_CARD_BRANDS: tuple[tuple[str, tuple[tuple[int, int], ...], frozenset[int]], ...] = (
    ("visa", ((4, 4),), frozenset({13, 16, 19})),
    ("mastercard", ((51, 55), (2221, 2720)), frozenset({16})),
    ("amex", ((34, 34), (37, 37)), frozenset({15})),
    ("discover", ((6011, 6011), (644, 649), (65, 65)), frozenset(range(16, 20))),
    ("jcb", ((3528, 3589),), frozenset(range(16, 20))),
    ("jcb-legacy", ((1800, 1800), (2131, 2131)), frozenset({15})),
    ("diners", ((300, 305), (36, 36), (38, 39)), frozenset(range(14, 20))),
    ("unionpay", ((62, 62),), frozenset(range(16, 20))),
    ("maestro", ((50, 50), (56, 58), (60, 69)), frozenset(range(12, 20))),
)


def card_brand(digits: str) -> str | None:
    """The brand whose IIN range and length fit ``digits``, if any (no Luhn check)."""
    for brand, ranges, lengths in _CARD_BRANDS:
        if len(digits) not in lengths:
            continue
        for low, high in ranges:
            width = len(str(low))
            if low <= int(digits[:width]) <= high:
                return brand
    return None


class CardBrandRecognizer(_ContextGatedRecognizer):
    """Card numbers presidio's ``CreditCardRecognizer`` pattern does not reach: 12–19 digit
    numbers (optionally grouped by spaces or dashes) such as Mastercard 2-series (2221–
    2720), 19-digit Visa, 12-digit Maestro, 15-digit JCB (2131/1800).

    Every hit passes Luhn. A known brand's IIN range and length → 0.8, or 0.95 with a card
    word nearby ("card", "cc", "visa", "PAN", …); a Luhn-valid number of no known brand
    needs that word (0.85) and is otherwise 0.2, below the reporting threshold. Scores stay
    below presidio's 1.0 so that where both match, presidio's recognizer names the finding.
    """

    ENTITY = "CREDIT_CARD"
    _PATTERN = re.compile(r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])")
    _CONTEXT = re.compile(
        r"\b(?:cards?|cc|visa|master\s?card|maestro|amex|american\s+express|discover|jcb|"
        r"diners|union\s?pay|pan|debit|credit)\b",
        re.IGNORECASE,
    )

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for m in self._PATTERN.finditer(text):
            digits = re.sub(r"[ -]", "", m.group())
            if not luhn_ok(digits):
                continue
            window = text[max(0, m.start() - self.BEFORE) : m.end() + self.AFTER]
            context = self._CONTEXT.search(window) is not None
            brand = card_brand(digits)
            if brand:
                score, why = (0.95, f"{brand} + card context") if context else (0.8, brand)
            else:
                score, why = (0.85, "luhn + card context") if context else (0.2, "luhn only")
            results.append(self._result(m.start(), m.end(), score, why))
        return results


def aba_checksum_ok(digits: str) -> bool:
    """ABA routing number check: 3·(d1+d4+d7) + 7·(d2+d5+d8) + (d3+d6+d9) ≡ 0 (mod 10)."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    d = [int(c) for c in digits]
    total = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])
    return total % 10 == 0


class BankAccountRecognizer(_ContextGatedRecognizer):
    """Bank account numbers. A bare digit run is never enough; one of:

    * an account keyword right before the number — "account", "acct", "acc", "a/c",
      optionally "no."/"number"/"#"/"is"/":" — then 6–17 digits (spaces or dashes allowed
      between digits): the digits are the finding (0.85);
    * a UK sort code and account number, ``12-34-56 12345678`` (the pair is the finding,
      0.85; a bare ``sort code 12-34-56`` is 0.6);
    * a US routing number after "routing"/"ABA"/"RTN" that passes the ABA checksum (0.85).
    """

    ENTITY = "BANK_ACCOUNT"
    _FILLER = r"(?:\s*(?:no\.?|nr\.?|num(?:ber)?\.?|#))?(?:\s+is)?\s*[:#=-]?\s*"
    _ACCOUNT = re.compile(
        r"(?<![\w/])(?:bank\s+)?(?:accounts?|accts?|acc|a/c)\.?"
        + _FILLER
        + r"(\d(?:[ -]?\d){5,16})\b",
        re.IGNORECASE,
    )
    _SORT_CODE_ACCOUNT = re.compile(
        r"\b(\d{2}[- ]\d{2}[- ]\d{2})(?:\s*[,/]?\s*(?:(?:account|acct|a/c)\.?" + _FILLER + r")?)"
        r"(\d{8})\b",
        re.IGNORECASE,
    )
    _SIX_DIGITS = re.compile(r"\d\d[- ]?\d\d[- ]?\d\d")
    _SORT_CODE = re.compile(r"\bsort\s*code" + _FILLER + r"(\d{2}[- ]?\d{2}[- ]?\d{2})\b", re.I)
    _ROUTING = re.compile(
        r"\b(?:routing|aba|rtn)(?:\s+transit)?" + _FILLER + r"(\d{9})\b", re.IGNORECASE
    )

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        # each pattern needs a keyword or a digit run; a substring test is much cheaper
        # than a case-insensitive scan, so patterns whose keyword is absent are skipped
        low = text.lower()
        if "acc" in low or "a/c" in low:
            for m in self._ACCOUNT.finditer(text):
                results.append(self._result(m.start(1), m.end(1), 0.85, "account keyword"))
        if self._SIX_DIGITS.search(text):
            for m in self._SORT_CODE_ACCOUNT.finditer(text):
                results.append(self._result(m.start(1), m.end(2), 0.85, "sort code + account"))
            if "sort" in low:
                for m in self._SORT_CODE.finditer(text):
                    results.append(self._result(m.start(1), m.end(1), 0.6, "sort code keyword"))
        if "routing" in low or "aba" in low or "rtn" in low:
            for m in self._ROUTING.finditer(text):
                if aba_checksum_ok(m.group(1)):
                    results.append(self._result(m.start(1), m.end(1), 0.85, "ABA routing"))
        return results


# --------------------------------------------------------------------------- prefilters

#: Necessary conditions, one per entity type: a text failing an entity's test cannot give
#: any of its recognizers a result, so the analyzer is asked only for the entity types
#: that pass (and not run at all when none does). Each test is a pattern that every match
#: of every pattern of that entity's recognizers contains as a substring — checked
#: recognizer by recognizer — or the recognizer's own first step:
#:
#: * CREDIT_CARD — presidio ``CreditCardRecognizer`` (``regex`` module; at least 4+3+3+3
#:   digits, an optional "-" or " " between groups) and :class:`CardBrandRecognizer`
#:   (``\d(?:[ -]?\d){11,18}``) both contain 12 digits each followed by at most one "-" or
#:   " ". The test runs in the ``regex`` module, whose ``\d`` (Unicode decimal digits, a
#:   stable set) is at least ``re``'s.
#: * IBAN_CODE — presidio ``IbanRecognizer``: ``[A-Z]{2}[0-9]{2}(?:[ -]?[A-Z0-9]{4}){2,6}…``;
#:   :class:`_AnyCaseIbanRecognizer` runs it on an ASCII-upper-cased copy too, so the test
#:   takes either case.
#: * US_SSN — presidio ``UsSsnRecognizer``'s five patterns (ddddd-dddd, ddd-dddddd,
#:   ddd-dd-dddd, 9 digits, ddd[- .]dd[- .]dddd) all contain ddd[- .]?dd[- .]?dddd.
#: * EMAIL_ADDRESS — :class:`_OfflineEmailRecognizer` looks only around an "@".
#: * PHONE_NUMBER — :meth:`_PrefilteredPhoneRecognizer.candidates`, its own first step.
#: * SWIFT_BIC — :class:`SwiftBicRecognizer`'s pattern with an ISO country, its own test.
#:   These two are tested only when no other type passed (they cost as much as running
#:   the recognizers, so they are worth it only to skip the analyzer altogether).
#: * BANK_ACCOUNT — :class:`BankAccountRecognizer`'s four patterns all need 6 digits each
#:   followed by at most one "-" or " " (account: ``\d(?:[ -]?\d){5,16}``; sort code
#:   dd-dd-dd; routing 9 digits).
_CARD_HINT = regex.compile(r"\d(?:[- ]?\d){11}")
#: anchored on the check digits (digits are rarer than letters: a much faster scan)
_IBAN_HINT = re.compile(r"(?<=[A-Za-z]{2})[0-9]{2}(?:[ -]?[A-Za-z0-9]{4}){2}")
_SSN_HINT = re.compile(r"[0-9]{3}[- .]?[0-9]{2}[- .]?[0-9]{4}")
_BANK_HINT = re.compile(r"\d(?:[ -]?\d){5}")


def _possible_entities(text: str, phone: _PrefilteredPhoneRecognizer) -> set[str]:
    """The entity types some recognizer could report in ``text`` (see above)."""
    out: set[str] = set()
    if _CARD_HINT.search(text):
        out.add("CREDIT_CARD")
    if _IBAN_HINT.search(text):
        out.add("IBAN_CODE")
    if _SSN_HINT.search(text):
        out.add("US_SSN")
    if "@" in text:
        out.add("EMAIL_ADDRESS")
    if _BANK_HINT.search(text):
        out.add("BANK_ACCOUNT")
    if out:
        # the analyzer runs anyway: the phone and SWIFT recognizers' own first steps (which
        # are their tests here) decide, rather than scanning the text twice
        return out | {"PHONE_NUMBER", "SWIFT_BIC"}
    if next(phone.candidates(text), None) is not None:
        out.add("PHONE_NUMBER")
    if any(m.group(1) in ISO_3166_ALPHA2 for m in SwiftBicRecognizer._PATTERN.finditer(text)):
        out.add("SWIFT_BIC")
    return out


# --------------------------------------------------------------------------- the redactor


def _build_analyzer(phone: _PrefilteredPhoneRecognizer) -> AnalyzerEngine:
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
        CreditCardRecognizer(),
        CardBrandRecognizer(),
        _AnyCaseIbanRecognizer(),
        UsSsnRecognizer(),
        _OfflineEmailRecognizer(),
        phone,
        SwiftBicRecognizer(),
        BankAccountRecognizer(),
    ):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]),
        supported_languages=["en"],
        # 6 words back and 1 forward: "card number: 4111 …", "4111 … (Visa)"
        context_aware_enhancer=WindowContextEnhancer(),
    )


_WARM_UP = (
    "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, SSN 123-45-6780, "
    "jane@example.com, call +44 20 7946 0958, SWIFT DEUTDEFF, account 12345678, "
    "sort code 12-34-56 12345678, routing 021000021."
)


class PiiRedactor:
    """Finds and replaces PII in model output. Thread-safe once constructed."""

    _default: ClassVar[PiiRedactor | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
        prefilter: bool = True,
    ) -> None:
        self.score_threshold = score_threshold
        self.phone_regions: tuple[str, ...] = tuple(phone_regions)
        #: ask the analyzer only for entity types that can be in the text (same findings;
        #: off only to check exactly that)
        self.prefilter = prefilter
        self._phone = _PrefilteredPhoneRecognizer(supported_regions=self.phone_regions)
        self._analyzer = _build_analyzer(self._phone)
        self.find(_WARM_UP)  # compile every pattern now, not under the first request

    @classmethod
    def default(cls) -> PiiRedactor:
        """The process-wide redactor with default settings (built on first use)."""
        if cls._default is None:
            with cls._default_lock:
                if cls._default is None:
                    cls._default = cls()
        return cls._default

    # ---------------------------------------------------------------- find

    def find(self, text: str, *, entities: Iterable[str] | None = None) -> list[PiiFinding]:
        """Non-overlapping findings, ordered by start.

        Overlaps are resolved deterministically: overlapping candidates form a cluster; the
        cluster is reported once, with the type, score and recognizer of its best member
        (highest score, then longest span, then :data:`ENTITIES` order, then earliest
        start, then recognizer name) and the span covering the whole cluster — so no
        character of any candidate survives redaction.
        """
        if not text:
            return []
        wanted = list(ENTITIES) if entities is None else [e for e in ENTITIES if e in entities]
        if entities is not None:
            unknown = set(entities) - set(ENTITIES)
            if unknown:
                raise ValueError(f"unknown entity types: {sorted(unknown)}")
        if self.prefilter:
            possible = _possible_entities(text, self._phone)
            wanted = [e for e in wanted if e in possible]
        if not wanted:
            return []
        raw = self._analyzer.analyze(
            text=text, language="en", entities=wanted, score_threshold=self.score_threshold
        )
        candidates = [
            PiiFinding(
                entity_type=r.entity_type,
                start=r.start,
                end=r.end,
                score=round(float(r.score), 4),
                recognizer=str(
                    (r.recognition_metadata or {}).get(
                        RecognizerResult.RECOGNIZER_NAME_KEY, "unknown"
                    )
                ),
            )
            for r in raw
            if r.entity_type in _PRIORITY and r.end > r.start
        ]
        return _resolve(candidates)

    # ---------------------------------------------------------------- redact

    def redact(
        self,
        text: str,
        *,
        entities: set[str] | None = None,
        style: Literal["mask", "type"] = "type",
    ) -> RedactionResult:
        """Replace findings with ``<ENTITY_TYPE>`` (``style="type"``) or with ``*`` of the
        same length (``style="mask"``)."""
        if style not in ("mask", "type"):
            raise ValueError(f"unknown redaction style {style!r}")
        findings = self.find(text, entities=entities)
        if not findings:
            return RedactionResult(text=text, findings=(), counts={})
        parts: list[str] = []
        pos = 0
        for f in findings:
            parts.append(text[pos : f.start])
            parts.append(f"<{f.entity_type}>" if style == "type" else "*" * (f.end - f.start))
            pos = f.end
        parts.append(text[pos:])
        counts = dict(sorted(Counter(f.entity_type for f in findings).items()))
        return RedactionResult(text="".join(parts), findings=tuple(findings), counts=counts)

    # ---------------------------------------------------------------- signals

    def signals(self, findings: Iterable[PiiFinding]) -> list[Signal]:
        """One ``output.pii`` signal per finding; the detail never holds the value."""
        return [
            Signal(
                detector="output.pii",
                name=f.entity_type,
                score=max(0.0, min(1.0, f.score)),
                surface="output",
                detail=f"{f.entity_type} ({f.end - f.start} chars) by {f.recognizer}",
                start=f.start,
                end=f.end,
            )
            for f in findings
        ]


def _rank(f: PiiFinding) -> tuple[float, int, int, int, str]:
    return (-f.score, -(f.end - f.start), _PRIORITY[f.entity_type], f.start, f.recognizer)


def _resolve(candidates: list[PiiFinding]) -> list[PiiFinding]:
    if not candidates:
        return []
    ordered = sorted(candidates, key=lambda f: (f.start, f.end, _rank(f)))
    clusters: list[list[PiiFinding]] = [[ordered[0]]]
    cluster_end = ordered[0].end
    for f in ordered[1:]:
        if f.start < cluster_end:
            clusters[-1].append(f)
            cluster_end = max(cluster_end, f.end)
        else:
            clusters.append([f])
            cluster_end = f.end
    resolved: list[PiiFinding] = []
    for members in clusters:
        best = min(members, key=_rank)
        resolved.append(
            PiiFinding(
                entity_type=best.entity_type,
                start=min(m.start for m in members),
                end=max(m.end for m in members),
                score=best.score,
                recognizer=best.recognizer,
            )
        )
    return resolved
