"""The policy's review settings: bad values fail at load naming file:line and key path."""

from __future__ import annotations

import pytest

from tests.policy.test_loader import error_of, line_number

FOUR_EYES = "review: {four_eyes_field: amount, four_eyes_above: 10000,"


def test_four_eyes_field_must_be_a_numeric_input() -> None:
    message = error_of(FOUR_EYES, "review: {four_eyes_field: currency, four_eyes_above: 10000,")
    # a check across keys: named at the decision type's line, the key path in the message
    assert f"p.yaml:{line_number('  payment_fraud:')}: decision_types.payment_fraud:" in message
    assert "review.four_eyes_field: 'currency' is not a number or integer input" in message


def test_four_eyes_field_and_limit_go_together() -> None:
    message = error_of(FOUR_EYES, "review: {four_eyes_field: amount,")
    assert "decision_types.payment_fraud.review" in message
    assert "four_eyes_field and four_eyes_above go together" in message


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("claim_minutes: 30 ", "claim_minutes: 0 ", "review.claim_minutes"),
        ("raw_pii_roles: [admin]", "raw_pii_roles: [service]", "review.raw_pii_roles[0]"),
        ("min_rationale_chars: 10", "min_rationale_chars: lots", "review.min_rationale_chars"),
    ],
)
def test_review_settings_are_checked(old: str, new: str, path: str) -> None:
    message = error_of(old, new)
    assert f"p.yaml:{line_number(old)}: {path}" in message, message
