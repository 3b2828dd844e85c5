"""The upstream simulator over real HTTP, as a real subprocess, driven by the official
`openai` client: protocol shape, schema-valid claims-triage JSON, failures, malformed JSON,
its own access log (incl. the decision id header), and a restart after kill -9."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.helpers_server import run_cli
from tests.helpers_upstream import Upstream, start_upstream

TRIAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "triage": {"type": "string", "enum": ["fast_track", "standard", "investigate"]},
        "payout_band": {"type": "string", "enum": ["none", "low", "medium", "high"]},
        "proposed_payout": {"type": "number", "minimum": 0},
        "reasons": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 6},
    },
    "required": ["triage", "payout_band", "proposed_payout", "reasons"],
    "additionalProperties": False,
}

NESTED_SCHEMA: dict[str, Any] = {
    "$defs": {
        "party": {
            "type": "object",
            "properties": {
                "role": {"enum": ["claimant", "witness", "third_party"]},
                "age": {"type": "integer", "minimum": 18, "maximum": 99},
            },
            "required": ["role", "age"],
        }
    },
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["auto", "home", "travel"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "severity": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 6},
        "parties": {"type": "array", "items": {"$ref": "#/$defs/party"}, "minItems": 2},
        "tags": {
            "type": "array",
            "items": {"type": "string", "enum": ["water", "theft", "glass", "fire"]},
            "minItems": 2,
            "uniqueItems": True,
        },
        "code": {"type": "string", "minLength": 12, "maxLength": 16},
        "note": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 40}]},
        "findings": {
            "type": "array",
            "items": {"type": "string", "maxLength": 30},
            "minItems": 1,
            "maxItems": 2,
        },
        "incident": {
            "type": "object",
            "properties": {
                "date": {"type": "string", "format": "date"},
                "police": {"type": "boolean"},
            },
            "required": ["date", "police"],
        },
    },
    "required": [
        "category",
        "confidence",
        "severity",
        "parties",
        "tags",
        "code",
        "incident",
        "findings",
    ],
}


def claim(amount: str, description: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You triage insurance claims. Answer in JSON."},
        {"role": "user", "content": f"Claim amount: {amount} EUR\nDescription: {description}"},
    ]


def triage_format(schema: dict[str, Any] = TRIAGE_SCHEMA) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "claims_triage", "schema": schema}}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with start_upstream("eu-west-1", log_dir=tmp_path_factory.mktemp("sim"), seed=7) as up:
        yield up


@pytest.fixture
def client(upstream: Upstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=upstream.url, api_key="sim-key", max_retries=0) as c:
        yield c


def triage(client: openai.OpenAI, amount: str, description: str) -> dict[str, Any]:
    response = client.chat.completions.create(
        model="sim-triage-1",
        messages=claim(amount, description),  # type: ignore[arg-type]
        response_format=triage_format(),
    )
    content = response.choices[0].message.content
    assert content is not None
    value: dict[str, Any] = json.loads(content)
    jsonschema.validate(value, TRIAGE_SCHEMA)
    return value


def test_claims_triage_is_schema_valid_and_plausible(client: openai.OpenAI) -> None:
    small = triage(client, "312.40", "my phone screen cracked when I dropped it")
    assert small["triage"] == "fast_track"
    assert small["proposed_payout"] == 312.40
    assert small["payout_band"] == "low"

    medium = triage(client, "4,200.00", "water damage in the kitchen after a pipe burst")
    assert medium["triage"] == "standard"
    assert 0 < medium["proposed_payout"] <= 4200.0
    assert medium["payout_band"] == "medium"

    large = triage(client, "25000", "car written off in a motorway collision")
    assert large["triage"] == "investigate"
    assert any("above 10,000.00" in r for r in large["reasons"])

    fraud = triage(client, "450", "laptop stolen from my car, I have no receipt")
    assert fraud["triage"] == "investigate"
    assert fraud["proposed_payout"] <= 450
    assert any("'stolen'" in r for r in fraud["reasons"])
    assert any("'no receipt'" in r for r in fraud["reasons"])


def test_answers_are_deterministic_per_request(client: openai.OpenAI) -> None:
    first = triage(client, "4,200.00", "water damage in the kitchen after a pipe burst")
    again = triage(client, "4,200.00", "water damage in the kitchen after a pipe burst")
    other = triage(client, "4,300.00", "water damage in the kitchen after a pipe burst")
    assert first == again
    assert other != first


def test_response_shape_usage_and_simulator_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="anything",
        messages=claim("90", "lost luggage"),  # type: ignore[arg-type]
    )
    assert raw.headers["x-simulator"].startswith("warden-upstream-simulator; region=eu-west-1")
    assert raw.headers["server"] == "warden-upstream-simulator"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-sim-")
    assert completion.model == "sim-triage-1"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert "fast-track" in (completion.choices[0].message.content or "")
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_nested_schema_with_refs_enums_bounds(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="sim-triage-1",
        messages=[{"role": "user", "content": "Classify: burst pipe flooded the cellar"}],
        response_format=triage_format(NESTED_SCHEMA),
    )
    value = json.loads(response.choices[0].message.content or "")
    jsonschema.validate(value, NESTED_SCHEMA)


def test_json_object_text_max_tokens_and_stream(client: openai.OpenAI) -> None:
    obj = client.chat.completions.create(
        model="m", messages=claim("80", "broken glasses"), response_format={"type": "json_object"}
    )
    value = json.loads(obj.choices[0].message.content or "")
    assert value["triage"] == "fast_track" and value["proposed_payout"] == 80

    cut = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello there"}], max_tokens=3
    )
    assert cut.choices[0].finish_reason == "length"
    assert len(cut.choices[0].message.content or "") <= 12

    whole = client.chat.completions.create(model="m", messages=claim("80", "broken glasses"))
    stream = client.chat.completions.create(
        model="m",
        messages=claim("80", "broken glasses"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_models_health_and_bad_requests(upstream: Upstream, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["sim-triage-1"]
    health = httpx.get(f"{upstream.base}/health").json()
    assert health == {
        "status": "ok",
        "simulator": True,
        "region": "eu-west-1",
        "model": "sim-triage-1",
    }
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[])
    assert info.value.body["param"] == "messages"  # type: ignore[index]
    bad = httpx.post(f"{upstream.url}/chat/completions", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    schema_missing = httpx.post(
        f"{upstream.url}/chat/completions",
        json={
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema"},
        },
    )
    assert schema_missing.status_code == 400
    assert schema_missing.json()["error"]["param"] == "response_format.json_schema"
    assert httpx.get(f"{upstream.url}/nowhere").status_code == 404
    assert httpx.get(f"{upstream.url}/chat/completions").status_code == 405


def test_access_log_names_request_decision_region(upstream: Upstream) -> None:
    decision_id = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    with httpx.Client(base_url=upstream.url) as http:
        answered = http.post(
            "/chat/completions",
            json={"model": "sim-triage-1", "messages": claim("10", "scratched phone")},
            headers={"X-Warden-Decision-Id": decision_id},
        )
    assert answered.status_code == 200
    entries = [e for e in upstream.access_log_entries() if e["decision_id"] == decision_id]
    assert len(entries) == 1
    entry = entries[0]
    assert set(entry) == {
        "ts",
        "request_id",
        "decision_id",
        "region",
        "path",
        "status",
        "latency_ms",
        "model",
    }
    assert entry["request_id"] == answered.headers["x-request-id"]
    assert entry["region"] == "eu-west-1" and entry["status"] == 200
    assert entry["model"] == "sim-triage-1" and entry["latency_ms"] >= 0
    assert entry["ts"].endswith("+00:00")
    undecided = upstream.access_log_entries(path="/health")
    assert undecided and all(e["decision_id"] is None for e in undecided)


def test_failure_rate_and_bad_json_rate(tmp_path: Path) -> None:
    with (
        start_upstream(
            "us-east-1", log_dir=tmp_path, failure_rate=0.3, bad_json_rate=0.5, seed=3
        ) as up,
        openai.OpenAI(base_url=up.url, api_key="k", max_retries=0) as client,
    ):
        outcomes = {"503": 0, "malformed": 0, "valid": 0}
        for i in range(80):
            try:
                response = client.chat.completions.create(
                    model="m",
                    messages=claim(f"{100 + i}", "bent bicycle wheel"),  # type: ignore[arg-type]
                    response_format=triage_format(),
                )
            except openai.InternalServerError as exc:
                assert exc.status_code == 503
                assert exc.body["code"] == "simulator_unavailable"  # type: ignore[index]
                outcomes["503"] += 1
                continue
            try:
                jsonschema.validate(
                    json.loads(response.choices[0].message.content or ""), TRIAGE_SCHEMA
                )
                outcomes["valid"] += 1
            except json.JSONDecodeError:
                outcomes["malformed"] += 1
        statuses = [e["status"] for e in up.access_log_entries()]
    # 80 draws at 30 % failures, then 50 % of the rest malformed: far from 0 and from all
    assert 8 <= outcomes["503"] <= 40, outcomes
    assert 8 <= outcomes["malformed"] <= 45, outcomes
    assert outcomes["valid"] >= 8, outcomes
    assert statuses.count(503) == outcomes["503"]
    assert statuses.count(200) == outcomes["malformed"] + outcomes["valid"]


def test_kill_and_restart_appends_to_the_same_log(tmp_path: Path) -> None:
    up = start_upstream("eu-central-1", log_dir=tmp_path)
    try:
        for i in range(3):
            httpx.post(
                f"{up.url}/chat/completions",
                json={"model": "m", "messages": claim("5", "x")},
                headers={"X-Warden-Decision-Id": f"before-{i}"},
            ).raise_for_status()
        port = up.port
        up.kill()
        assert not up.running
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{up.base}/health", timeout=1)
        before = [e["decision_id"] for e in up.access_log_entries()]
        assert before == ["before-0", "before-1", "before-2"]  # kill -9 lost nothing answered
        up.restart()
        assert up.port == port
        httpx.post(
            f"{up.url}/chat/completions",
            json={"model": "m", "messages": claim("5", "x")},
            headers={"X-Warden-Decision-Id": "after"},
        ).raise_for_status()
        entries = up.access_log_entries()
        assert [e["decision_id"] for e in entries] == [*before, "after"]
        assert len({e["request_id"] for e in entries}) == 4
    finally:
        up.stop()


def test_cli_rejects_bad_options() -> None:
    result = run_cli(
        "dev", "upstream", "--region", "eu-west-1", "--port", "1", "--failure-rate", "2"
    )
    assert result.returncode == 2
    assert "--failure-rate" in result.stderr
    result = run_cli("dev", "upstream", "--port", "8000")
    assert result.returncode == 2 and "--region" in result.stderr


def test_pipelined_requests_answer_in_order_and_expect_continue(upstream: Upstream) -> None:
    body = json.dumps({"model": "m", "messages": claim("20", "torn jacket")}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Warden-Decision-Id: pipe-%d\r\nContent-Length: %d\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=10) as sock:
        sock.sendall(b"".join(request % (i, len(body)) + body for i in range(3)))
        received = b""
        while received.count(b"HTTP/1.1 200 OK") < 3 or not received.endswith(b"}}"):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        ids = [
            line.split(b": ")[1]
            for line in received.split(b"\r\n")
            if line.startswith(b"x-request-id")
        ]
        assert ids == sorted(ids) and len(set(ids)) == 3
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        assert b"HTTP/1.1 200 OK" in sock.recv(65536)
    logged = [e["decision_id"] for e in upstream.access_log_entries()]
    assert [d for d in logged if d and d.startswith("pipe-")] == ["pipe-0", "pipe-1", "pipe-2"]
