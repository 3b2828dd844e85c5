from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_POLICY
from warden.errors import PolicyError, RequestError
from warden.policy.loader import load_policy_bytes, load_policy_file

EXAMPLE = EXAMPLE_POLICY.read_text()


def load_with(old: str, new: str) -> None:
    assert old in EXAMPLE, old
    load_policy_bytes(EXAMPLE.replace(old, new, 1).encode(), source="p.yaml")


def error_of(old: str, new: str) -> str:
    with pytest.raises(PolicyError) as caught:
        load_with(old, new)
    return caught.value.message


def line_number(fragment: str) -> int:
    return next(i for i, line in enumerate(EXAMPLE.splitlines(), 1) if fragment in line)


def test_example_policy_loads_and_its_version_is_the_file_hash() -> None:
    loaded = load_policy_file(EXAMPLE_POLICY)
    assert loaded.version == "sha256:" + hashlib.sha256(EXAMPLE_POLICY.read_bytes()).hexdigest()
    assert set(loaded.decision_types) == {
        "payment_fraud",
        "claims_intake",
        "claims_triage",
        "assistant_chat",
    }
    assert set(loaded.policy.residency) == {"EU", "UK", "US"}


def test_bundled_default_policy_is_the_example() -> None:
    from warden.gateway import DEFAULT_POLICY

    assert DEFAULT_POLICY.read_bytes() == EXAMPLE_POLICY.read_bytes()


def test_typo_in_a_key_names_the_path_line_and_suggestion() -> None:
    message = error_of("decline_at_or_above: 0.80", "decline_at_or_abov: 0.80")
    line = line_number("decline_at_or_above: 0.80")
    assert f"p.yaml:{line}: decision_types.payment_fraud.bands.decline_at_or_abov" in message
    assert "unknown key" in message and "did you mean 'decline_at_or_above'" in message


def test_wrong_type_names_the_path_and_what_was_expected() -> None:
    message = error_of("approve_at_or_below: 0.30", "approve_at_or_below: lots")
    assert "decision_types.payment_fraud.bands.approve_at_or_below" in message
    assert "valid number" in message and "'lots'" in message
    assert f"p.yaml:{line_number('approve_at_or_below: 0.30')}:" in message


def test_missing_required_key_is_named() -> None:
    message = error_of("      approve_at_or_below: 0.30\n", "")
    assert (
        "decision_types.payment_fraud.bands.approve_at_or_below: required key is missing" in message
    )


def test_inverted_bands_are_refused() -> None:
    message = error_of("approve_at_or_below: 0.30", "approve_at_or_below: 0.95")
    assert "approve_at_or_below must be lower than decline_at_or_above" in message


def test_rule_with_bad_cel_syntax_is_refused_with_its_path() -> None:
    message = error_of(
        'when: inputs.merchant_country in ["KP", "IR", "SY", "CU"]',
        'when: inputs.merchant_country in ["KP", "IR"',
    )
    assert "decision_types.payment_fraud.rules[0].when: not a valid CEL expression" in message


def test_rule_referring_to_an_undeclared_input_is_refused() -> None:
    message = error_of("inputs.amount >= 50000.0", "inputs.amout >= 50000.0")
    assert "rules[12].when: refers to 'amout', which is not declared in inputs" in message


def test_rule_that_is_not_boolean_is_refused() -> None:
    message = error_of("inputs.amount >= 50000.0", "inputs.amount + 1.0")
    assert "must be a boolean expression" in message


def test_rules_cannot_use_unknown_variables() -> None:
    message = error_of("inputs.amount >= 50000.0", "os.system == 1")
    assert "unknown variable(s) os" in message


def test_bad_action_lists_the_allowed_values() -> None:
    message = error_of("        action: decline\n", "        action: block\n")
    assert "rules[0].action" in message and "'none', 'review' or 'decline'" in message


def test_invalid_yaml_reports_the_line() -> None:
    with pytest.raises(PolicyError, match=r"p.yaml:\d+: invalid YAML"):
        load_policy_bytes(b"name: x\ndecision_types: [\n", source="p.yaml")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy_file(tmp_path / "nope.yaml")


def test_duplicate_rule_ids_are_refused() -> None:
    message = error_of("id: very_large_amount", "id: young_account_large")
    assert "rule id 'young_account_large' appears twice" in message


def test_inputs_schema_names_the_field() -> None:
    compiled = load_policy_file(EXAMPLE_POLICY).decision_types["payment_fraud"]
    from tests.conftest import CLEAN_INPUTS

    with pytest.raises(RequestError) as caught:
        compiled.validate_inputs({**CLEAN_INPUTS, "amount": "12"})
    assert caught.value.field == "inputs.amount"
    with pytest.raises(RequestError, match="inputs.colour: unknown input"):
        compiled.validate_inputs({**CLEAN_INPUTS, "colour": "red"})
    with pytest.raises(RequestError, match="inputs.channel"):
        compiled.validate_inputs({**CLEAN_INPUTS, "channel": "telepathy"})
    missing = dict(CLEAN_INPUTS)
    del missing["currency"]
    with pytest.raises(RequestError, match="inputs.currency: required input is missing"):
        compiled.validate_inputs(missing)


def test_tool_schema_and_limits_are_checked_at_load() -> None:
    message = error_of("exclusiveMinimum: 0}", "exclusiveMinimum: zero}")
    assert "tools.issue_refund.schema: not a valid JSON Schema" in message
    message = error_of("args.amount <= 5000.0", "args.amont <= 5000.0")
    assert "tools.issue_refund.limits[1].when: refers to 'amont'" in message


def test_text_surface_only_for_strings() -> None:
    message = error_of(
        "claim_amount:   {type: number, gt: 0, le: 250000}",
        "claim_amount:   {type: number, gt: 0, surface: text}",
    )
    assert "only string inputs can be on the text surface" in message
