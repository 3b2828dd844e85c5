"""A request body read as JSON, with a 422 naming the body for every way it can fail.

`json.loads` fails in more ways than `JSONDecodeError`: an integer literal longer than
Python converts (`ValueError`), arrays nested deeper than its recursion limit
(`RecursionError`). Each of them was an unhandled 500 before; both doors use this."""

from __future__ import annotations

import json
import sys
from typing import Any

from warden.errors import RequestError


def parse_json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise RequestError(f"body: not valid JSON ({where})", field="body") from None
    except UnicodeDecodeError:
        raise RequestError("body: not valid UTF-8", field="body") from None
    except RecursionError:
        raise RequestError(
            "body: arrays and objects nested too deeply to read", field="body"
        ) from None
    except ValueError:  # the only other: an integer literal too long to convert
        limit = sys.get_int_max_str_digits()
        raise RequestError(
            f"body: an integer literal has more than {limit} digits", field="body"
        ) from None
