"""Workbench forms with bad input: a 4xx page, never a 500, and nothing written."""

from __future__ import annotations

from typing import Any

from tests.conftest import review_payment
from tests.review.test_web import bench, log_in  # noqa: F401  (the fixture)


def test_a_csrf_token_with_non_ascii_characters_is_refused_not_a_500(bench: Any) -> None:  # noqa: F811
    """`hmac.compare_digest` raises TypeError on a str with a non-ASCII character: a log-in
    form (or any POST) whose token had one, e.g. from a form not in UTF-8, was a 500."""
    client, keys, gateway = bench
    page = client.get("/workbench/login")
    assert page.status_code == 200
    for raw in (b"csrf=%E9t%E9&api_key=x", "csrf=été&api_key=x".encode()):
        response = client.post(
            "/workbench/login",
            content=raw,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 401, response.text
        assert "form expired" in response.text
    log_in(client, keys["reviewer"])
    case = client.post(
        "/v1/decisions", json=review_payment(), headers={"X-API-Key": keys["service"]}
    ).json()["decision_id"]
    size = gateway.store.size()
    for path in (f"/workbench/cases/{case}/claim", "/workbench/logout"):
        response = client.post(path, data={"csrf": "jeton-été"}, follow_redirects=False)
        assert response.status_code == 403, (path, response.text)
        assert "CSRF token" in response.text
    assert gateway.store.size() == size
