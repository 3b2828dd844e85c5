"""A module's shape: its globals and its classes' members described in terms that are the
same in two processes (values, regex patterns, a digest of each function's bytecode).

The fork server (`warden.guard.forkserver`) runs the analysis with its own copy of the
code; comparing the caller's shape with the server's tells whether that copy is the code
the caller would run — not when a test monkeypatched a function or a constant, nor when a
module was edited on disk after the caller imported it, nor with another version of a
library (`library_versions`)."""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
import types
from typing import Any

_SIMPLE = (int, float, complex, str, bytes, bool, type(None))
#: class members that say nothing about the code (`__slotnames__`: cached by pickling)
_NOT_CODE = frozenset({"__doc__", "__slotnames__", "__dict__", "__weakref__"})


def _const(value: Any) -> Any:
    """A code constant in terms that are the same in two processes (a frozenset's order
    depends on the string hash seed; nested code objects become their digest)."""
    if isinstance(value, types.CodeType):
        return ("code", _code_digest(value))
    if isinstance(value, tuple):
        return ("tuple", tuple(_const(v) for v in value))
    if isinstance(value, frozenset):
        return ("frozenset", tuple(sorted(repr(_const(v)) for v in value)))
    return (type(value).__name__, repr(value))


def _code_digest(code: types.CodeType) -> str:
    """The bytecode, constants and names of a function: an edited body changes it."""
    digest = hashlib.blake2b(code.co_code, digest_size=16)
    digest.update(repr(tuple(_const(c) for c in code.co_consts)).encode())
    digest.update(repr(code.co_names).encode())
    return digest.hexdigest()


def _describe(value: Any, owner: str, depth: int = 0) -> Any:
    """What a value is, in terms that mean the same in two processes."""
    if isinstance(value, _SIMPLE):
        return ("v", repr(value))
    if isinstance(value, tuple | frozenset) and all(isinstance(v, _SIMPLE) for v in value):
        return ("v", repr(sorted(value, key=repr) if isinstance(value, frozenset) else value))
    if isinstance(value, re.Pattern):
        return ("re", value.pattern, value.flags)
    if isinstance(value, types.ModuleType):
        return ("m", value.__name__)
    if isinstance(value, staticmethod | classmethod):
        return (type(value).__name__, _describe(value.__func__, owner, depth))
    if isinstance(value, property):
        return ("p", *(_describe(f, owner, depth) for f in (value.fget, value.fset)))
    if isinstance(value, types.FunctionType):
        code = value.__code__
        # described, not repr'd: a sentinel default's repr holds its address
        keyword_defaults = value.__kwdefaults__ or {}
        defaults = (
            tuple(_describe(v, owner, 1) for v in value.__defaults__ or ()),
            tuple((k, _describe(v, owner, 1)) for k, v in sorted(keyword_defaults.items())),
        )
        return (
            "f",
            value.__module__,
            value.__qualname__,
            code.co_firstlineno,
            _code_digest(code),
            defaults,
            _wrapped(value, owner, depth),
        )
    wrapped = getattr(value, "__wrapped__", None)
    if callable(wrapped) and not isinstance(value, type):  # functools.lru_cache and kin
        return ("w", type(value).__qualname__, _describe(wrapped, owner, depth))
    if isinstance(value, type):
        if depth == 0 and value.__module__ == owner:
            members = sorted(
                (k, _describe(v, owner, 1)) for k, v in vars(value).items() if k not in _NOT_CODE
            )
            return ("c", value.__qualname__, tuple(members))
        return ("t", value.__module__, value.__qualname__)
    return ("o", type(value).__module__, type(value).__qualname__)


def _wrapped(function: types.FunctionType, owner: str, depth: int) -> Any:
    """What a decorator's wrapper wraps (`functools.wraps` sets `__wrapped__`): the
    wrapper's own code is the same whatever the body it runs."""
    inner = getattr(function, "__wrapped__", None)
    return _describe(inner, owner, depth) if callable(inner) else None


def shape(module: types.ModuleType) -> dict[str, Any]:
    """The module's globals and its classes' members, described (see `_describe`)."""
    name = module.__name__
    return {  # not dunders, nor what pytest's assertion rewriting adds (`@py_builtins`)
        k: _describe(v, name)
        for k, v in vars(module).items()
        if not k.startswith("__") and k.isidentifier()
    }


def identity(module: types.ModuleType) -> tuple[int, ...]:
    """Cheap: changes when a global or a class member of the module is replaced (or a
    function's code)."""
    name = module.__name__
    values = list(vars(module).values())
    ids = list(map(id, values))
    for value in values:
        if isinstance(value, types.FunctionType):
            ids.append(id(value.__code__))
        elif isinstance(value, type) and value.__module__ == name:
            ids.extend(map(id, list(vars(value).values())))
    return tuple(ids)


def library_versions(
    versions: tuple[tuple[str, str], ...], *, load: bool = False
) -> dict[str, str | None]:
    """`module.attribute` as text for each (module, attribute); None for a module not
    loaded (imported first when `load`: the server does, the caller never)."""
    found: dict[str, str | None] = {}
    for module_name, attribute in versions:
        module = importlib.import_module(module_name) if load else sys.modules.get(module_name)
        value = getattr(module, attribute, None) if module is not None else None
        found[f"{module_name}.{attribute}"] = None if value is None else str(value)
    return found
