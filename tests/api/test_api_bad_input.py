"""Bad input on the routes other than the two decision doors (the review workbench API,
thresholds, audit reads): a precise 4xx `{"error": ...}` naming the field, never a 500,
and nothing written. Each test here is a finding of a fuzzing session (schemathesis and
hand-written requests against `warden serve`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import claimed_case
from tests.conftest import EXAMPLE_POLICY
from warden.api.app import create_app
from warden.auth import Role
from warden.gateway import Gateway

GOOD_REVIEW = {
    "outcome": "approve",
    "rationale": "Known customer travelling, confirmed.",
    "label": "negative",
}


def test_post_to_the_review_queue_is_a_wrong_method_not_a_review_of_a_decision_queue(
    api: Any,
) -> None:
    """`POST /v1/review/queue` matched `POST /v1/review/{decision_id}` with the id
    "queue" (a 422 for the body, or a 404 for the id) though the path is the queue's."""
    client, keys, _ = api
    for body in (None, GOOD_REVIEW, {"nonsense": 1}):
        for role in ("reviewer", "service"):
            response = client.post("/v1/review/queue", json=body, headers=keys[role])
            assert response.status_code == 405, (body, role, response.text)
            assert response.headers["allow"] == "GET"
            assert response.json()["error"]["code"] == "method_not_allowed"
    # the queue's own method and the routes below a decision are untouched
    assert client.get("/v1/review/queue", headers=keys["reviewer"]).status_code == 200
    claim = client.post("/v1/review/queue/claim", headers=keys["reviewer"])
    assert claim.status_code == 404 and "'queue'" in claim.json()["error"]["message"]
    assert client.get("/v1/review/queue-2", headers=keys["reviewer"]).status_code == 404
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]["/v1/review/queue"]) == {"get"}
    assert set(spec["paths"]["/v1/review/{decision_id}"]) == {"get", "post"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"outcome": "approve", "outcome": "decline", "rationale": "Known customer, yes.", '
         b'"label": "negative"}', 'body: key "outcome" appears twice'),
        (b'{"outcome": "approve",', "body: not valid JSON ("),
        (b'{"outcome": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "nested too deeply"),
        (b'{"outcome": 1' + b"0" * 5000 + b"}", "an integer literal has more than"),
        ('{"outcome": "approve"}'.encode("utf-16"), "body: not valid UTF-8"),
    ],
    ids=["key-twice", "truncated", "deep", "huge-int", "utf-16"],
)  # fmt: skip
def test_a_review_body_is_read_like_a_decision_body(api: Any, raw: bytes, message: str) -> None:
    """The review body went through FastAPI's own parsing: a key twice was taken (the
    last one: the reviewer's outcome could be read either way), a truncated body named
    the field `[1]`, and one nested too deeply or with a huge integer was called "not
    UTF-8 text". It is read as `POST /v1/decisions` reads its body, and nothing is
    written."""
    client, keys, gateway = api
    decision_id = claimed_case(client, keys)
    size = gateway.store.size()
    headers = {**keys["reviewer"], "Content-Type": "application/json"}
    response = client.post(f"/v1/review/{decision_id}", content=raw, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "request.invalid" and error["field"] == "body", error
    assert error["message"].startswith(message) or message in error["message"], error
    assert gateway.store.size() == size
    case = client.get(f"/v1/review/{decision_id}", headers=keys["auditor"]).json()
    assert case["status"] == "claimed"


def test_a_review_body_names_its_field_and_the_allowed_ones(api: Any) -> None:
    client, keys, gateway = api
    decision_id = claimed_case(client, keys)
    size = gateway.store.size()
    url = f"/v1/review/{decision_id}"
    cases = [
        ({**GOOD_REVIEW, "outcome": 1}, "outcome"),
        ({**GOOD_REVIEW, "rationale": None}, "rationale"),
        ({**GOOD_REVIEW, "rationale": "x" * 5001}, "rationale"),
        ({**GOOD_REVIEW, "rationale": "  too short "}, "rationale"),
        ({k: v for k, v in GOOD_REVIEW.items() if k != "label"}, "label"),
        ({**GOOD_REVIEW, "reviewer": "someone-else"}, "reviewer"),
    ]
    for body, field in cases:
        response = client.post(url, json=body, headers=keys["reviewer"])
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"] == field, response.text
    extra = client.post(url, json={**GOOD_REVIEW, "x": 1}, headers=keys["reviewer"])
    assert "allowed: outcome, rationale, label" in extra.json()["error"]["message"]
    for raw in (b"[]", b"null", b'"approve"', b"1"):
        response = client.post(url, content=raw, headers=keys["reviewer"])
        assert response.status_code == 422, (raw, response.text)
        assert response.json()["error"] == {
            "code": "request.invalid",
            "message": "request body must be a JSON object",
            "field": "body",
        }
    empty = client.post(url, content=b"", headers=keys["reviewer"])
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "body"
    assert gateway.store.size() == size
    # a role that may not review learns that before anything about its body
    denied = client.post(url, content=b"{", headers=keys["auditor"])
    assert denied.status_code == 403, denied.text
    done = client.post(url, json=GOOD_REVIEW, headers=keys["reviewer"])
    assert done.status_code == 200, done.text


def test_a_calibrate_body_is_read_like_a_decision_body(api: Any) -> None:
    """The same for `POST /v1/thresholds/calibrate`: a second `decision_type` calibrated
    the last one named."""
    client, keys, gateway = api
    size = gateway.store.size()
    headers = {**keys["admin"], "Content-Type": "application/json"}
    twice = b'{"decision_type": "payment_fraud", "rows": 300, "decision_type": "claims_intake"}'
    for raw, message in (
        (twice, 'body: key "decision_type" appears twice'),
        (b'{"decision_type": ', "body: not valid JSON ("),
        (b"[]", "request body must be a JSON object"),
    ):
        response = client.post("/v1/thresholds/calibrate", content=raw, headers=headers)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == "body" and error["message"].startswith(message), error
    for body, field in (
        ({"decision_type": "payment_fraud", "rows": -1}, "rows"),
        ({"decision_type": "payment_fraud", "seed": [1]}, "seed"),
        ({"decision_type": "payment_fraud", "review_capacity": 0}, "review_capacity"),
        ({"decision_type": "x" * 65}, "decision_type"),
        ({}, "decision_type"),
        ({"decision_type": "payment_fraud", "extra": 1}, "extra"),
    ):
        response = client.post("/v1/thresholds/calibrate", json=body, headers=keys["admin"])
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"] == field, response.text
    # too few labelled outcomes to calibrate on: the rows asked for are named
    few = client.post(
        "/v1/thresholds/calibrate",
        json={"decision_type": "payment_fraud", "rows": 10},
        headers=keys["admin"],
    )
    assert few.status_code == 422, few.text
    error = few.json()["error"]
    assert error["field"] == "rows" and "too few to calibrate on" in error["message"], error
    denied = client.post("/v1/thresholds/calibrate", content=b"{", headers=keys["reviewer"])
    assert denied.status_code == 403, denied.text
    assert gateway.store.size() == size


def test_the_openapi_document_still_describes_the_bodies_read_by_hand(api: Any) -> None:
    client, _, _ = api
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, model in (
        ("/v1/review/{decision_id}", "ReviewRequestBody"),
        ("/v1/thresholds/calibrate", "CalibrateRequestBody"),
    ):
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model}"
        assert schemas[model]["additionalProperties"] is False
    assert schemas["ReviewRequestBody"]["properties"]["rationale"]["minLength"] == 10
    assert schemas["CalibrateRequestBody"]["properties"]["decision_type"]["enum"]


def test_concurrent_calibrations_all_answer_and_none_is_left_half_done(data_dir: Path) -> None:
    """Three admins' calibrations at once: two answered 500 *after* their proposal was
    committed (the report's charts are drawn by matplotlib, whose text layout is not
    thread-safe, on `asyncio.to_thread`). The route runs one calibration at a time."""
    gateway = Gateway.open(data_dir, EXAMPLE_POLICY)
    assert gateway.keyring is not None
    key = {"X-API-Key": gateway.keyring.create("admin-1", Role.ADMIN)}
    app = create_app(gateway)

    async def calibrate_three() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://warden") as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/thresholds/calibrate",
                        json={"decision_type": "payment_fraud", "rows": 3000, "seed": seed},
                        headers=key,
                    )
                    for seed in (1, 2, 3)
                )
            )

    try:
        responses = asyncio.run(calibrate_three())
        assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
        versions = {r.json()["thresholds_version"] for r in responses}
        from warden.models.thresholds import proposals as stored

        assert {p["thresholds_version"] for p in stored(gateway.store)} == versions
        assert all(len(r.json()["report"]) == 4 for r in responses)
    finally:
        gateway.close()


@pytest.mark.parametrize(
    ("char", "kind"),
    [
        ("\x00", "a control character"),
        ("\x07", "a control character"),
        ("\x1b", "a control character"),
        ("\x7f", "a control character"),
        ("\x85", "a control character"),
        ("\x9b", "a control character"),
        ("\u200b", "a zero-width character"),
        ("\ufeff", "a zero-width character"),
        ("\u202e", "a bidi control character"),
        ("\u2066", "a bidi control character"),
        ("\U000e0041", "a Unicode tag character"),
        ("\u2064", "an invisible character"),
    ],
)
def test_a_rationale_with_a_control_or_invisible_character_is_refused(
    api: Any, char: str, kind: str
) -> None:
    """A rationale took a NUL, escape sequences, zero-width and bidi-control characters:
    what an auditor reads of it was not what was recorded. A 422 names the field, the
    character and where it is; nothing is written."""
    client, keys, gateway = api
    decision_id = claimed_case(client, keys)
    size = gateway.store.size()
    rationale = f"Known custo{char}mer travelling, confirmed."
    body = {**GOOD_REVIEW, "rationale": rationale}
    response = client.post(f"/v1/review/{decision_id}", json=body, headers=keys["reviewer"])
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {
        "code": "request.invalid",
        "message": f"rationale: contains U+{ord(char):04X} ({kind}) at position 11",
        "field": "rationale",
    }
    assert gateway.store.size() == size


def test_a_rationale_keeps_line_breaks_tabs_and_joiners_that_belong(api: Any) -> None:
    """Not refused: line breaks and tabs (a textarea sends CR LF), a zero-width non-joiner
    in Persian, a zero-width joiner inside an emoji sequence, a subdivision flag's tags,
    the direction marks of Hebrew and Arabic typing, a pasted soft hyphen."""
    client, keys, _ = api
    rationale = (
        "Known customer,\r\n\tconfirmed by phone: می\u200cخواهم 👨\u200d👩\u200d👧 "
        "שלום\u200f 123, مرحبا\u061c, re\u00adviewed "
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    )
    decision_id = claimed_case(client, keys)
    body = {**GOOD_REVIEW, "rationale": rationale}
    response = client.post(f"/v1/review/{decision_id}", json=body, headers=keys["reviewer"])
    assert response.status_code == 200, response.text
    case = client.get(f"/v1/review/{decision_id}", headers=keys["auditor"]).json()
    assert case["history"][-1]["rationale"] == rationale.strip()


def test_an_unknown_id_is_not_echoed_back_whole(api: Any) -> None:
    """A 404 quoted the id it was given whole: a 60 KB id came back in a 60 KB message,
    and control characters in it as they were. The echo is the first 64 characters,
    quoted with their escapes, and the length."""
    client, keys, _ = api
    long_id = "x" * 60_000
    shown = "'" + "x" * 64 + "'… (60,000 characters)"
    for method, path, role in (
        ("GET", "/v1/decisions/{}", "admin"),
        ("GET", "/v1/decisions/{}/proof", "admin"),
        ("GET", "/v1/decisions/{}/reproduce", "admin"),
        ("GET", "/v1/review/{}", "reviewer"),
        ("POST", "/v1/review/{}/claim", "reviewer"),
        ("POST", "/v1/review/{}/release", "reviewer"),
        ("POST", "/v1/thresholds/{}/approve", "admin"),
    ):
        response = client.request(method, path.format(long_id), headers=keys[role])
        assert response.status_code == 404, (path, response.text[:200])
        error = response.json()["error"]
        assert error["code"] == "not_found" and shown in error["message"], (path, error)
        assert len(error["message"]) < 200, (path, error)
    review = client.post(f"/v1/review/{long_id}", json=GOOD_REVIEW, headers=keys["reviewer"])
    assert review.status_code == 404 and shown in review.json()["error"]["message"]
    hidden = client.get("/v1/decisions/a%00b%E2%80%8Bc%1B", headers=keys["admin"])
    assert hidden.status_code == 404
    assert hidden.json()["error"]["message"] == "no decision with id 'a\\x00b\\u200bc\\x1b'"
    # a short printable id is quoted as before
    plain = client.get("/v1/decisions/no-such-id", headers=keys["admin"])
    assert plain.json()["error"]["message"] == "no decision with id 'no-such-id'"
    # the role is still checked before the id is looked up
    denied = client.get(f"/v1/decisions/{long_id}/reproduce", headers=keys["service"])
    assert denied.status_code == 403, denied.text[:200]
