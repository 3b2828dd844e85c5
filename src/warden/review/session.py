"""Workbench sessions: a signed, expiring cookie naming the principal, and a CSRF token.

The signing key lives in the data directory (`keys/session.key`, created on first use,
mode 0600), so sessions survive a restart and a new data directory invalidates them. The
cookie carries the key holder's name and role and a random CSRF token; every request
re-checks the name and role against the key ring, so deleting a key ends its sessions."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from warden.auth import KeyRing, Principal, Role

SESSION_COOKIE = "warden_session"
LOGIN_COOKIE = "warden_login"


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str


def load_or_create_key(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    return key


class Sessions:
    def __init__(self, keyring: KeyRing, secret: bytes, max_age_seconds: int) -> None:
        self.keyring = keyring
        self.max_age = max_age_seconds
        self._session = URLSafeTimedSerializer(secret, salt="warden.workbench.session")
        self._login = URLSafeTimedSerializer(secret, salt="warden.workbench.login")

    @classmethod
    def for_keyring(cls, keyring: KeyRing, max_age_seconds: int) -> Sessions:
        secret = load_or_create_key(keyring.path.parent / "keys" / "session.key")
        return cls(keyring, secret, max_age_seconds)

    def issue(self, principal: Principal) -> str:
        token = secrets.token_urlsafe(24)
        return self._session.dumps({"n": principal.name, "r": principal.role.value, "c": token})

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._session.loads(cookie, max_age=self.max_age)
            principal = Principal(str(data["n"]), Role(data["r"]))
            csrf = str(data["c"])
        except (BadSignature, KeyError, ValueError, TypeError):
            return None
        if principal not in self.keyring.principals():
            return None  # the key was removed (or the role changed) since the log-in
        return Session(principal, csrf)

    # -- log-in form CSRF (double submit: a signed cookie and the same token in the form)
    def login_token(self) -> tuple[str, str]:
        token = secrets.token_urlsafe(24)
        return token, self._login.dumps(token)

    def login_token_ok(self, cookie: str | None, submitted: str | None) -> bool:
        if not cookie or not submitted:
            return False
        try:
            expected = str(self._login.loads(cookie, max_age=3600))
        except BadSignature:
            return False
        return _same_token(expected, submitted)


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and _same_token(session.csrf, str(submitted))


def _same_token(expected: str, submitted: str) -> bool:
    """Tokens are ASCII; `hmac.compare_digest` raises TypeError (a 500) on a str with any
    other character, so such a submission is simply not the token."""
    return submitted.isascii() and hmac.compare_digest(expected, submitted)
