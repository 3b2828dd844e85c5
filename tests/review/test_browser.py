"""End to end in a real browser: headless Chromium (Debian's, through Playwright) against a
real `warden serve` subprocess on 127.0.0.1.

Reviewer A claims a case above the four-eyes limit and records the first review; reviewer
B makes the second review and the case leaves the queue; the auditor sees a case read-only
and the server refuses the auditor's POST; a reviewer gets the 403 page on an admin page.
The test saves screenshots of the case page and the queue; `WARDEN_SCREENSHOTS=DIR` keeps
them in DIR (`WARDEN_SCREENSHOTS=docs` regenerates the ones the README shows)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.conftest import payment, review_payment
from tests.helpers_server import WardenServer
from warden.auth import KeyRing, Role

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[WardenServer, dict[str, str], dict[str, str]]]:
    data_dir = tmp_path / "data"
    ring = KeyRing(data_dir / "keys.yaml")
    keys = {
        "service": ring.create("payments-service", Role.SERVICE),
        "alice": ring.create("alice", Role.REVIEWER),
        "bob": ring.create("bob", Role.REVIEWER),
        "aldo": ring.create("aldo-auditor", Role.AUDITOR),
    }
    with WardenServer(data_dir, tmp_path / "serve.log") as server:
        server.start()
        cases = {}
        requests: dict[str, dict[str, Any]] = {
            "big": review_payment(amount=14_250.0, customer_id="c-104233"),
            "laptop": review_payment(amount=1_899.0, customer_id="c-220871"),
            "phone": review_payment(amount=1_249.0, customer_id="c-318004"),
            "jewellery": review_payment(amount=640.0, merchant_category="5944"),
            "travel": payment(
                amount=2_350.0,
                merchant_country="TH",
                distance_from_home_km=8_900.0,
                is_new_device=True,
                channel="ecom",
                customer_id="c-550912",
            ),
            "burst": payment(
                amount=420.0, txn_count_1h=7, amount_sum_24h=2_950.0, customer_id="c-661020"
            ),
        }
        for name, body in requests.items():
            response = httpx.post(
                f"{server.url}/v1/decisions",
                json=body,
                headers={"X-API-Key": keys["service"]},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            assert response.json()["outcome"] == "review", (name, response.json())
            cases[name] = response.json()["decision_id"]
        yield server, keys, cases


def new_page(browser: Browser, server: WardenServer) -> tuple[BrowserContext, Page, list[str]]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(20_000)
    page = context.new_page()
    problems: list[str] = []  # requests to anywhere else, console errors (e.g. CSP)
    page.on(
        "request",
        lambda r: None if r.url.startswith(server.url) else problems.append(r.url),
    )
    page.on(
        "console",
        lambda m: (
            problems.append(f"console: {m.text}")
            if m.type == "error" and "status of 4" not in m.text
            else None
        ),
    )
    return context, page, problems


def log_in(page: Page, server: WardenServer, key: str) -> None:
    page.goto(f"{server.url}/workbench/")
    assert "/workbench/login" in page.url
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=queue]")


def open_case(page: Page, decision_id: str) -> None:
    page.click(f'a[href="/workbench/cases/{decision_id}"]')
    page.wait_for_selector(f"[data-testid=case-id]:has-text('{decision_id}')")


def decide(page: Page, outcome: str, label: str, rationale: str) -> None:
    page.check(f"input[name=outcome][value={outcome}]")
    page.check(f"input[name=label][value={label}]")
    page.fill("#rationale", rationale)


def test_claim_decide_second_review_auditor_and_403(
    browser: Browser, served: Any, tmp_path: Path
) -> None:
    server, keys, cases = served
    big = cases["big"]
    shots = Path(os.environ.get("WARDEN_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)

    # reviewer A: claim the four-eyes case and record the first review
    ctx_a, a, outside_a = new_page(browser, server)
    log_in(a, server, keys["alice"])
    rows = a.locator("[data-testid=queue] tbody tr")
    assert rows.count() == len(cases)
    assert a.locator(f"tr[data-decision-id='{big}'] .tag").inner_text() == "4 eyes"
    open_case(a, big)
    assert "Four eyes: amount 14,250" in a.inner_text("[data-testid=four-eyes]")
    a.click("[data-testid=claim]")
    a.wait_for_selector("[data-testid=decide-form]")
    assert a.inner_text("[data-testid=holder]") == "you"
    decide(a, "decline", "positive", "New device, electronics, 14k: account takeover pattern.")
    assert a.inner_text("[data-testid=submit-review]") == "Record first review"
    a.click("[data-testid=submit-review]")
    a.wait_for_selector("[data-testid=flash]")
    assert "second, different reviewer" in a.inner_text("[data-testid=flash]")
    assert "1st alice" in a.inner_text(f"tr[data-decision-id='{big}']")
    open_case(a, big)  # A cannot make the second review
    assert a.locator("[data-testid=claim]").count() == 0
    assert "alice" in a.inner_text("[data-testid=first-review]")
    # a reviewer reaching for an admin page gets the 403 page
    denied = a.goto(f"{server.url}/workbench/admin")
    assert denied is not None and denied.status == 403
    assert "403 · Not allowed" in a.inner_text("[data-testid=error]")

    # reviewer B: a case A claims under B's nose shows who holds it (a 409, swapped in)
    ctx_b, b, outside_b = new_page(browser, server)
    log_in(b, server, keys["bob"])
    open_case(b, cases["phone"])
    a.goto(f"{server.url}/workbench/cases/{cases['phone']}")
    a.click("[data-testid=claim]")
    a.wait_for_selector("[data-testid=decide-form]")
    b.click("[data-testid=claim]")
    b.wait_for_selector("[data-testid=form-error]")
    assert "claimed by alice" in b.inner_text("[data-testid=form-error]")
    assert b.locator("[data-testid=claim]").count() == 0  # the fresh page: alice holds it
    b.goto(f"{server.url}/workbench/")

    # reviewer B: second review; the case leaves the queue
    assert "2nd review" in b.inner_text(f"tr[data-decision-id='{big}']")
    # keyboard: focus on a case link survives the queue's periodic refresh
    b.focus(f"#case-{big}")
    with b.expect_response(lambda r: r.url.endswith("/workbench/queue/rows")):
        # the request and swap the 15 s poll makes, made now
        b.evaluate(
            "htmx.ajax('GET', '/workbench/queue/rows', {target: '#queue-rows', swap: 'innerHTML'})"
        )
    b.wait_for_timeout(200)  # let the swap settle (not a timing assertion)
    assert b.evaluate("document.activeElement.id") == f"case-{big}"
    b.screenshot(path=str(shots / "workbench-queue.png"), full_page=False)
    open_case(b, big)
    b.click("[data-testid=claim]")
    b.wait_for_selector("[data-testid=decide-form]")
    decide(b, "decline", "positive", "Agree: customer unreachable, device first seen today.")
    assert b.inner_text("[data-testid=submit-review]") == "Submit decision"
    b.screenshot(path=str(shots / "workbench.png"), full_page=False)
    b.click("[data-testid=submit-review]")
    b.wait_for_selector("[data-testid=flash]")
    assert "reviewed and final" in b.inner_text("[data-testid=flash]")
    assert b.locator(f"tr[data-decision-id='{big}']").count() == 0
    assert b.locator("[data-testid=queue] tbody tr").count() == len(cases) - 1

    # the auditor: reads a case, has no buttons, and the server refuses its POST
    ctx_c, c, outside_c = new_page(browser, server)
    log_in(c, server, keys["aldo"])
    open_case(c, cases["laptop"])
    assert c.locator("[data-testid=claim]").count() == 0
    assert c.locator("[data-testid=decide-form]").count() == 0
    assert "reads only" in c.inner_text("[data-testid=read-only]")
    token = c.input_value("input[name=csrf]")
    refused = c.request.post(
        f"{server.url}/workbench/cases/{cases['laptop']}/claim", form={"csrf": token}
    )
    assert refused.status == 403 and "may not review" in refused.text()
    c.goto(f"{server.url}/workbench/cases/{big}")  # the finished case, read-only, with its trail
    assert "Reviewed by bob" in c.inner_text("[data-testid=actions]")
    history = c.inner_text("[data-testid=history]")
    assert "first review · alice" in history and "final review · bob" in history

    # the audit log holds every step, linked to the decision
    record = httpx.get(
        f"{server.url}/v1/decisions/{big}", headers={"X-API-Key": keys["aldo"]}, timeout=30
    ).json()
    assert [e["kind"] for e in record["entries"]] == [
        "decision",
        "review_claim",
        "review_first",
        "review_claim",
        "review",
    ]
    assert record["entries"][-1]["body"]["first_review"]["reviewer"] == "alice"
    assert outside_a == outside_b == outside_c == []  # nothing from elsewhere, no errors
    for ctx in (ctx_a, ctx_b, ctx_c):
        ctx.close()
