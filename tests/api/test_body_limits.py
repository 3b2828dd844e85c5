"""Every body the app reads has a limit: over it, a 413 naming the body and the limit, in
the error JSON of every other route, before any of it is parsed, and nothing written.
Before, only `warden serve`'s front door had one (8 MiB, chat completions); a decision,
a review, a calibration or a workbench form was read into memory whatever its size (a
finding of a fuzzing session)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import Api, claimed_case
from tests.conftest import review_payment
from warden.api.body import (
    DECISION_FIELDS_BYTES,
    SMALL_BODY_BYTES,
    BodyLimit,
    decision_body_limit,
)
from warden.api.openai_compat import MAX_BODY_BYTES, FrontDoorFirst
from warden.errors import AuthError
from warden.schemas import ReviewRequestBody


def _too_large(response: Any, limit: int) -> None:
    assert response.status_code == 413, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "request.too_large" and error["field"] == "body", error
    assert f"the limit of {limit:,} bytes" in error["message"], error


def _chunks(size: int, chunk: int = 16 * 1024) -> Iterator[bytes]:
    """A body of `size` bytes sent without a Content-Length (chunked)."""
    yield b'{"pad": "'
    sent = 0
    while sent < size:
        yield b"x" * min(chunk, size - sent)
        sent += chunk
    yield b'"}'


def test_the_decision_limit_has_room_for_every_document_the_guard_accepts(api: Api) -> None:
    """The example policy's `claims_intake` takes one document of up to 5,000,000 bytes
    (its base64, as the guard counts it) and two texts of at most 20,000 and 5,000
    characters (each as `\\uXXXX` escapes, 6 bytes a character), and a megabyte for
    everything else."""
    _, _, gateway = api
    documents = 5_000_000 * 4 // 3 + 8
    texts = (20_000 + 5_000) * 6
    assert decision_body_limit(gateway.policy) == DECISION_FIELDS_BYTES + documents + texts


def test_a_decision_over_its_limit_is_413_and_nothing_is_decided(api: Api) -> None:
    client, keys, gateway = api
    limit = decision_body_limit(gateway.policy)
    size = gateway.store.size()
    request = review_payment()
    request["pad"] = "x" * limit
    declared = client.post("/v1/decisions", json=request, headers=keys["service"])
    _too_large(declared, limit)
    assert " bytes, more than the limit" in declared.json()["error"]["message"]  # its size
    streamed = client.post("/v1/decisions", content=_chunks(limit), headers=keys["service"])
    _too_large(streamed, limit)
    assert gateway.store.size() == size
    # the route still answers: an ordinary decision is taken
    assert client.post("/v1/decisions", json=review_payment(), headers=keys["service"]).is_success


def test_a_document_at_the_guards_limit_reaches_the_guard(api: Api) -> None:
    """A document one byte over the guard's `max_bytes` is the guard's to refuse (422,
    `document.too_large`, naming the input), not the body limit's: documents are sent
    inline as base64, and the body limit leaves room for the largest one accepted."""
    client, keys, _ = api
    data = base64.b64encode(b"a" * 5_000_001).decode()
    request = {
        "decision_type": "claims_intake",
        "jurisdiction": "EU",
        "inputs": {
            "policy_number": "P-204518",
            "claim_type": "device",
            "claim_amount": 420.0,
            "currency": "EUR",
            "description": "I dropped my phone and the screen cracked.",
            "attachment": {"name": "quote.txt", "content_type": "text/plain", "data_base64": data},
        },
    }
    response = client.post("/v1/decisions", json=request, headers=keys["service"])
    assert response.status_code == 422, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "document.too_large" and error["field"] == "inputs.attachment", error


def test_a_review_over_its_limit_is_413_and_the_case_is_untouched(api: Api) -> None:
    client, keys, gateway = api
    decision_id = claimed_case(client, keys)
    size = gateway.store.size()
    url = f"/v1/review/{decision_id}"
    body = {"outcome": "approve", "label": "negative", "rationale": "x" * SMALL_BODY_BYTES}
    _too_large(client.post(url, json=body, headers=keys["reviewer"]), SMALL_BODY_BYTES)
    streamed = client.post(url, content=_chunks(SMALL_BODY_BYTES), headers=keys["reviewer"])
    _too_large(streamed, SMALL_BODY_BYTES)
    assert gateway.store.size() == size
    assert client.get(url, headers=keys["auditor"]).json()["status"] == "claimed"


def test_the_longest_rationale_fits_in_a_review_body_however_it_is_escaped(api: Api) -> None:
    """5,000 characters each escaped as a surrogate pair (`\\ud83d\\ude00`, 12 bytes) is
    the largest review body: under the limit, and taken."""
    client, keys, _ = api
    longest = ReviewRequestBody.model_fields["rationale"].metadata
    max_length = next(m.max_length for m in longest if hasattr(m, "max_length"))
    rationale = "\U0001f600" * max_length
    raw = json.dumps({"outcome": "approve", "label": "negative", "rationale": rationale})
    assert len(raw) < SMALL_BODY_BYTES
    decision_id = claimed_case(client, keys)
    headers = {**keys["reviewer"], "Content-Type": "application/json"}
    response = client.post(f"/v1/review/{decision_id}", content=raw, headers=headers)
    assert response.status_code == 200, response.text[:300]


def test_calibrate_and_chat_completions_have_their_limits(api: Api) -> None:
    client, keys, gateway = api
    size = gateway.store.size()
    calibrate = {"decision_type": "payment_fraud", "pad": "x" * SMALL_BODY_BYTES}
    response = client.post("/v1/thresholds/calibrate", json=calibrate, headers=keys["admin"])
    _too_large(response, SMALL_BODY_BYTES)
    # the app's own chat completions route (what a test client or another ASGI server
    # serves without `FrontDoorFirst`) has the front door's limit
    chat = {"model": "x", "messages": [], "pad": "x" * MAX_BODY_BYTES}
    auth = {"Authorization": f"Bearer {keys['service']['X-API-Key']}"}
    _too_large(client.post("/v1/chat/completions", json=chat, headers=auth), MAX_BODY_BYTES)
    assert gateway.store.size() == size


def test_the_openapi_document_lists_413_with_each_routes_limit(api: Api) -> None:
    client, _, gateway = api
    paths = client.get("/openapi.json").json()["paths"]
    limits = {
        "/v1/decisions": decision_body_limit(gateway.policy),
        "/v1/chat/completions": MAX_BODY_BYTES,
        "/v1/review/{decision_id}": SMALL_BODY_BYTES,
        "/v1/thresholds/calibrate": SMALL_BODY_BYTES,
    }
    for path, limit in limits.items():
        response = paths[path]["post"]["responses"]["413"]
        assert response["description"] == f"The body is larger than {limit:,} bytes"
        ref = response["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorResponse"
    for operations in paths.values():
        for method, operation in operations.items():
            assert ("413" in operation["responses"]) == (method == "post"), operation


def _run(app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]) -> tuple[Any, Any]:
    """Drive `app` with `messages`: (what it sent, how many messages it received)."""
    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, received


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "root_path": "", "headers": headers}


def test_body_limit_reads_nothing_of_a_body_announced_too_large_and_never_calls_the_app() -> None:
    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(await receive())

    limit = BodyLimit(app, {"/big": 100}, default=10, authenticate={"/big": _known})
    announced = _scope("/big", [(b"content-length", b"101"), (b"x-api-key", b"k")])
    sent, received = _run(limit, announced, [{"type": "http.request", "body": b"x" * 101}])
    assert received == 0 and not called
    start, body = sent
    assert start["status"] == 413 and (b"connection", b"close") in start["headers"]
    assert json.loads(body["body"])["error"] == {
        "code": "request.too_large",
        "message": "body: 101 bytes, more than the limit of 100 bytes",
        "field": "body",
    }
    # streamed in pieces, no Content-Length: refused at the piece that goes over
    pieces = [{"type": "http.request", "body": b"x" * 6, "more_body": True}] * 3
    sent, received = _run(limit, _scope("/other", []), list(pieces))
    assert received == 2 and not called and sent[0]["status"] == 413
    assert b"more than the limit of 10 bytes" in sent[1]["body"]
    # within the limit: the app gets the whole body at once, then the client's messages
    sent, _ = _run(limit, _scope("/other", []), [*pieces[:1], {"type": "http.request"}])
    assert called == [{"type": "http.request", "body": b"x" * 6, "more_body": False}]


async def _known(headers: Any) -> None:
    if headers.get("x-api-key") != "k":
        raise AuthError("unknown API key")


def test_a_large_body_is_read_for_a_known_caller_only() -> None:
    """Megabytes of a decision are read only after the key is checked: an unknown caller
    gets its 401 with the body unread, whatever its size."""
    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(await receive())

    limit = BodyLimit(app, {"/big": 100}, default=10, authenticate={"/big": _known})
    body = [{"type": "http.request", "body": b"x" * 50}]
    sent, received = _run(limit, _scope("/big", [(b"x-api-key", b"nope")]), list(body))
    assert received == 0 and not called
    assert sent[0]["status"] == 401 and (b"connection", b"close") in sent[0]["headers"]
    sent, received = _run(limit, _scope("/big", [(b"x-api-key", b"k")]), list(body))
    assert received == 1 and called == [{**body[0], "more_body": False}]
    with pytest.raises(ValueError, match="no authentication"):
        BodyLimit(app, {"/big": 100}, default=10, authenticate={})


def test_the_gateways_large_routes_check_the_key_before_the_body(api: Api) -> None:
    client, _, gateway = api
    size = gateway.store.size()
    big = b"x" * (2 * 1024 * 1024)
    for path, headers in (
        ("/v1/decisions", {"X-API-Key": "not-a-key"}),
        ("/v1/chat/completions", {"Authorization": "Bearer not-a-key"}),
        ("/v1/decisions", {}),
    ):
        response = client.post(path, content=big, headers=headers)
        assert response.status_code == 401, (path, response.text[:200])
        assert response.headers["connection"] == "close"
    assert gateway.store.size() == size
    # and the front door `warden serve` runs ahead of the app
    door = FrontDoorFirst(None, gateway)
    scope = _scope("/v1/chat/completions", [(b"authorization", b"Bearer not-a-key")])
    sent, received = _run(door, scope, [{"type": "http.request", "body": big}])
    assert received == 0 and sent[0]["status"] == 401
