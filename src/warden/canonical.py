"""Canonical JSON (RFC 8785, JCS) and content hashes.

Every audit entry is stored as its JCS bytes, so the same record always hashes the same
way on any machine, in any language."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785


def canonical_json(value: Any) -> bytes:
    return rfc8785.dumps(value)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_id(data: bytes) -> str:
    """Content address used for policies and other versioned artefacts: `sha256:<hex>`."""
    return "sha256:" + sha256_hex(data)


def request_hash(value: Any) -> str:
    """Hash of a request body's meaning (canonical form), for idempotency comparison."""
    return content_id(canonical_json(value))


def loads(data: bytes | str) -> Any:
    return json.loads(data)
