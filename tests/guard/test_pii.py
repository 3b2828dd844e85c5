from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from warden.guard.pii import (
    _WARM_UP,
    ENTITIES,
    ISO_3166_ALPHA2,
    PiiFinding,
    PiiRedactor,
    aba_checksum_ok,
    card_brand,
    luhn_ok,
)

ROOT = Path(__file__).resolve().parents[2]
EVAL_JSON = ROOT / "src" / "warden" / "guard" / "models" / "pii-eval.json"


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    return PiiRedactor.default()


def found(redactor: PiiRedactor, text: str) -> list[tuple[str, str]]:
    return [(f.entity_type, text[f.start : f.end]) for f in redactor.find(text)]


def with_luhn_digit(prefix: str) -> str:
    """``prefix`` + the check digit that makes it Luhn-valid."""
    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


# --------------------------------------------------------------------------- each entity


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("Your card 4111 1111 1111 1111 was charged.", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("Card number 5500-0000-0000-0004 is blocked.", "CREDIT_CARD", "5500-0000-0000-0004"),
        ("Refund to 378282246310005 (Amex).", "CREDIT_CARD", "378282246310005"),
        (
            "Transfer to DE89 3704 0044 0532 0130 00 today.",
            "IBAN_CODE",
            "DE89 3704 0044 0532 0130 00",
        ),
        ("IBAN GB82WEST12345698765432.", "IBAN_CODE", "GB82WEST12345698765432"),
        ("my iban is gb82west12345698765432", "IBAN_CODE", "gb82west12345698765432"),
        ("The SSN on file is 536-22-1914.", "US_SSN", "536-22-1914"),
        ("SSN: 536221914", "US_SSN", "536221914"),
        ("Write to jane.doe@example.co.uk for details.", "EMAIL_ADDRESS", "jane.doe@example.co.uk"),
        ("Call us on +44 20 7946 0958 any day.", "PHONE_NUMBER", "+44 20 7946 0958"),
        ("Phone: (212) 555-0143.", "PHONE_NUMBER", "(212) 555-0143"),
        ("SWIFT code DEUTDEFF500 for the wire.", "SWIFT_BIC", "DEUTDEFF500"),
        ("BIC: NWBKGB2L", "SWIFT_BIC", "NWBKGB2L"),
        ("Beneficiary bank BNPAFRPP, Paris.", "SWIFT_BIC", "BNPAFRPP"),
        ("Paid from account number 12345678 on Monday.", "BANK_ACCOUNT", "12345678"),
        ("Use a/c no. 0012 3456 78 for refunds.", "BANK_ACCOUNT", "0012 3456 78"),
        ("acct #987654321012", "BANK_ACCOUNT", "987654321012"),
        ("Sort code 12-34-56 12345678, Barclays.", "BANK_ACCOUNT", "12-34-56 12345678"),
        ("routing number 021000021 at Chase", "BANK_ACCOUNT", "021000021"),
    ],
)
def test_each_entity_found_and_redacted(
    redactor: PiiRedactor, text: str, entity: str, value: str
) -> None:
    assert (entity, value) in found(redactor, text)
    result = redactor.redact(text)
    assert value not in result.text
    assert f"<{entity}>" in result.text
    assert result.counts.get(entity) == 1


def test_card_brands_beyond_presidio_pattern(redactor: PiiRedactor) -> None:
    mc2 = with_luhn_digit("222300312200322")  # Mastercard 2-series
    visa19 = with_luhn_digit("413103428245880993")
    assert card_brand(mc2) == "mastercard"
    assert card_brand(visa19) == "visa"
    for number in (mc2, visa19):
        assert ("CREDIT_CARD", number) in found(redactor, f"the number {number} is on file")


PHONE_TEXTS = [
    "Call (212) 555-0143 or 020 7946 0958 today.",
    "Desk: +44 20 7946 0958, mobile +1-604-555-0187x123.",
    "Fax 01.84.17.61.18 (Paris), office 0049 30 901820.",
    "On 2018-01-14 03:07:43 the call from 0161 496 0000 dropped.",
    "Order 482910375, SSN 536-22-1914, amount 1,840.50, date 12.03.2024.",
    "Ring 0800 123 4567 or (0)20 7946 0000, ext. 12.",
]


@pytest.mark.parametrize("text", PHONE_TEXTS)
def test_phone_prefilter_agrees_with_stock_presidio(redactor: PiiRedactor, text: str) -> None:
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    from warden.guard.pii import DEFAULT_PHONE_REGIONS

    stock = PhoneRecognizer(supported_regions=DEFAULT_PHONE_REGIONS)
    ours = next(
        r for r in redactor._analyzer.registry.recognizers if isinstance(r, PhoneRecognizer)
    )
    spans = {(r.start, r.end) for r in ours.analyze(text, ["PHONE_NUMBER"])}
    assert spans == {(r.start, r.end) for r in stock.analyze(text, ["PHONE_NUMBER"])}


# --------------------------------------------------------------------------- no false hits


@pytest.mark.parametrize(
    "text",
    [
        "Your claim CLM-956728 for 3903.19 EUR was approved on 2026-05-17.",
        "The payment reference is RF75 4692 1292.",
        "Policy P-330849 covers travel claims up to 3,000 EUR per year.",
        "Ticket #4829103 and case INC/7730215 are closed.",
    ],
)
def test_identifiers_and_amounts_are_not_phone_numbers(redactor: PiiRedactor, text: str) -> None:
    """Stock presidio reads these as phone numbers; a claims answer is full of them."""
    assert not [f for f in redactor.redact(text).findings if f.entity_type == "PHONE_NUMBER"]


def test_phone_numbers_next_to_identifiers_are_still_found(redactor: PiiRedactor) -> None:
    text = "Claim CLM-956728: call 020 7946 0958 or +44 20 7946 0958."
    spans = [text[f.start : f.end] for f in redactor.redact(text).findings]
    assert spans == ["020 7946 0958", "+44 20 7946 0958"]


def test_luhn_invalid_card_not_flagged(redactor: PiiRedactor) -> None:
    assert not luhn_ok("4111111111111112")
    assert found(redactor, "Reference 4111 1111 1111 1112 noted.") == []
    assert found(redactor, "Reference 4111111111111112 noted.") == []


def test_iban_with_bad_checksum_not_flagged(redactor: PiiRedactor) -> None:
    text = "Transfer to DE89 3704 0044 0532 0130 01 today."
    assert all(e != "IBAN_CODE" for e, _ in found(redactor, text))
    assert found(redactor, "IBAN GB83WEST12345698765432") == []


@pytest.mark.parametrize(
    "text",
    [
        "Order 482910375 shipped today.",
        "Your reference is 482910375.",
        "Claim 739201846 was settled for 1,200 EUR.",
    ],
)
def test_random_nine_digits_without_ssn_shape_or_context_not_flagged(
    redactor: PiiRedactor, text: str
) -> None:
    assert found(redactor, text) == []


def test_ssn_placeholders_not_flagged(redactor: PiiRedactor) -> None:
    # area 000/666 and all-zero groups are never issued
    assert found(redactor, "SSN 000-12-3456 and SSN 666-12-3456 and SSN 536-00-1914") == []


# --------------------------------------------------------------------------- BIC / account context


def test_bic_needs_context(redactor: PiiRedactor) -> None:
    assert found(redactor, "The code DEUTDEFF appears in the file.") == []
    assert found(redactor, "Ticket NWBKGB2L closed.") == []
    assert found(redactor, "THIS IS BUSINESS AS USUAL") == []
    assert ("SWIFT_BIC", "DEUTDEFF") in found(redactor, "Send it with SWIFT DEUTDEFF please.")


def test_bic_country_must_be_iso_3166(redactor: PiiRedactor) -> None:
    assert "XX" not in ISO_3166_ALPHA2 and "DE" in ISO_3166_ALPHA2
    assert len(ISO_3166_ALPHA2) == 250  # 249 codes + XK
    assert found(redactor, "SWIFT code ABCDXX12") == []


def test_bic_is_upper_case_only(redactor: PiiRedactor) -> None:
    assert found(redactor, "swift code deutdeff") == []


def test_account_numbers_need_context(redactor: PiiRedactor) -> None:
    assert found(redactor, "reference 12345678 for the claim") == []
    assert found(redactor, "12-34-56 is the date code") == []
    assert ("BANK_ACCOUNT", "12345678") in found(redactor, "bank account 12345678")
    assert ("BANK_ACCOUNT", "87654321") in found(redactor, "A/C 87654321")


def test_routing_number_needs_valid_aba_checksum(redactor: PiiRedactor) -> None:
    assert aba_checksum_ok("021000021")
    assert not aba_checksum_ok("021000022")
    assert all(e != "BANK_ACCOUNT" for e, _ in found(redactor, "routing 021000022"))


# --------------------------------------------------------------------------- redaction


ALL_PII = {
    "4111 1111 1111 1111": "CREDIT_CARD",
    "DE89 3704 0044 0532 0130 00": "IBAN_CODE",
    "536-22-1914": "US_SSN",
    "jane.doe@example.com": "EMAIL_ADDRESS",
    "+44 20 7946 0958": "PHONE_NUMBER",
    "DEUTDEFF500": "SWIFT_BIC",
    "12345678": "BANK_ACCOUNT",
}
ANSWER = (
    "We refunded card 4111 1111 1111 1111 and sent the balance to IBAN "
    "DE89 3704 0044 0532 0130 00 (SWIFT DEUTDEFF500). The customer's SSN 536-22-1914 "
    "matches. Contact jane.doe@example.com or +44 20 7946 0958. Old bank account "
    "12345678 was closed."
)


@pytest.mark.parametrize("style", ["type", "mask"])
def test_redacted_output_contains_no_original_value(redactor: PiiRedactor, style: str) -> None:
    result = redactor.redact(ANSWER, style=style)  # type: ignore[arg-type]
    for value in ALL_PII:
        assert value not in result.text
        assert value.replace(" ", "") not in result.text.replace(" ", "")
    assert result.counts == {e: 1 for e in sorted(ALL_PII.values())}
    assert {f.entity_type for f in result.findings} == set(ALL_PII.values())
    if style == "mask":
        assert len(result.text) == len(ANSWER)
        for f in result.findings:
            assert result.text[f.start : f.end] == "*" * (f.end - f.start)
    else:
        for entity in ALL_PII.values():
            assert f"<{entity}>" in result.text


def test_redact_only_selected_entities(redactor: PiiRedactor) -> None:
    result = redactor.redact(ANSWER, entities={"CREDIT_CARD", "EMAIL_ADDRESS"})
    assert result.counts == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1}
    assert "4111 1111 1111 1111" not in result.text
    assert "536-22-1914" in result.text


def test_unknown_entity_rejected(redactor: PiiRedactor) -> None:
    with pytest.raises(ValueError, match="unknown entity"):
        redactor.redact(ANSWER, entities={"PERSON"})


def test_nothing_to_redact(redactor: PiiRedactor) -> None:
    text = "The claim was approved after review of the receipts."
    result = redactor.redact(text)
    assert result.text == text
    assert result.findings == () and result.counts == {} and not result.redacted
    assert redactor.redact("").text == ""


def test_overlaps_resolved_deterministically(redactor: PiiRedactor) -> None:
    # the card number is also an "account" number by context: one finding, the card wins
    # (higher score), and the whole cluster is replaced
    text = "charged to account 4111 1111 1111 1111 yesterday"
    first = redactor.find(text)
    assert [(f.entity_type, text[f.start : f.end]) for f in first] == [
        ("CREDIT_CARD", "4111 1111 1111 1111")
    ]
    for _ in range(5):
        assert redactor.find(text) == first
    assert redactor.redact(text).text == "charged to account <CREDIT_CARD> yesterday"


def test_findings_ordered_and_disjoint(redactor: PiiRedactor) -> None:
    findings = redactor.find(ANSWER)
    assert findings == sorted(findings, key=lambda f: f.start)
    for a, b in itertools.pairwise(findings):
        assert a.end <= b.start
    assert all(0.0 < f.score <= 1.0 and f.recognizer for f in findings)


def test_signals(redactor: PiiRedactor) -> None:
    result = redactor.redact(ANSWER)
    signals = redactor.signals(result.findings)
    assert len(signals) == len(result.findings)
    for s, f in zip(signals, result.findings, strict=True):
        assert s.detector == "output.pii" and s.surface == "output"
        assert s.name == f.entity_type and (s.start, s.end) == (f.start, f.end)
        assert 0.0 <= s.score <= 1.0
        assert ANSWER[f.start : f.end] not in s.detail
    assert redactor.signals([]) == []
    manual = PiiFinding("CREDIT_CARD", 0, 4, 1.0, "test")
    assert redactor.signals([manual])[0].as_record()["name"] == "CREDIT_CARD"


def test_default_is_cached() -> None:
    assert PiiRedactor.default() is PiiRedactor.default()
    assert set(ENTITIES) == set(ALL_PII.values())


def test_concurrent_use(redactor: PiiRedactor) -> None:
    expected = redactor.redact(ANSWER).text
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert redactor.redact(ANSWER).text == expected
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --------------------------------------------------------------------------- offline


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import socket, sys

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:2])  # recorded even if a library swallows the error
        raise RuntimeError("network access attempted")

    # no network: any connection or name lookup fails loudly
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    import spacy, spacy.cli

    def no_download(*args, **kwargs):
        raise RuntimeError("spacy model download attempted")

    def no_load(*args, **kwargs):
        raise RuntimeError("spacy model load attempted")

    # whether en_core_web_lg happens to be installed is irrelevant: it is never loaded
    spacy.cli.download = no_download
    spacy.load = no_load

    from warden.guard.pii import PiiRedactor

    r = PiiRedactor.default()
    out = r.redact("card 4111 1111 1111 1111, mail a.b@example.org, IBAN DE89370400440532013000")
    assert out.counts == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1, "IBAN_CODE": 1}, out
    assert attempts == [], attempts
    print("OFFLINE-OK")
    """
)


def test_constructs_and_runs_offline_without_spacy_models(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # a fresh, empty home: nothing cached there can be relied on
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OFFLINE-OK" in proc.stdout
    assert not (tmp_path / "cache" / "python-tldextract").exists()


# --------------------------------------------------------------------------- shipped evaluation


def test_shipped_pii_eval_has_per_type_figures() -> None:
    assert EVAL_JSON.exists(), "run: python -m warden.guard.evaluate_pii"
    report = json.loads(EVAL_JSON.read_text())
    assert report["dataset"]["records"] > 0
    per_type = report["per_type"]
    assert set(per_type) == {"CREDIT_CARD", "IBAN_CODE", "US_SSN", "EMAIL_ADDRESS", "PHONE_NUMBER"}
    for figures in per_type.values():
        assert figures["gold"] > 0
        assert figures["tp"] + figures["fn"] == figures["gold"]
        assert figures["tp"] + figures["fp"] == figures["predicted"]
        for key in ("precision", "recall", "f1"):
            assert figures[key] is None or 0.0 <= figures[key] <= 1.0
    assert set(report["unlabelled_types"]) == {"SWIFT_BIC", "BANK_ACCOUNT"}
    assert "PERSON" in report["not_detected_labels"]


def test_prefilter_changes_no_finding(redactor: PiiRedactor) -> None:
    """Asking the analyzer only for the entity types that can be in a text gives the same
    findings as asking for all of them: on the whole evaluation dataset, on texts dense in
    digits, separators, letters and '@', and on the warm-up text with one of each type."""
    unfiltered = PiiRedactor(prefilter=False)
    data = ROOT / "data" / "pii" / "presidio_synth_dataset_v2.json"
    texts = [rec["full_text"] for rec in json.loads(data.read_text())]
    rng = random.Random(7)
    alphabet = "0123456789" * 4 + " -.()+@/#:xX" + "DEGBFRabcdeswift ibanacct ssn card"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(8, 80))) for _ in range(3000)]
    texts.append(_WARM_UP)
    differ = [t for t in texts if redactor.find(t) != unfiltered.find(t)]
    assert differ == []
    assert sum(bool(unfiltered.find(t)) for t in texts) > 200  # the texts do hold PII
