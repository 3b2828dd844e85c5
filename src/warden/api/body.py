"""A request body read as JSON, with a 422 naming the body for every way it can fail.

`json.loads` fails in more ways than `JSONDecodeError`: an integer literal longer than
Python converts (`ValueError`), arrays nested deeper than its recursion limit
(`RecursionError`). Each of them was an unhandled 500 before. Two things it accepts are
refused here: text that is not UTF-8 (given bytes, `json.loads` also guesses UTF-16 and
UTF-32), and an object with the same key twice — `json.loads` keeps the last, another
reader (a proxy, a log pipeline) may keep the first, so the two would disagree on, say,
the jurisdiction. Both doors use this."""

from __future__ import annotations

import json
import sys
from typing import Any

from warden.errors import RequestError


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def parse_json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_object)
    except UnicodeDecodeError:
        raise RequestError("body: not valid UTF-8", field="body") from None
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise RequestError(f"body: not valid JSON ({where})", field="body") from None
    except _DuplicateKey as exc:
        shown = json.dumps(exc.key[:60])
        raise RequestError(
            f"body: key {shown} appears twice in one object (which one counts is ambiguous)",
            field="body",
        ) from None
    except RecursionError:
        raise RequestError(
            "body: arrays and objects nested too deeply to read", field="body"
        ) from None
    except ValueError:  # the only other: an integer literal too long to convert
        limit = sys.get_int_max_str_digits()
        raise RequestError(
            f"body: an integer literal has more than {limit} digits", field="body"
        ) from None
