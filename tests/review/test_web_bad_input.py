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


def test_a_rationale_with_a_nul_or_bidi_control_rerenders_the_form(bench: Any) -> None:  # noqa: F811
    """The workbench form goes to the same check as the JSON API: the case page again,
    422, with the character named; nothing written."""
    client, keys, gateway = bench
    case = client.post(
        "/v1/decisions", json=review_payment(), headers={"X-API-Key": keys["service"]}
    ).json()["decision_id"]
    csrf = log_in(client, keys["reviewer"])
    assert client.post(f"/workbench/cases/{case}/claim", data={"csrf": csrf}).status_code == 200
    size = gateway.store.size()
    for char, kind in (("\x00", "a control character"), ("\u202e", "a bidi control character")):
        form = {"csrf": csrf, "outcome": "decline", "label": "positive"}
        form["rationale"] = f"ATO: new{char} device"
        response = client.post(f"/workbench/cases/{case}/decide", data=form)
        assert response.status_code == 422, response.text[:300]
        assert 'data-testid="form-error"' in response.text
        assert f"rationale: contains U+{ord(char):04X} ({kind}) at position 8" in response.text
    assert gateway.store.size() == size


def test_an_unknown_case_page_does_not_echo_a_long_id_whole(bench: Any) -> None:  # noqa: F811
    client, keys, _ = bench
    csrf = log_in(client, keys["reviewer"])
    long_id = "x" * 60_000
    shown = "&#39;" + "x" * 64 + "&#39;… (60,000 characters)"
    for method, path, data in (
        ("GET", f"/workbench/cases/{long_id}", None),
        ("POST", f"/workbench/cases/{long_id}/claim", {"csrf": csrf}),
    ):
        response = client.request(method, path, data=data)
        assert response.status_code == 404, response.text[:300]
        assert shown in response.text and long_id not in response.text
    log_in(client, keys["admin"])
    fmt = client.get("/workbench/admin/labels." + "y" * 60_000)
    assert fmt.status_code == 404 and "y" * 65 not in fmt.text


def test_a_workbench_form_over_the_limit_is_413(bench: Any) -> None:  # noqa: F811
    """A log-in or review form is a few kilobytes; one over 64 KiB is refused before it is
    parsed (it was read whole, whatever its size)."""
    client, keys, gateway = bench
    log_in(client, keys["reviewer"])
    size = gateway.store.size()
    for path in ("/workbench/login", "/workbench/logout", "/workbench/cases/x/decide"):
        response = client.post(path, data={"csrf": "x", "api_key": "k" * 70_000})
        assert response.status_code == 413, (path, response.text[:300])
        error = response.json()["error"]
        assert error["code"] == "request.too_large" and error["field"] == "body"
        assert "the limit of 65,536 bytes" in error["message"]
    assert gateway.store.size() == size
    still = client.get("/workbench/", follow_redirects=False)
    assert still.status_code == 200  # still logged in: the oversized log-out never ran
