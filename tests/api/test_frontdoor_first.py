"""`FrontDoorFirst` (what `warden serve` runs: POST /v1/chat/completions without FastAPI's
middleware stack) answers exactly as the route inside the app does, on a real gateway and
SQLite store; and refuses an oversized body with 413 before parsing it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLE_POLICY
from warden.api.app import create_app
from warden.api.openai_compat import MAX_BODY_BYTES, FrontDoorFirst
from warden.auth import Role
from warden.gateway import Gateway

CHAT = {"model": "x", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def doors(data_dir: Path) -> Iterator[tuple[TestClient, TestClient, str]]:
    gateway = Gateway.open(data_dir, EXAMPLE_POLICY)
    assert gateway.keyring is not None
    key = gateway.keyring.create("svc", Role.SERVICE)
    app = create_app(gateway)
    with TestClient(app) as inner, TestClient(FrontDoorFirst(app, gateway)) as outer:
        yield inner, outer, key
    gateway.close()


def _cases(key: str) -> list[tuple[dict[str, str], Any]]:
    good = {
        "Authorization": f"Bearer {key}",
        "X-Warden-Jurisdiction": "EU",
        "x-warden-decision-type": "assistant_chat",  # header names are case-insensitive
    }
    return [
        ({**good, "Authorization": "Bearer wk_nope"}, CHAT),
        (good, b"{not json"),
        ({**good, "X-Warden-Jurisdiction": ""}, CHAT),
        ({**good, "X-Warden-Jurisdiction": "XX"}, CHAT),
        ({k: v for k, v in good.items() if k != "x-warden-decision-type"}, CHAT),
        (good, {"model": "x", "messages": []}),
        (good, b'{"model": "x", "messages": [], "seed": ' + b"9" * 4301 + b"}"),
        (good, b'{"model": "x", "messages": [], "model": "y"}'),
        (good, '{"model": "x", "messages": []}'.encode("utf-16")),
        (good, b'{"model": "x", "messages": [], "x": ' + b"[" * 9000 + b"]" * 9000 + b"}"),
        (
            good,
            b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], "x": '
            + b"[" * 300
            + b"]" * 300
            + b"}",
        ),
        (good, CHAT),  # no model endpoint is running: EU goes to review (409)
        (
            {
                "X-API-Key": key,
                "X-Warden-Jurisdiction": "US",
                "X-Warden-Decision-Type": "assistant_chat",
            },
            CHAT,
        ),
    ]


def _post(client: TestClient, headers: dict[str, str], body: Any) -> Any:
    if isinstance(body, bytes):
        return client.post("/v1/chat/completions", content=body, headers=headers)
    return client.post("/v1/chat/completions", json=body, headers=headers)


def test_both_doors_answer_alike(doors: tuple[TestClient, TestClient, str]) -> None:
    inner, outer, key = doors
    for headers, body in _cases(key):
        a, b = _post(inner, headers, body), _post(outer, headers, body)
        assert a.status_code == b.status_code != 200, (headers, a.text, b.text)
        assert a.status_code != 500, (headers, a.text)
        assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
        error_a, error_b = a.json()["error"], b.json()["error"]
        # a decision id (a refusal or review that was recorded) is in the body and header
        assert error_a.pop("decision_id", None) == a.headers.get("X-Warden-Decision-Id")
        assert error_b.pop("decision_id", None) == b.headers.get("X-Warden-Decision-Id")
        assert ("X-Warden-Decision-Id" in a.headers) == ("X-Warden-Decision-Id" in b.headers)
        assert error_a == error_b


def test_other_paths_and_methods_pass_through(doors: tuple[TestClient, TestClient, str]) -> None:
    inner, outer, _ = doors
    assert (
        outer.get("/v1/chat/completions").status_code
        == inner.get("/v1/chat/completions").status_code
        == 405
    )
    assert outer.get("/healthz").json()["status"] == "ok"


def test_oversized_body_is_413_naming_the_body(doors: tuple[TestClient, TestClient, str]) -> None:
    _, outer, key = doors
    big = b'{"model": "x", "messages": [], "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = outer.post(
        "/v1/chat/completions", content=big, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["field"] == "body"
    assert response.json()["error"]["code"] == "request.too_large"
