"""What an isolated analysis sends back, and how the caller reads it.

The child has just parsed an attacker's file with a C library. Were that library taken
over, a free-form pickle would run the attacker's code in the gateway, undoing the
isolation; so the answer is read through an allow-list of the classes an analysis returns
and the exceptions it raises on purpose, and its size is capped."""

from __future__ import annotations

import io
import pickle
import sys
from typing import Any

#: the largest answer taken from a child; a report is bounded by the document limits
#: (2 M characters of text: at most ~8 MB pickled), far below this
MAX_ANSWER_BYTES = 64 * 1024**2


class ChildError(Exception):
    """The work raised in the child something that does not cross a pipe as itself."""


#: what an answer holds besides plain values (module, class); nothing that takes a size
#: (`bytearray(10**10)` is a 39-byte pickle) and no containers pickle builds by call
ANSWER_CLASSES = frozenset(
    {
        ("warden.guard.documents", "DocumentReport"),
        ("warden.guard.documents", "HiddenText"),
        ("warden.guard.documents", "DocumentLimits"),
        ("warden.guard.signals", "Signal"),
    }
)
#: the exceptions an answer may raise in the caller: what the analysis raises on purpose,
#: and what the child's limits cause (the address-space cap, deep nesting); any other one
#: crosses as a `ChildError` that names it. Never SystemExit, KeyboardInterrupt or
#: CancelledError: a taken-over child must not stop the gateway's worker or task.
ANSWER_EXCEPTIONS = frozenset(
    {
        ("warden.guard.documents", "DocumentError"),
        ("warden.guard.isolated_answer", "ChildError"),
        ("builtins", "MemoryError"),
        ("builtins", "RecursionError"),
    }
)


def dumps_answer(answer: tuple[str, Any]) -> bytes:
    """The pickled answer. An exception not in ANSWER_EXCEPTIONS, an answer that does not
    pickle, or one over MAX_ANSWER_BYTES becomes a `ChildError` that says what it was."""
    outcome, value = answer
    if outcome == "raised":
        kind = type(value)
        if (kind.__module__, kind.__qualname__) not in ANSWER_EXCEPTIONS:
            try:
                said = str(value)
            except Exception:
                said = "(its message could not be read)"
            answer = ("raised", ChildError(f"{kind.__name__}: {said}"))
    try:
        payload = pickle.dumps(answer)
    except Exception as exc:
        return pickle.dumps(("raised", ChildError(f"{type(exc).__name__}: {exc}")))
    if len(payload) > MAX_ANSWER_BYTES:
        too_large = f"the answer is {len(payload)} bytes, more than {MAX_ANSWER_BYTES}"
        return pickle.dumps(("raised", ChildError(too_large)))
    return payload


class _AnswerUnpickler(pickle.Unpickler):
    """Unpickles only what an answer can hold: the classes of ANSWER_CLASSES and
    ANSWER_EXCEPTIONS, taken from modules already loaded, from their namespace (no
    module `__getattr__` runs). The child has just parsed an attacker's file with a C
    library; were that library taken over, a free-form pickle would run the attacker's
    code in the gateway, undoing the isolation."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = (module, name) in ANSWER_CLASSES or (module, name) in ANSWER_EXCEPTIONS
        loaded = sys.modules.get(module) if allowed else None  # never import on its word
        found = vars(loaded).get(name) if loaded is not None else None
        if isinstance(found, type):
            return found
        raise pickle.UnpicklingError(f"an isolated answer may not hold {module}.{name}")


def loads_answer(payload: bytes) -> tuple[str, Any]:
    """The child's ("ok" | "raised", value), read with `_AnswerUnpickler`; an answer that
    does not read is a `ChildError`."""
    try:
        outcome, value = _AnswerUnpickler(io.BytesIO(payload)).load()
    except Exception as exc:
        return "raised", ChildError(f"the answer could not be read: {exc}")
    return outcome, value
