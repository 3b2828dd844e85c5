"""API keys and roles.

Keys are stored only as SHA-256 hashes in `keys.yaml` in the data directory; the plain key
is shown once, when it is created. Roles map to permissions in one table, so every door
(HTTP, CLI, Python) checks the same thing.

The `redteam` role is for `warden redteam --url` against a live gateway: it may decide and
read its own decisions, and every decision it asks for is an *exercise* — run through
every gate and recorded like any other, but marked as such in its record, never queued for
a person, and kept out of the band monitor, the guard statistics and the output-length
baseline (see `warden.audit.record.is_exercise`)."""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from warden.errors import AuthError, ForbiddenError, WardenError


class Role(enum.StrEnum):
    SERVICE = "service"
    REVIEWER = "reviewer"
    AUDITOR = "auditor"
    ADMIN = "admin"
    REDTEAM = "redteam"


class Permission(enum.StrEnum):
    DECIDE = "decide"
    READ_DECISION = "read_decision"
    READ_ANY_DECISION = "read_any_decision"
    READ_QUEUE = "read_queue"
    REVIEW = "review"
    READ_AUDIT = "read_audit"
    ADMIN = "admin"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.SERVICE: frozenset({Permission.DECIDE, Permission.READ_DECISION, Permission.READ_AUDIT}),
    Role.REVIEWER: frozenset(
        {
            Permission.READ_DECISION,
            Permission.READ_ANY_DECISION,
            Permission.READ_QUEUE,
            Permission.REVIEW,
            Permission.READ_AUDIT,
        }
    ),
    Role.AUDITOR: frozenset(
        {
            Permission.READ_DECISION,
            Permission.READ_ANY_DECISION,
            Permission.READ_QUEUE,
            Permission.READ_AUDIT,
        }
    ),
    Role.ADMIN: frozenset(Permission),
    Role.REDTEAM: frozenset({Permission.DECIDE, Permission.READ_DECISION}),
}


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise ForbiddenError(
                f"role {self.role.value!r} ({self.name}) may not "
                f"{permission.value.replace('_', ' ')}"
            )

    @property
    def exercise(self) -> bool:
        """Its decisions are red-team exercises (see the module docstring)."""
        return self.role is Role.REDTEAM

    def describe(self) -> dict[str, object]:
        """What `GET /v1/whoami` answers: the key's name, role and permissions."""
        return {
            "name": self.name,
            "role": self.role.value,
            "permissions": sorted(p.value for p in ROLE_PERMISSIONS[self.role]),
            "exercise": self.exercise,
        }

    def as_record(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role.value}


#: the identity of in-process callers that bypass HTTP (the demo, `warden decide`)
LOCAL_ADMIN = Principal("local-cli", Role.ADMIN)


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """The API keys a gateway accepts, loaded from a YAML file of hashed keys."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_hash: dict[str, Principal] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        data = yaml.safe_load(self.path.read_text()) or {}
        keys = data.get("keys", []) if isinstance(data, dict) else None
        if not isinstance(keys, list):
            raise WardenError(f"{self.path}: expected a mapping with a `keys` list")
        for index, item in enumerate(keys):
            try:
                principal = Principal(str(item["name"]), Role(item["role"]))
                self._by_hash[str(item["sha256"])] = principal
            except (KeyError, ValueError, TypeError) as exc:
                raise WardenError(f"{self.path}: keys[{index}]: invalid entry ({exc})") from None

    def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise AuthError("missing API key: send it in the X-API-Key header")
        digest = _hash_key(key)
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return principal
        raise AuthError("unknown API key")

    def create(self, name: str, role: Role) -> str:
        """Create a key, persist its hash, and return the plain key (shown only once)."""
        if any(p.name == name for p in self._by_hash.values()):
            raise WardenError(f"a key named {name!r} exists already")
        key = f"wk_{role.value[:3]}_{secrets.token_urlsafe(24)}"
        self._by_hash[_hash_key(key)] = Principal(name, role)
        self._save()
        return key

    def principals(self) -> list[Principal]:
        return list(self._by_hash.values())

    def _save(self) -> None:
        items = [
            {"name": p.name, "role": p.role.value, "sha256": h} for h, p in self._by_hash.items()
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"keys": items}, sort_keys=False))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
