"""The API over a real gateway (SQLite audit store, the example policy), with one API key
per role; for the bad-input and body-limit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLE_POLICY, review_payment
from warden.api.app import create_app
from warden.auth import Role
from warden.gateway import Gateway

Api = tuple[TestClient, dict[str, dict[str, str]], Gateway]


@pytest.fixture
def api(data_dir: Path) -> Iterator[Api]:
    gateway = Gateway.open(data_dir, EXAMPLE_POLICY)
    assert gateway.keyring is not None
    keys = {
        role.value: {"X-API-Key": gateway.keyring.create(f"{role.value}-1", role)} for role in Role
    }
    with TestClient(create_app(gateway)) as client:
        yield client, keys, gateway
    gateway.close()


def claimed_case(client: TestClient, keys: dict[str, dict[str, str]]) -> str:
    """A decision sent to review and claimed by the reviewer: its id."""
    queued = client.post("/v1/decisions", json=review_payment(), headers=keys["service"])
    decision_id: str = queued.json()["decision_id"]
    claim = client.post(f"/v1/review/{decision_id}/claim", headers=keys["reviewer"])
    assert claim.status_code == 200, claim.text
    return decision_id
