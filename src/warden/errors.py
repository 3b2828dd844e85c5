"""Errors that reach a caller: each carries a stable code, an HTTP status and, where it
concerns one field, the dotted path of that field."""

from __future__ import annotations

#: at most this many characters of a value the caller sent are quoted back in a message
ECHO_CHARS = 64


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


class TooLargeError(RequestError):
    """A request body over its route's limit: refused before any of it is read or parsed."""

    code = "request.too_large"
    http_status = 413


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


def echo(value: str, limit: int = ECHO_CHARS) -> str:
    """`value`, something the caller sent, as a message quotes it: `repr`, so control and
    invisible characters show as escapes, cut to `limit` characters with its full length
    (a 404 sent back a 60 KB path segment whole)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value):,} characters)"
