"""The HTTP API through FastAPI's test client, on a real SQLite audit store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLE_POLICY, payment, review_payment
from warden.api.app import create_app
from warden.auth import Role
from warden.gateway import Gateway, verify_proof_document


@pytest.fixture
def api(data_dir: Path) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    gateway = Gateway.open(data_dir, EXAMPLE_POLICY)
    assert gateway.keyring is not None
    keys = {
        role.value: {"X-API-Key": gateway.keyring.create(f"{role.value}-1", role)} for role in Role
    }
    with TestClient(create_app(gateway)) as client:
        yield client, keys
    gateway.close()


def test_decide_then_read_record_proof_and_checkpoint(api: Any) -> None:
    client, keys = api
    response = client.post("/v1/decisions", json=payment(), headers=keys["service"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["X-Warden-Decision-Id"] == body["decision_id"]
    assert body["outcome"] == "auto_approve"

    record = client.get(f"/v1/decisions/{body['decision_id']}", headers=keys["auditor"]).json()
    assert record["entries"][0]["body"]["caller"] == {"name": "service-1", "role": "service"}

    proof = client.get(f"/v1/decisions/{body['decision_id']}/proof", headers=keys["auditor"])
    assert proof.status_code == 200
    checkpoint = client.get("/v1/audit/checkpoint", headers=keys["auditor"]).json()
    assert verify_proof_document(proof.json(), checkpoint["vkey"]).startswith(
        f"entry {body['audit_seq']} is included"
    )
    assert checkpoint["note"].startswith(checkpoint["origin"] + "\n")


def test_people_reading_any_decision_see_personal_data_masked_unless_policy_allows(
    api: Any,
) -> None:
    """`review.raw_pii_roles` (admin in the example policy) governs the API as it does the
    workbench; a service reads back its own request raw."""
    client, keys = api
    email = "jane.doe@example.com"
    body = client.post(
        "/v1/decisions", json=payment(customer_id=email), headers=keys["service"]
    ).json()
    url = f"/v1/decisions/{body['decision_id']}"
    checkpoint = client.get("/v1/audit/checkpoint", headers=keys["auditor"]).json()
    for role in ("reviewer", "auditor"):
        record = client.get(url, headers=keys[role]).json()
        assert email not in str(record) and "<EMAIL_ADDRESS>" in str(record)
        assert record["pii_masked"] >= 1
        proof = client.get(f"{url}/proof", headers=keys[role]).json()
        assert proof["entry"] is None and email not in str(proof)
        assert "masked" in verify_proof_document(proof, checkpoint["vkey"])
    for role in ("admin", "service"):
        record = client.get(url, headers=keys[role]).json()
        assert email in str(record) and "pii_masked" not in record
        proof = client.get(f"{url}/proof", headers=keys[role]).json()
        assert email in proof["entry"]
        assert "masked" not in verify_proof_document(proof, checkpoint["vkey"])


def test_authentication_and_roles_per_route(api: Any) -> None:
    client, keys = api
    assert client.post("/v1/decisions", json=payment()).status_code == 401
    bad = client.post("/v1/decisions", json=payment(), headers={"X-API-Key": "nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "auth.unauthenticated"
    for role in ("auditor", "reviewer"):
        denied = client.post("/v1/decisions", json=payment(), headers=keys[role])
        assert denied.status_code == 403, role
    queued = client.post("/v1/decisions", json=review_payment(), headers=keys["service"]).json()
    assert client.get("/v1/review/queue", headers=keys["service"]).status_code == 403
    assert client.get("/v1/review/queue", headers=keys["auditor"]).status_code == 200
    decision = {
        "outcome": "approve",
        "rationale": "Known customer travelling, confirmed.",
        "label": "negative",
    }
    url = f"/v1/review/{queued['decision_id']}"
    for role in ("auditor", "service"):
        assert client.post(f"{url}/claim", headers=keys[role]).status_code == 403, role
        assert client.post(url, json=decision, headers=keys[role]).status_code == 403, role
    unclaimed = client.post(url, json=decision, headers=keys["reviewer"])
    assert unclaimed.status_code == 409
    assert unclaimed.json()["error"]["code"] == "review.claim_required"
    assert client.post(f"{url}/claim", headers=keys["reviewer"]).status_code == 200
    taken = client.post(f"{url}/claim", headers=keys["admin"])
    assert taken.status_code == 409 and "claimed by reviewer-1" in taken.json()["error"]["message"]
    assert client.post(url, json=decision, headers=keys["reviewer"]).status_code == 200
    assert client.post(url, json=decision, headers=keys["admin"]).status_code == 409


def test_review_queue_and_review_flow(api: Any) -> None:
    client, keys = api
    queued = client.post("/v1/decisions", json=review_payment(), headers=keys["service"]).json()
    items = client.get("/v1/review/queue", headers=keys["reviewer"]).json()["items"]
    item = next(i for i in items if i["decision_id"] == queued["decision_id"])
    assert item["reasons"] and item["sla_due_at"] > item["received_at"]
    assert item["status"] == "open" and item["claimed_by"] is None
    url = f"/v1/review/{queued['decision_id']}"
    claimed = client.post(f"{url}/claim", headers=keys["reviewer"]).json()
    assert claimed["claimed_by"] == "reviewer-1" and claimed["expires_at"]
    items = client.get("/v1/review/queue", headers=keys["auditor"]).json()["items"]
    item = next(i for i in items if i["decision_id"] == queued["decision_id"])
    assert item["status"] == "claimed" and item["claimed_by"] == "reviewer-1"
    missing = client.post(
        url, json={"outcome": "approve", "label": "negative"}, headers=keys["reviewer"]
    )
    assert missing.status_code == 422
    assert missing.json()["error"]["field"] == "rationale"
    unlabeled = client.post(
        url, json={"outcome": "approve", "rationale": "Known customer."}, headers=keys["reviewer"]
    )
    assert unlabeled.status_code == 422 and unlabeled.json()["error"]["field"] == "label"
    ok = client.post(
        url,
        json={
            "outcome": "decline",
            "rationale": "Card reported stolen today.",
            "label": "positive",
        },
        headers=keys["reviewer"],
    )
    assert ok.status_code == 200 and ok.json()["status"] == "final"
    record = client.get(f"/v1/decisions/{queued['decision_id']}", headers=keys["auditor"]).json()
    assert [e["kind"] for e in record["entries"]] == ["decision", "review_claim", "review"]
    items = client.get("/v1/review/queue", headers=keys["auditor"]).json()["items"]
    assert queued["decision_id"] not in [i["decision_id"] for i in items]


def test_four_eyes_over_the_json_api(api: Any) -> None:
    client, keys = api
    reviewer2 = {"X-API-Key": client.app.state.gateway.keyring.create("reviewer-2", Role.REVIEWER)}
    big = client.post(
        "/v1/decisions", json=review_payment(amount=25_000.0), headers=keys["service"]
    ).json()
    assert big["outcome"] == "review"
    url = f"/v1/review/{big['decision_id']}"
    body = {"outcome": "decline", "rationale": "Account takeover pattern.", "label": "positive"}
    assert client.post(f"{url}/claim", headers=keys["reviewer"]).status_code == 200
    first = client.post(url, json=body, headers=keys["reviewer"]).json()
    assert first["status"] == "pending_second_review"
    items = client.get("/v1/review/queue", headers=keys["reviewer"]).json()["items"]
    item = next(i for i in items if i["decision_id"] == big["decision_id"])
    assert item["status"] == "awaiting_second_review" and item["first_reviewer"] == "reviewer-1"
    again = client.post(f"{url}/claim", headers=keys["reviewer"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "review.four_eyes"
    case = client.get(url, headers=keys["auditor"]).json()
    assert case["status"] == "awaiting_second_review" and case["four_eyes"]
    assert [(h["kind"], h["reviewer"]["name"]) for h in case["history"]] == [
        ("review_claim", "reviewer-1"),
        ("review_first", "reviewer-1"),
    ]
    assert case["history"][1]["label"] == "positive"
    assert client.get(url, headers=keys["service"]).status_code == 403
    assert client.post(f"{url}/claim", headers=reviewer2).status_code == 200
    final = client.post(url, json=body, headers=reviewer2).json()
    assert final["status"] == "final" and final["reviewer"] == "reviewer-2"
    record = client.get(f"/v1/decisions/{big['decision_id']}", headers=keys["auditor"]).json()
    kinds = [e["kind"] for e in record["entries"]]
    assert kinds == ["decision", "review_claim", "review_first", "review_claim", "review"]
    last = record["entries"][-1]["body"]
    assert last["first_review"]["reviewer"] == "reviewer-1" and last["first_review"]["agrees"]
    assert last["four_eyes"] == {"field": "amount", "value": 25_000.0, "above": 10_000.0}


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        (payment(jurisdiction=None), "jurisdiction", "residency.unlabeled"),
        (payment(jurisdiction="XX"), "jurisdiction", "residency.unknown_jurisdiction"),
        (payment(amount="lots"), "inputs.amount", "request.invalid_inputs"),
        ({**payment(), "colour": "red"}, "colour", "request.invalid"),
        ({"jurisdiction": "EU", "inputs": {}}, "decision_type", "request.invalid"),
    ],
)
def test_bad_requests_get_422_naming_the_field(api: Any, body: Any, field: str, code: str) -> None:
    client, keys = api
    response = client.post("/v1/decisions", json=body, headers=keys["service"])
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["code"] == code


def test_invalid_json_is_a_422(api: Any) -> None:
    client, keys = api
    response = client.post(
        "/v1/decisions",
        content=b"{not json",
        headers={**keys["service"], "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["error"]["message"]


def test_idempotency_header(api: Any) -> None:
    client, keys = api
    headers = {**keys["service"], "Idempotency-Key": "order-77"}
    first = client.post("/v1/decisions", json=payment(), headers=headers).json()
    again = client.post("/v1/decisions", json=payment(), headers=headers).json()
    assert again["decision_id"] == first["decision_id"] and again["replayed"]
    other = client.post("/v1/decisions", json=payment(amount=1.0), headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency.conflict"


def test_unknown_decision_is_404(api: Any) -> None:
    client, keys = api
    response = client.get("/v1/decisions/0190-nope", headers=keys["auditor"])
    assert response.status_code == 404


def test_health_metrics_and_openapi(api: Any) -> None:
    client, keys = api
    client.post("/v1/decisions", json=payment(), headers=keys["service"])
    client.post("/v1/decisions", json=payment(jurisdiction=None), headers=keys["service"])
    assert client.get("/healthz").json()["status"] == "ok"
    text = client.get("/metrics").text
    for name in (
        "warden_decisions_total{",
        "warden_decision_latency_seconds_bucket",
        "warden_audit_commit_seconds_bucket",
        "warden_unlabeled_requests_total",
    ):
        assert name in text, name
    assert 'band="auto_approve",decision_type="payment_fraud"' in text
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/decisions",
        "/v1/decisions/{decision_id}",
        "/v1/decisions/{decision_id}/proof",
        "/v1/audit/checkpoint",
        "/v1/review/queue",
        "/v1/review/{decision_id}",
        "/v1/review/{decision_id}/claim",
        "/v1/review/{decision_id}/release",
    ):
        assert path in spec["paths"], path


def test_whoami_names_the_key_role_and_permissions(api: Any) -> None:
    client, keys = api
    red = client.get("/v1/whoami", headers=keys["redteam"])
    assert red.status_code == 200
    assert red.json() == {
        "name": "redteam-1",
        "role": "redteam",
        "permissions": ["decide", "read_decision"],
        "exercise": True,
    }
    service = client.get("/v1/whoami", headers=keys["service"]).json()
    assert service["role"] == "service" and service["exercise"] is False
    assert client.get("/v1/whoami").status_code == 401


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        (b'"amount": 123456789012345678901234567890', "inputs.amount", "outside"),
        (b'"amount": NaN', "inputs.amount", "not a JSON number"),
        (b'"amount": 1e400', "inputs.amount", "not a JSON number"),
        (b'"note": "x\\ud800y"', "inputs.note", "lone surrogate"),
        (b'"k\\udc00": 1', 'inputs."k\\udc00"', "the key is not valid Unicode"),
    ],
)
def test_values_json_cannot_keep_are_a_422_naming_the_field_and_write_nothing(
    api: Any, raw: bytes, field: str, says: str
) -> None:
    """A schema-valid body holding a number or text canonical JSON cannot write (found by
    fuzzing the OpenAPI document: a 30-digit integer was a 500)."""
    client, keys = api
    before = client.get("/v1/audit/checkpoint", headers=keys["auditor"]).json()["size"]
    body = b'{"decision_type": "payment_fraud", "jurisdiction": "EU", "inputs": {' + raw + b"}}"
    response = client.post(
        "/v1/decisions",
        content=body,
        headers={**keys["service"], "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "request.invalid" and error["field"] == field, error
    assert error["message"].startswith(f"{field}: ") and says in error["message"], error
    after = client.get("/v1/audit/checkpoint", headers=keys["auditor"]).json()["size"]
    assert after == before


@pytest.mark.parametrize(
    ("value", "field", "says"),
    [
        (b"9" * 4301, "body", "an integer literal has more than 4300 digits"),
        (b"[" * 300 + b"]" * 300, "inputs.x[0][0][0]", "nested deeper than 254 levels"),
        (b"[" * 100_000 + b"]" * 100_000, "body", "nested too deeply to read"),
    ],
)
def test_bodies_json_loads_cannot_take_are_a_422_and_write_nothing(
    api: Any, value: bytes, field: str, says: str
) -> None:
    """Two more ways `json.loads` or the canonical form fail besides bad syntax (each was a
    500): an integer literal too long to convert, arrays nested too deep."""
    client, keys = api
    before = client.get("/v1/audit/checkpoint", headers=keys["auditor"]).json()["size"]
    body = b'{"decision_type": "payment_fraud", "jurisdiction": "EU", "inputs": {"x": '
    response = client.post(
        "/v1/decisions",
        content=body + value + b"}}",
        headers={**keys["service"], "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"].startswith(field) and says in error["message"], error
    after = client.get("/v1/audit/checkpoint", headers=keys["auditor"]).json()["size"]
    assert after == before


def test_starlettes_own_errors_come_in_the_warden_error_form(api: Any) -> None:
    client, keys = api
    missing = client.get("/v1/nowhere", headers=keys["service"])
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    wrong = client.put("/v1/decisions", headers=keys["service"])
    assert wrong.status_code == 405 and "POST" in wrong.headers["allow"]
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    latin1 = client.post(
        "/v1/review/0190-nope",
        content='{"outcome": "approve", "rationale": "déjà vu"}'.encode("latin-1"),
        headers={**keys["reviewer"], "Content-Type": "application/json"},
    )
    assert latin1.status_code == 422, latin1.text
    assert latin1.json()["error"] == {
        "code": "request.invalid",
        "message": "body: not valid UTF-8",  # read as `POST /v1/decisions` reads its body
        "field": "body",
    }


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_openapi_document_is_complete_and_says_what_the_server_enforces(api: Any) -> None:
    """Every reference resolves (a generated client or a fuzzer can load it), the chat
    front door is described, errors are documented in the form they come, and the
    rationale's minimum length is the policy's."""
    client, keys = api
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    refs = set(_refs(spec))
    assert refs, "no references at all"
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert "ToolCallBody" in schemas
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    headers = {p["name"] for p in chat["parameters"] if p["in"] == "header"}
    assert {"X-Warden-Jurisdiction", "X-Warden-Data-Class", "X-Warden-Decision-Type"} <= headers
    by_name = {p["name"]: p for p in chat["parameters"]}
    assert by_name["X-Warden-Decision-Type"]["schema"]["enum"] == ["assistant_chat"]
    assert by_name["X-Warden-Jurisdiction"]["schema"]["enum"] == ["EU", "UK", "US"]
    assert by_name["X-Warden-Data-Class"]["required"] is False
    messages = chat["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert messages["messages"]["contains"]["properties"]["role"] == {"const": "user"}
    assert "X-Warden-Decision-Id" in chat["responses"]["200"]["headers"]
    error_ref = chat["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    error_schema = schemas[error_ref.rsplit("/", 1)[1]]
    assert error_schema["required"] == ["error"]
    body_fields = set(schemas["ErrorBody"]["properties"])
    real = client.post("/v1/decisions", json=payment(jurisdiction="XX"), headers=keys["service"])
    assert set(real.json()) == {"error"} and set(real.json()["error"]) <= body_fields
    decisions_422 = spec["paths"]["/v1/decisions"]["post"]["responses"]["422"]
    assert decisions_422["content"]["application/json"]["schema"]["$ref"] == error_ref
    rationale = schemas["ReviewRequestBody"]["properties"]["rationale"]
    assert rationale["minLength"] == 10  # examples/policy.yaml: review.min_rationale_chars
    calibrate = schemas["CalibrateRequestBody"]["properties"]["decision_type"]
    assert calibrate["enum"] == ["claims_intake", "payment_fraud"]  # those with costs


def test_the_decision_body_in_the_openapi_document_is_the_policys(api: Any) -> None:
    """One variant per decision type with that type's inputs, tools, jurisdictions and data
    classes: a request the server accepts validates against it, a typo does not."""
    from jsonschema import Draft202012Validator

    client, keys = api
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/decisions"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    names = set(body["discriminator"]["mapping"])
    assert names == {"payment_fraud", "claims_intake", "claims_triage", "assistant_chat"}
    validator = Draft202012Validator({**body, "components": spec["components"]})
    good = payment()
    assert client.post("/v1/decisions", json=good, headers=keys["service"]).status_code == 200
    assert validator.is_valid(good)
    for bad in (
        payment(jurisdiction="XX"),
        payment(jurisdiction=None),
        payment(amount="lots"),
        {**payment(), "decision_type": "payment_frad"},
        {**payment(), "data_class": "secret"},
        {**payment(), "tool_calls": [{"name": "issue_refund", "arguments": {}}]},
    ):
        assert not validator.is_valid(bad), bad
        answer = client.post("/v1/decisions", json=bad, headers=keys["service"])
        assert answer.status_code == 422, (bad, answer.text)
    schemas = spec["components"]["schemas"]
    intake = schemas["DecisionRequest_claims_intake"]["properties"]["tool_calls"]
    calls = intake["anyOf"][0]["items"]["oneOf"]
    assert [c["properties"]["name"]["const"] for c in calls] == ["issue_refund"]


def test_a_wrong_method_names_every_method_of_the_path(api: Any) -> None:
    """GET and POST of /v1/review/{id} are two routes: Starlette's 405 named only one."""
    client, keys = api
    response = client.options("/v1/review/0190-nope", headers=keys["reviewer"])
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    queue = client.options("/v1/review/queue", headers=keys["reviewer"])
    assert queue.status_code == 405 and queue.headers["allow"] == "GET"


def test_an_unknown_data_class_is_refused_also_where_no_model_is_called(api: Any) -> None:
    client, keys = api
    response = client.post(
        "/v1/decisions", json={**payment(), "data_class": "secret"}, headers=keys["service"]
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "residency.unknown_data_class" and error["field"] == "data_class"
    assert "this policy knows: public, internal, confidential, personal" in error["message"]


def test_a_key_twice_or_a_body_not_in_utf8_is_a_422(api: Any) -> None:
    """`json.loads` keeps the last of two equal keys; a proxy may read the first. Warden
    refuses the ambiguity (a second `jurisdiction` must not re-route a request)."""
    client, keys = api
    headers = {**keys["service"], "Content-Type": "application/json"}
    twice = b'{"decision_type": "payment_fraud", "jurisdiction": "EU", "inputs": {}, '
    twice += b'"jurisdiction": "US"}'
    response = client.post("/v1/decisions", content=twice, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith('body: key "jurisdiction" appears twice')
    utf16 = json.dumps(payment()).encode("utf-16")
    response = client.post("/v1/decisions", content=utf16, headers=headers)
    assert response.status_code == 422 and "not valid UTF-8" in response.text


def test_a_wrong_method_behind_a_root_path_still_names_the_methods(data_dir: Path) -> None:
    with Gateway.open(data_dir, EXAMPLE_POLICY) as gateway:
        client = TestClient(create_app(gateway), root_path="/warden")
        response = client.put("/warden/v1/decisions")
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        static = TestClient(create_app(gateway)).post("/workbench/static/README.txt")
        assert static.status_code == 405 and "GET" in static.headers["allow"]


def test_the_chat_body_in_the_openapi_document_takes_what_the_front_door_takes(
    api: Any,
) -> None:
    from jsonschema import Draft202012Validator

    client, _ = api
    spec = client.get("/openapi.json").json()
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    validator = Draft202012Validator(chat["requestBody"]["content"]["application/json"]["schema"])
    user = {"role": "user", "content": "Where is my claim?"}
    for body in (
        {"model": "x", "messages": [user]},
        {"messages": [user]},  # the model is the endpoint's
        {"messages": [{"role": "developer", "content": "Be brief."}, user]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        {"messages": [{"role": "assistant"}, user], "stream": False},
    ):
        assert validator.is_valid(body), body
    for body in (
        {"messages": [{"role": "system", "content": "x"}]},  # no user message
        {"messages": [user], "stream": True},
        {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
    ):
        assert not validator.is_valid(body), body


def test_a_tool_schema_with_local_definitions_resolves_inside_the_document(
    tmp_path: Path,
) -> None:
    """A policy's tool schema may use `$defs`; embedded as it is, its `#/$defs/…` would
    point into the OpenAPI document (nowhere). It resolves inside its own schema."""
    from jsonschema import Draft202012Validator

    text = EXAMPLE_POLICY.read_text(encoding="utf-8")
    plain = "            reference: {type: string, maxLength: 64}\n"
    assert plain in text
    text = text.replace(plain, '            reference: {$ref: "#/$defs/reference"}\n').replace(
        "          required: [amount, currency]\n",
        "          required: [amount, currency]\n"
        "          $defs: {reference: {type: string, maxLength: 64}}\n",
        1,
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(text, encoding="utf-8")
    with Gateway.open(tmp_path / "data", policy) as gateway:
        spec = TestClient(create_app(gateway)).get("/openapi.json").json()
        example = gateway.policy.decision_types["claims_intake"].spec.example_inputs
    body = spec["paths"]["/v1/decisions"]["post"]["requestBody"]["content"]["application/json"]
    validator = Draft202012Validator({**body["schema"], "components": spec["components"]})

    def intake(reference: str) -> dict[str, Any]:
        arguments = {"amount": 10.0, "currency": "EUR", "reference": reference}
        call = {"name": "issue_refund", "arguments": arguments}
        return {
            "decision_type": "claims_intake",
            "jurisdiction": "EU",
            "inputs": example,
            "tool_calls": [call],
        }

    assert validator.is_valid(intake("R-1")), list(validator.iter_errors(intake("R-1")))
    assert not validator.is_valid(intake("R" * 65))
