"""The async OpenAI-compatible chat-completions client.

One pool of keep-alive HTTP/1.1 connections per event loop (`endpoints/http1.py`: at 32
in flight ≈ 40 µs of client CPU per call against ≈ 90–110 µs with aiohttp's
ClientSession, tuned or not; bench/README.md, "The upstream call"); each endpoint's URL
parsed once; per-endpoint timeouts and retries; failover
only along a `Routing`'s candidates (which come from the residency plan alone). Every
attempt — endpoint, region, zone, status or error, latency — is returned, so the record
names exactly the deployments that were tried and the one that answered. The decision id
goes upstream in `X-Warden-Decision-Id`. Before the first call to an external endpoint the
caller's `before_call` hook runs (the LLM gate commits its intent entry there)."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from warden import metrics
from warden.audit.sqlite_store import utc_now
from warden.canonical import check_canonical
from warden.endpoints import local_model
from warden.endpoints.breaker import Breaker
from warden.endpoints.http1 import ConnectError, Http1Pool, Origin, TransportError
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
        return message_content(self.body)


def message_content(body: Any) -> str | None:
    """The first choice's message text of a chat completion, if there is one."""
    try:
        value = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return value if isinstance(value, str) else None


#: the usage counts an audit record keeps (`gates.llm`)
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _check_recorded(parsed: dict[str, Any]) -> None:
    """Raise `NotCanonicalError` when a part of the answer that the audit record keeps
    besides the raw text (the model name, the usage counts, the message content) holds what
    canonical JSON cannot write: NaN, a 30-digit integer, a lone surrogate. Other fields (a
    vendor's extra numbers, `-Infinity` logprobs) are only in the raw text, so they are fine."""
    check_canonical(parsed.get("model"), "response.model")
    usage = parsed.get("usage")
    if isinstance(usage, dict):
        for name in USAGE_FIELDS:
            check_canonical(usage.get(name), f"response.usage.{name}")
    check_canonical(message_content(parsed), "response.choices[0].message.content")


class ChatClient:
    def __init__(
        self,
        router: Router,
        *,
        max_connections: int = 256,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context`: for HTTPS endpoints (default: the system's CAs, which honour
        SSL_CERT_FILE / SSL_CERT_DIR)."""
        self.router = router
        self.max_connections = max_connections
        self.ssl_context = ssl_context
        #: one pool per event loop (a connection belongs to the loop it was made on)
        self._pools: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], Http1Pool]] = {}
        #: base_url → its parsed origin (parsed once, not per call)
        self._origins: dict[str, Origin] = {}

    def pool(self) -> Http1Pool:
        loop = asyncio.get_running_loop()
        held = self._pools.get(id(loop))
        if held is not None and held[0]() is loop and not held[1].closed:
            return held[1]
        pool = Http1Pool(limit=self.max_connections, ssl_context=self.ssl_context)
        self._pools[id(loop)] = (weakref.ref(loop), pool)
        return pool

    def origin(self, url: str) -> Origin:
        origin = self._origins.get(url)
        if origin is None:
            origin = self._origins[url] = Origin.parse(url)
        return origin

    async def aclose(self) -> None:
        """Close this loop's pool (call before the loop ends)."""
        held = self._pools.pop(id(asyncio.get_running_loop()), None)
        if held is not None:
            await held[1].aclose()

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
                permit = breaker.admit()
                if permit is not None and not announced and endpoint.kind != "local_model":
                    permit = await _announce(before_call, breaker, permit, name, endpoint)
                if permit is None:
                    detail = (
                        "half-open, its one probe call is out"
                        if breaker.state == "half_open"
                        else "opened during this call"
                    )
                    skipped.append(Skip(name, "breaker_open", detail).as_record())
                    break
                announced = True
                try:
                    attempt, result = await self._attempt(endpoint, name, number, body, decision_id)
                except BaseException:
                    breaker.release(permit)
                    raise
                attempts.append(attempt)
                metrics.MODEL_CALLS.labels(name, attempt["error"] or "ok").inc()
                if result is not None:
                    breaker.record_success(permit)
                    result.attempts, result.skipped = attempts, skipped
                    result.latency_ms = round((time.perf_counter() - started) * 1000, 3)
                    return result
                if attempt["counts_for_breaker"]:
                    breaker.record_failure(probe=permit)
                else:
                    breaker.release(permit)
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
            headers = {DECISION_HEADER: decision_id, "Content-Type": "application/json"}
            if endpoint.api_key_env and os.environ.get(endpoint.api_key_env):
                headers["Authorization"] = f"Bearer {os.environ[endpoint.api_key_env]}"
            try:
                response = await self.pool().request(
                    "POST",
                    self.origin(endpoint.base_url),
                    "/chat/completions",
                    headers,
                    json.dumps(request).encode(),
                    timeout=endpoint.timeout_ms / 1000,
                    connect_timeout=endpoint.connect_timeout_ms / 1000,
                )
            except TimeoutError as exc:
                return self._failed(attempt, t0, "timeout", str(exc) or "TimeoutError"), None
            except ConnectError as exc:
                return self._failed(attempt, t0, "connect_error", str(exc)[:200]), None
            except TransportError as exc:
                # a pooled connection that closed before any byte of the answer: most
                # likely the server's idle timeout, not the endpoint failing — retried as
                # any transport error (a recorded attempt), not counted by the breaker
                failed = self._failed(
                    attempt, t0, "transport_error", str(exc)[:200], counts=not exc.stale
                )
                return failed, None
            raw = response.body.decode("utf-8", errors="replace")
            status = response.status
            attempt["status"] = status
            if status != 200:
                retry = status in _RETRYABLE_STATUS
                failed = self._failed(attempt, t0, f"http_{status}", raw[:200], retry=retry)
                return failed, None
            try:
                parsed = json.loads(raw)
                if not isinstance(parsed, dict) or not isinstance(parsed.get("choices"), list):
                    raise ValueError("not a chat.completion object")
                _check_recorded(parsed)
            except (ValueError, RecursionError) as exc:
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
        attempt: dict[str, Any],
        t0: float,
        error: str,
        detail: str,
        *,
        retry: bool = True,
        counts: bool | None = None,
    ) -> dict[str, Any]:
        """`counts` (for the breaker) defaults to `retry`."""
        attempt.update(
            error=error,
            detail=detail,
            ok=False,
            latency_ms=round((time.perf_counter() - t0) * 1000, 3),
            retryable=retry,
            counts_for_breaker=retry if counts is None else counts,
        )
        return attempt


async def _announce(
    before_call: BeforeCall | None, breaker: Breaker, permit: int, name: str, endpoint: Endpoint
) -> int | None:
    """Commit the intent before the first call to an endpoint; the permit, or None when a
    half-open probe's claim ran out during that commit and another worker took it."""
    if before_call is None:
        return permit
    try:
        await before_call(name, endpoint)
    except BaseException:
        breaker.release(permit)
        raise
    return permit if breaker.renew(permit) else None
