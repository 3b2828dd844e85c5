"""The fast canonical-JSON path must produce exactly the bytes of the reference RFC 8785
implementation for every JSON value."""

from __future__ import annotations

import math
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.canonical import (
    MAX_NESTING,
    NotCanonicalError,
    canonical_json,
    check_canonical,
    request_hash,
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=3000, deadline=None)
@given(json_values)
def test_fast_path_matches_rfc8785(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except Exception:  # the reference refuses it (e.g. lone surrogates): so must we
        try:
            canonical_json(value)
        except Exception:
            return
        raise AssertionError(f"accepted a value the reference refuses: {value!r}") from None
    assert canonical_json(value) == expected


def test_known_number_forms() -> None:
    cases = [
        0.0,
        -0.0,
        1.0,
        42.17,
        1e-7,
        5e-05,
        1e-4,
        1e16,
        1e21,
        1e300,
        2.0**60,
        123456789.125,
        -1.5,
        0.1 + 0.2,
        math.pi,
    ]
    for number in cases:
        assert canonical_json({"n": number}) == rfc8785.dumps({"n": number}), number


def test_key_order_is_utf16() -> None:
    value = {"\U0001f600": 1, "\ufb01": 2, "a": 3, "é": 4}
    assert canonical_json(value) == rfc8785.dumps(value)


def test_tiny_floats_take_the_fast_path_with_ecmascript_digits() -> None:
    import warden.canonical as canonical

    for number in (1.3e-05, -2.5e-06, 1e-6, 9.99e-5, 1.234e-10, 5e-324, -1e-7, 1.000001e-5):
        value = {"score": number, "list": [number, 0.5, "x"]}
        assert canonical_json(value) == rfc8785.dumps(value), number
    # a string holding the placeholder mark: the reference serializer decides instead
    sneaky = {"a": 1.3e-05, "b": canonical._MARK + "0" + canonical._MARK}
    assert canonical_json(sneaky) == rfc8785.dumps(sneaky)


safe_floats = st.floats(min_value=1e-4, max_value=2.0**53 - 1) | st.floats(
    min_value=-(2.0**53) + 1, max_value=-1e-4
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(safe_floats | st.text() | st.integers(-(2**53) + 1, 2**53 - 1), max_size=8))
def test_fast_path_numbers_and_strings_match_rfc8785(values: list[Any]) -> None:
    """The plain floats and strings of real records, which take the fast path (the
    recursive strategy above mostly draws edge values that go to the reference)."""
    value = {"v": values, "t": tuple(values), "d": {str(i): v for i, v in enumerate(values)}}
    assert canonical_json(value) == rfc8785.dumps(value)


def test_control_characters_and_escapes_match_rfc8785() -> None:
    text = "".join(chr(c) for c in range(0x80)) + "\u2028\u2029\ufeff é ß 中 \ue000"
    value = {text: text, "k": [text, {"\x7f": '\\"/'}]}
    assert canonical_json(value) == rfc8785.dumps(value)


def test_non_json_values_go_to_the_reference() -> None:
    import enum
    from datetime import datetime

    class Colour(enum.IntEnum):
        RED = 1

    for bad in (float("nan"), float("inf"), datetime(2026, 1, 1), {1: "int key"}, 2**60):
        try:
            expected: bytes | None = rfc8785.dumps({"x": bad})
        except Exception:
            expected = None
        try:
            got: bytes | None = canonical_json({"x": bad})
        except Exception:
            got = None
        assert got == expected, bad
    assert canonical_json({"x": Colour.RED}) == rfc8785.dumps({"x": Colour.RED})


wild_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(alphabet=st.characters(codec=None, categories=None), max_size=6)
)
wild_values = st.recursive(
    wild_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(codec=None, categories=None), max_size=4),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=1500, deadline=None)
@given(wild_values)
def test_check_canonical_accepts_exactly_what_canonical_json_can_write(value: Any) -> None:
    """Whatever JSON a client can send (huge integers, NaN, lone surrogates included),
    `request_hash` either hashes it or names the field: never another exception, which
    the API would answer with a 500."""
    try:
        canonical_json(value)
        writable = True
    except Exception:
        writable = False
    try:
        check_canonical(value)
        accepted = True
    except NotCanonicalError:
        accepted = False
    assert accepted == writable, value
    if accepted:
        request_hash(value)
    else:
        with pytest.raises(NotCanonicalError):
            request_hash(value)


@pytest.mark.parametrize(
    ("value", "path", "reason"),
    [
        ({"inputs": {"amount": 2**53}}, "inputs.amount", "integer 9007199254740992 (16 digits)"),
        ({"inputs": {"n": -(10**40)}}, "inputs.n", "integer -10000000000000000000…"),
        ({"a": [1, {"b": math.nan}]}, "a[1].b", "nan is not a JSON number"),
        ({"a": math.inf}, "a", "inf is not a JSON number"),
        ({"t": "ok \ud800"}, "t", "lone surrogate at character 3"),
        ({"x": {"odd key\udfff": 1}}, 'x."odd key\\udfff"', "the key is not valid Unicode"),
        ({"x": {3: 1}}, "x", "key 3 is not text"),
        ({"x": {1, 2}}, "x", "a set is not a JSON value"),
    ],
)
def test_check_canonical_names_the_field_and_the_reason(value: Any, path: str, reason: str) -> None:
    with pytest.raises(NotCanonicalError) as caught:
        check_canonical(value)
    assert caught.value.path == path
    assert reason in caught.value.reason, caught.value.reason
    str(caught.value).encode("utf-8")  # the message itself can be sent


def test_the_edges_of_the_exact_integer_range_are_accepted() -> None:
    for n in (2**53 - 1, -(2**53 - 1), 0):
        check_canonical({"n": n})
        request_hash({"n": n})


def _nested(levels: int) -> list[Any]:
    top: list[Any] = []
    inner = top
    for _ in range(levels - 1):
        inner.append([])
        inner = inner[0]
    return top


def test_nesting_is_refused_past_the_same_depth_on_both_paths() -> None:
    """orjson (the fast path) writes 254 levels and no more; the reference path must not
    accept what the fast path refuses, and nothing may end in a RecursionError."""
    assert canonical_json(_nested(MAX_NESTING)) == rfc8785.dumps(_nested(MAX_NESTING))
    check_canonical(_nested(MAX_NESTING))
    for levels in (MAX_NESTING + 1, 600, 20_000):
        with pytest.raises(NotCanonicalError, match=f"nested deeper than {MAX_NESTING}"):
            canonical_json(_nested(levels))
        with pytest.raises(NotCanonicalError) as caught:
            request_hash({"inputs": {"x": _nested(levels)}})
        assert caught.value.path.startswith("inputs.x[0][0]") and len(caught.value.path) < 130


def test_request_hash_names_odd_keys_and_integers_too_long_to_print() -> None:
    with pytest.raises(NotCanonicalError, match="key 3 is not text"):
        request_hash({"x": {3: 1}})
    with pytest.raises(NotCanonicalError, match="integer of about 5001 digits"):
        request_hash({"n": 10**5000})
