"""`warden decide`: read requests from a file and decide them in-process or over HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from warden.auth import LOCAL_ADMIN
from warden.errors import RequestError, WardenError


def read_requests(path: Path) -> list[Any]:
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    stripped = text.strip()
    if not stripped:
        raise RequestError(f"{path}: empty file")
    try:
        value = json.loads(stripped)
        return value if isinstance(value, list) else [value]
    except json.JSONDecodeError:
        pass
    out = []
    for number, line in enumerate(stripped.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RequestError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    return out


def decide_requests(
    requests: list[Any],
    *,
    data_dir: Path,
    policy: Path | None,
    url: str | None,
    api_key: str | None,
) -> list[dict[str, Any]]:
    if url is not None:
        return _over_http(requests, url, api_key)
    from warden.gateway import Gateway, RefusedError

    async def run_all(gateway: Gateway) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for request in requests:
            try:
                results.append(await gateway.decide(request, LOCAL_ADMIN))
            except RefusedError as exc:
                results.append({"error": exc.to_dict()})
            except WardenError as exc:
                results.append({"error": exc.to_dict()})
        await gateway.endpoints.stop()  # the model endpoints' pool belongs to this loop
        return results

    with Gateway.open(data_dir, policy) as gateway:
        return asyncio.run(run_all(gateway))


def _over_http(requests: list[Any], url: str, api_key: str | None) -> list[dict[str, Any]]:
    results = []
    with httpx.Client(base_url=url, headers={"X-API-Key": api_key or ""}, timeout=30) as http:
        for request in requests:
            try:
                response = http.post("/v1/decisions", json=request)
            except httpx.HTTPError as exc:
                raise WardenError(f"{url}: {exc}") from None
            body = response.json()
            results.append(
                body
                if response.status_code == 200
                else {
                    "error": body.get(
                        "error", {"code": str(response.status_code), "message": response.text}
                    )
                }
            )
    return results
