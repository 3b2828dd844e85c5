"""Errors that reach a caller: each carries a stable code, an HTTP status and, where it
concerns one field, the dotted path of that field."""

from __future__ import annotations


class WardenError(Exception):
    """Base class; `str()` is the one-line message shown to people."""

    code = "warden.error"
    http_status = 500

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


class PolicyError(WardenError):
    code = "policy.invalid"
    http_status = 422


class RequestError(WardenError):
    """The request is malformed or refused by policy (4xx, nothing decided)."""

    code = "request.invalid"
    http_status = 422


class AuthError(WardenError):
    code = "auth.unauthenticated"
    http_status = 401


class ForbiddenError(WardenError):
    code = "auth.forbidden"
    http_status = 403


class NotFoundError(WardenError):
    code = "not_found"
    http_status = 404


class ConflictError(WardenError):
    code = "conflict"
    http_status = 409


class AuditCommitError(WardenError):
    """The audit record could not be made durable: the caller gets this, never a decision."""

    code = "audit.commit_failed"
    http_status = 503


class DataDirBusyError(WardenError):
    code = "data_dir.busy"
    http_status = 503
