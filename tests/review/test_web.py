"""The workbench's pages and forms through FastAPI's test client on a real audit store:
log-in, cookie flags, CSRF on every POST, roles (403 page, auditor read-only), PII masking."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLE_POLICY, SERVICE, review_payment
from warden.api.app import create_app
from warden.auth import Role
from warden.gateway import Gateway

CLAIM = {
    "decision_type": "claims_intake",
    "jurisdiction": "EU",
    "inputs": {
        "policy_number": "P-204518",
        "claim_type": "household",
        "claim_amount": 12_000.0,
        "currency": "EUR",
        "description": "Water damage in the kitchen. Please reach me at jane.doe@example.com "
        "and pay to IBAN DE89 3704 0044 0532 0130 00.",
    },
}


@pytest.fixture
def bench(data_dir: Path) -> Iterator[tuple[TestClient, dict[str, str], Gateway]]:
    gateway = Gateway.open(data_dir, EXAMPLE_POLICY)
    assert gateway.keyring is not None
    keys = {role.value: gateway.keyring.create(f"{role.value}-1", role) for role in Role}
    keys["reviewer2"] = gateway.keyring.create("reviewer-2", Role.REVIEWER)
    with TestClient(create_app(gateway)) as client:
        yield client, keys, gateway
    gateway.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def log_in(client: TestClient, key: str) -> str:
    client.cookies.clear()
    page = client.get("/workbench/login")
    response = client.post(
        "/workbench/login",
        data={"csrf": csrf_of(page.text), "api_key": key, "next": "/workbench/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/workbench/").text)


def test_login_sets_a_strict_httponly_signed_session(bench: Any) -> None:
    client, keys, _ = bench
    first = client.get("/workbench/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/workbench/login")
    page = client.get("/workbench/login")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    token = csrf_of(page.text)
    bad = client.post("/workbench/login", data={"csrf": token, "api_key": "wk_nope"})
    assert bad.status_code == 401 and "Unknown API key" in bad.text
    page = client.get("/workbench/login")
    service = client.post(
        "/workbench/login", data={"csrf": csrf_of(page.text), "api_key": keys["service"]}
    )
    assert service.status_code == 401 and "Service keys cannot use the workbench" in service.text
    # no login token from the form page: refused (CSRF on the log-in form too)
    client.cookies.clear()
    forged = client.post("/workbench/login", data={"csrf": "x", "api_key": keys["reviewer"]})
    assert forged.status_code == 401 and "expired" in forged.text
    page = client.get("/workbench/login")
    ok = client.post(
        "/workbench/login",
        data={"csrf": csrf_of(page.text), "api_key": keys["reviewer"], "next": "https://evil/"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/workbench/"  # no open redirect
    cookie = next(c for c in ok.headers.get_list("set-cookie") if c.startswith("warden_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert keys["reviewer"] not in cookie  # the key itself never goes into the cookie
    assert client.get("/workbench/").status_code == 200
    # a tampered cookie is no session
    value = cookie.split(";")[0].split("=", 1)[1]
    client.cookies.clear()  # else the jar sends the real cookie beside the tampered one
    client.cookies.set("warden_session", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert client.get("/workbench/", follow_redirects=False).status_code == 303


def test_every_post_needs_the_csrf_token(bench: Any) -> None:
    client, keys, gateway = bench
    case = gateway.decide_sync(review_payment(), SERVICE)["decision_id"]
    csrf = log_in(client, keys["reviewer"])
    for action in ("claim", "release", "decide"):
        for token in (None, "wrong"):
            data = {} if token is None else {"csrf": token}
            response = client.post(f"/workbench/cases/{case}/{action}", data=data)
            assert response.status_code == 403, (action, token)
            assert "CSRF" in response.text
    assert client.post("/workbench/logout", data={}).status_code == 403
    assert [e.kind for e in gateway.store.entries_for(case)] == ["decision"]  # nothing written
    assert client.post(f"/workbench/cases/{case}/claim", data={"csrf": csrf}).status_code == 200
    assert [e.kind for e in gateway.store.entries_for(case)] == ["decision", "review_claim"]
    out = client.post("/workbench/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/workbench/", follow_redirects=False).status_code == 303


def test_reviewer_gets_403_on_admin_pages_and_auditor_reads_only(bench: Any) -> None:
    client, keys, gateway = bench
    case = gateway.decide_sync(review_payment(), SERVICE)["decision_id"]
    log_in(client, keys["reviewer"])
    for path in ("/workbench/admin", "/workbench/admin/labels.jsonl"):
        denied = client.get(path)
        assert denied.status_code == 403 and "403 · Not allowed" in denied.text, path
    csrf = log_in(client, keys["auditor"])
    page = client.get(f"/workbench/cases/{case}")
    assert page.status_code == 200 and "Your role reads only" in page.text
    assert 'data-testid="claim"' not in page.text and "decide-form" not in page.text
    for action in ("claim", "decide"):
        refused = client.post(
            f"/workbench/cases/{case}/{action}",
            data={"csrf": csrf, "outcome": "approve", "label": "negative", "rationale": "x" * 20},
        )
        assert refused.status_code == 403 and "may not review" in refused.text
    assert [e.kind for e in gateway.store.entries_for(case)] == ["decision"]
    log_in(client, keys["admin"])
    admin = client.get("/workbench/admin")
    assert admin.status_code == 200 and "Labels for retraining" in admin.text
    export = client.get("/workbench/admin/labels.parquet")
    assert export.status_code == 200 and export.content[:4] == b"PAR1"


def test_pii_is_masked_unless_the_role_may_see_it(bench: Any) -> None:
    client, keys, gateway = bench
    result = gateway.decide_sync(CLAIM, SERVICE)
    assert result["outcome"] == "review", result
    log_in(client, keys["reviewer"])
    page = client.get(f"/workbench/cases/{result['decision_id']}").text
    assert "jane.doe@example.com" not in page and "&lt;EMAIL_ADDRESS&gt;" in page
    assert "DE89 3704" not in page and "&lt;IBAN_CODE&gt;" in page
    assert "personal data masked for your role" in page
    log_in(client, keys["admin"])  # policy: review.raw_pii_roles = [admin]
    page = client.get(f"/workbench/cases/{result['decision_id']}").text
    assert "jane.doe@example.com" in page and "raw (your role may see personal data)" in page


def test_decide_form_errors_rerender_with_the_message(bench: Any) -> None:
    client, keys, gateway = bench
    case = gateway.decide_sync(review_payment(amount=15_000.0), SERVICE)["decision_id"]
    csrf = log_in(client, keys["reviewer"])
    page = client.get(f"/workbench/cases/{case}").text
    assert "Four eyes: amount 15,000 &gt; 10,000" in page
    claimed = client.post(f"/workbench/cases/{case}/claim", data={"csrf": csrf}).text
    assert "> Fraud</label>" in claimed and "> Not fraud</label>" in claimed  # type's wording
    short = client.post(
        f"/workbench/cases/{case}/decide",
        data={"csrf": csrf, "outcome": "decline", "label": "positive", "rationale": "bad"},
    )
    assert short.status_code == 422 and 'data-testid="form-error"' in short.text
    assert "rationale" in short.text
    done = client.post(
        f"/workbench/cases/{case}/decide",
        data={
            "csrf": csrf,
            "outcome": "decline",
            "label": "positive",
            "rationale": "ATO: new device",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303 and "status=pending_second_review" in done.headers["location"]
    again = client.get(f"/workbench/cases/{case}").text
    assert 'data-testid="first-review"' in again and 'data-testid="claim"' not in again
    csrf = log_in(client, keys["reviewer2"])
    assert 'data-testid="claim"' in client.get(f"/workbench/cases/{case}").text


def test_unknown_case_is_a_404_page(bench: Any) -> None:
    client, keys, _ = bench
    log_in(client, keys["reviewer"])
    missing = client.get("/workbench/cases/nope")
    assert missing.status_code == 404 and "404 · Not found" in missing.text
