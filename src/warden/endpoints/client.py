"""The async OpenAI-compatible chat-completions client.

One pooled `httpx.AsyncClient` per event loop; per-endpoint timeouts and retries; failover
only along a `Routing`'s candidates (which come from the residency plan alone). Every
attempt — endpoint, region, zone, status or error, latency — is returned, so the record
names exactly the deployments that were tried and the one that answered. The decision id
goes upstream in `X-Warden-Decision-Id`. Before the first call to an external endpoint the
caller's `before_call` hook runs (the LLM gate commits its intent entry there)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from warden.audit.sqlite_store import utc_now
from warden.endpoints import local_model
from warden.endpoints.router import Router, Routing, Skip
from warden.errors import WardenError
from warden.policy.model import Endpoint

DECISION_HEADER = "X-Warden-Decision-Id"
#: failures that say something about the endpoint's health (they count for the breaker)
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

BeforeCall = Callable[[str, Endpoint], Awaitable[None]]


class ResidencyViolation(WardenError):
    """An endpoint outside the plan's zones was about to be called (cannot happen with a
    policy that loaded; raised rather than sending)."""


@dataclass
class CallResult:
    ok: bool
    attempts: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    endpoint: str | None = None
    region: str | None = None
    zone: str | None = None
    status: int | None = None
    raw: str | None = None  # the response body exactly as received
    body: dict[str, Any] | None = None
    latency_ms: float = 0.0
    model: str | None = None  # the model name the endpoint reported
    usage: dict[str, Any] = field(default_factory=dict)

    def content(self) -> str | None:
        try:
            value = self.body["choices"][0]["message"]["content"]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return None
        return value if isinstance(value, str) else None


class ChatClient:
    def __init__(self, router: Router, *, max_connections: int = 256) -> None:
        self.router = router
        self.max_connections = max_connections
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._pools = weakref.WeakKeyDictionary()

    def pool(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._pools.get(loop)
        if client is None:
            limits = httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            )
            client = httpx.AsyncClient(limits=limits, trust_env=False)
            self._pools[loop] = client
        return client

    async def aclose(self) -> None:
        client = self._pools.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    async def complete(
        self,
        routing: Routing,
        body: dict[str, Any],
        decision_id: str,
        before_call: BeforeCall | None = None,
    ) -> CallResult:
        attempts: list[dict[str, Any]] = []
        skipped = [s.as_record() for s in routing.skipped]
        started = time.perf_counter()
        for name in routing.candidates:
            endpoint = self.router.endpoints[name]
            if endpoint.zone not in routing.plan.allowed_zones:  # defence in depth
                raise ResidencyViolation(
                    f"endpoint {name} (zone {endpoint.zone}) is not allowed for "
                    f"{routing.plan.jurisdiction}; refusing to send"
                )
            breaker = self.router.breakers[name]
            announced = False
            for number in range(1, endpoint.retries + 2):
                if not breaker.acquire():
                    skipped.append(
                        Skip(name, "breaker_open", "opened during this call").as_record()
                    )
                    break
                try:
                    if not announced and before_call is not None and endpoint.kind != "local_model":
                        await before_call(name, endpoint)
                    announced = True
                    attempt, result = await self._attempt(endpoint, name, number, body, decision_id)
                except BaseException:
                    breaker.release()
                    raise
                attempts.append(attempt)
                if result is not None:
                    breaker.record_success()
                    result.attempts, result.skipped = attempts, skipped
                    result.latency_ms = round((time.perf_counter() - started) * 1000, 3)
                    return result
                if attempt["counts_for_breaker"]:
                    breaker.record_failure()
                else:
                    breaker.release()
                if not attempt["retryable"]:
                    break
        return CallResult(
            False,
            attempts,
            skipped,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    async def _attempt(
        self, endpoint: Endpoint, name: str, number: int, body: dict[str, Any], decision_id: str
    ) -> tuple[dict[str, Any], CallResult | None]:
        attempt: dict[str, Any] = {
            "endpoint": name,
            "region": endpoint.region,
            "zone": endpoint.zone,
            "kind": endpoint.kind,
            "attempt": number,
            "started_at": utc_now(),
            "status": None,
            "error": None,
        }
        request = {**body, "model": endpoint.model}
        t0 = time.perf_counter()
        if endpoint.kind == "local_model":
            parsed = local_model.complete(request, endpoint.model)
            raw = json.dumps(parsed, separators=(",", ":"))
            status = 200
        else:
            assert endpoint.base_url is not None
            headers = {DECISION_HEADER: decision_id}
            if endpoint.api_key_env and os.environ.get(endpoint.api_key_env):
                headers["Authorization"] = f"Bearer {os.environ[endpoint.api_key_env]}"
            timeout = httpx.Timeout(
                endpoint.timeout_ms / 1000, connect=endpoint.connect_timeout_ms / 1000
            )
            try:
                response = await self.pool().post(
                    endpoint.base_url.rstrip("/") + "/chat/completions",
                    json=request,
                    headers=headers,
                    timeout=timeout,
                )
            except httpx.TimeoutException as exc:
                return self._failed(attempt, t0, "timeout", type(exc).__name__), None
            except httpx.HTTPError as exc:
                error = (
                    "connect_error" if isinstance(exc, httpx.ConnectError) else "transport_error"
                )
                return self._failed(attempt, t0, error, type(exc).__name__), None
            raw, status = response.text, response.status_code
            attempt["status"] = status
            if status != 200:
                retry = status in _RETRYABLE_STATUS
                failed = self._failed(attempt, t0, f"http_{status}", raw[:200], retry=retry)
                return failed, None
            try:
                parsed = json.loads(raw)
                if not isinstance(parsed, dict) or not isinstance(parsed.get("choices"), list):
                    raise ValueError("not a chat.completion object")
            except ValueError as exc:
                return self._failed(attempt, t0, "bad_response", str(exc)[:200]), None
        attempt["status"] = status
        latency = round((time.perf_counter() - t0) * 1000, 3)
        attempt.update(latency_ms=latency, ok=True, retryable=False, counts_for_breaker=False)
        usage = parsed.get("usage") if isinstance(parsed.get("usage"), dict) else {}
        model = parsed.get("model")
        return attempt, CallResult(
            True,
            [],
            [],
            endpoint=name,
            region=endpoint.region,
            zone=endpoint.zone,
            status=status,
            raw=raw,
            body=parsed,
            model=model if isinstance(model, str) else None,
            usage=usage or {},
        )

    @staticmethod
    def _failed(
        attempt: dict[str, Any], t0: float, error: str, detail: str, *, retry: bool = True
    ) -> dict[str, Any]:
        attempt.update(
            error=error,
            detail=detail,
            ok=False,
            latency_ms=round((time.perf_counter() - t0) * 1000, 3),
            retryable=retry,
            counts_for_breaker=retry,
        )
        return attempt
