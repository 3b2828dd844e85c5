"""Mask personal data in a decision record for people whose role may not see it raw.

Uses the gateway's Presidio redactor (`warden.guard.pii`): every string in the record is
checked, except structural values (ids, hashes, versions, codes, timestamps) that the log
itself needs and that are never personal data. Which roles see raw values is policy:
`review.raw_pii_roles`."""

from __future__ import annotations

from typing import Any

from warden.auth import Principal
from warden.guard.pii import PiiRedactor
from warden.policy.loader import LoadedPolicy

#: keys whose string values are structure, not content
STRUCTURAL_KEYS = frozenset(
    {
        "decision_id",
        "decision_type",
        "jurisdiction",
        "request_hash",
        "idempotency_key",
        "leaf_hash",
        "version",
        "thresholds_version",
        "policy_version",
        "sha256",
        "artifact_sha256",
        "received_at",
        "decided_at",
        "reviewed_at",
        "code",
        "gate",
        "disposition",
        "band",
        "band_by_score",
        "outcome",
        "surface",
        "detector",
        "id",
        "rule",
        "role",
        "currency",
        "content_type",
    }
)
#: strings shorter than this cannot hold any entity the redactor knows
MIN_LENGTH = 6


def may_see_raw_pii(caller: Principal, policy: LoadedPolicy) -> bool:
    return caller.role.value in policy.policy.review.raw_pii_roles


def mask(value: Any, redactor: PiiRedactor, key: str | None = None) -> tuple[Any, int]:
    """A copy of `value` with PII in its strings replaced by `<ENTITY_TYPE>`, and the
    number of replacements."""
    if isinstance(value, str):
        if key in STRUCTURAL_KEYS or len(value) < MIN_LENGTH:
            return value, 0
        result = redactor.redact(value)
        return result.text, len(result.findings)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        total = 0
        for k, v in value.items():
            out[k], n = mask(v, redactor, str(k))
            total += n
        return out, total
    if isinstance(value, list):
        items = []
        total = 0
        for v in value:
            masked, n = mask(v, redactor, key)
            items.append(masked)
            total += n
        return items, total
    return value, 0


def record_for(
    record: dict[str, Any], caller: Principal, policy: LoadedPolicy
) -> tuple[dict[str, Any], int | None]:
    """The record as this caller may see it, and how many values were masked (None when
    the caller sees raw values)."""
    if may_see_raw_pii(caller, policy):
        return record, None
    masked, count = mask(record, PiiRedactor.default())
    return masked, count
