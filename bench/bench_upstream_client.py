"""Client CPU of one upstream chat-completions call, three ways, against the upstream
simulator (`warden dev upstream`, a separate process), in one run, alternating:

  a  aiohttp as the chat client used it before `endpoints/http1.py`: one ClientSession
     (TCPConnector limit 256), a URL string and a ClientTimeout per call, `async with
     session.post(...)`, `await response.read()`
  b  aiohttp tuned: the yarl.URL and the ClientTimeout built once, DummyCookieJar,
     auto_decompress=False, skip_auto_headers, `session._request` and `read()` without
     the context-manager wrapper
  c  `warden.endpoints.http1.Http1Pool` (asyncio Protocol + httptools), as the chat
     client uses it now

Each call does what `ChatClient._attempt` does around the wire: encode the JSON body,
build the headers (decision id, content type), send, read the whole body and decode it.
Figures are this process's CPU time (user + system, `time.process_time`) over the
measured calls — steady on a shared VM, unlike wall time — at 1 and 32 calls in flight,
on uvloop like `warden serve`.

    PYTHONPATH=src .venv/bin/python bench/bench_upstream_client.py [--calls 4000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import uvloop
import yarl
from bench_gateway_overhead import bodies, process, wait_http
from common import free_port

from warden.endpoints.http1 import Http1Pool, Origin

DECISION_HEADER = "X-Warden-Decision-Id"
Call = Callable[[bytes, str], Awaitable[tuple[int, str]]]


async def variant_a(base: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=0)
    session = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def call(data: bytes, decision_id: str) -> tuple[int, str]:
        headers = {DECISION_HEADER: decision_id, "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=10.0, sock_connect=1.0)
        async with session.post(
            base.rstrip("/") + "/chat/completions", data=data, headers=headers, timeout=timeout
        ) as response:
            raw = (await response.read()).decode("utf-8", errors="replace")
            return response.status, raw

    return call, session.close


async def variant_b(base: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=0)
    session = aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )
    url = yarl.URL(base.rstrip("/") + "/chat/completions")
    timeout = aiohttp.ClientTimeout(total=10.0, sock_connect=1.0)

    async def call(data: bytes, decision_id: str) -> tuple[int, str]:
        headers = {DECISION_HEADER: decision_id, "Content-Type": "application/json"}
        response = await session._request("POST", url, data=data, headers=headers, timeout=timeout)
        try:
            raw = (await response.read()).decode("utf-8", errors="replace")
        finally:
            response.release()
        return response.status, raw

    return call, session.close


async def variant_c(base: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    pool = Http1Pool(limit=256)
    origin = Origin.parse(base)

    async def call(data: bytes, decision_id: str) -> tuple[int, str]:
        headers = {DECISION_HEADER: decision_id, "Content-Type": "application/json"}
        response = await pool.request(
            "POST", origin, "/chat/completions", headers, data, timeout=10.0, connect_timeout=1.0
        )
        return response.status, response.body.decode("utf-8", errors="replace")

    return call, pool.aclose


VARIANTS = {"a": variant_a, "b": variant_b, "c": variant_c}
LABELS = {
    "a": "aiohttp, as before",
    "b": "aiohttp, tuned session",
    "c": "http1.Http1Pool (httptools)",
}


async def measure(name: str, base: str, inflight: int, calls: int) -> dict[str, float]:
    call, close = await VARIANTS[name](base)
    requests = [dict(b) for b in bodies(64)]
    counter = iter(range(10**9))

    async def worker(n: int) -> None:
        for _ in range(n):
            i = next(counter)
            data = json.dumps(requests[i % len(requests)]).encode()
            status, raw = await call(data, f"dec-{i:012d}")
            if status != 200 or not raw:
                raise RuntimeError(f"status {status}")

    await asyncio.gather(*(worker(max(1, 200 // inflight)) for _ in range(inflight)))  # warm
    per = max(1, calls // inflight)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(per) for _ in range(inflight)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await close()
    done = per * inflight
    return {"cpu_us": cpu / done * 1e6, "rps": done / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="measured calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inflight", default="1,32")
    parser.add_argument("--variants", default="a,b,c")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    inflights = [int(x) for x in args.inflight.split(",")]
    names = args.variants.split(",")
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="warden-upc-")))
        port = free_port()
        argv = [sys.executable, "-m", "warden", "dev", "upstream", "--region", "eu-west-1"]
        argv += ["--port", str(port)]
        sim = stack.enter_context(process(argv, tmp / "upstream.log"))
        wait_http(f"http://127.0.0.1:{port}/health", sim, 30, "simulator")
        base = f"http://127.0.0.1:{port}/v1"
        load = os.getloadavg()[0]
        for round_no in range(args.rounds):
            for inflight in inflights:
                for name in names:  # alternating: a b c a b c ...
                    figures = uvloop.run(measure(name, base, inflight, args.calls))
                    results.setdefault((name, inflight), []).append(figures)
                    print(
                        f"round {round_no + 1} in-flight {inflight:>2} {name}: "
                        f"{figures['cpu_us']:7.1f} µs CPU/call {figures['rps']:8.0f} calls/s",
                        flush=True,
                    )
    print(f"\nload average at start {load:.2f}, at end {os.getloadavg()[0]:.2f}")
    print("\n| client | in flight | CPU µs/call (median) | per round | calls/s (median) |")
    print("|---|---:|---:|---|---:|")
    table = []
    for inflight in inflights:
        for name in names:
            rows = results[(name, inflight)]
            cpu = statistics.median(r["cpu_us"] for r in rows)
            rps = statistics.median(r["rps"] for r in rows)
            rounds = " / ".join(f"{r['cpu_us']:.0f}" for r in rows)
            print(f"| {name}: {LABELS[name]} | {inflight} | {cpu:.0f} | {rounds} | {rps:,.0f} |")
            table.append({"variant": name, "inflight": inflight, "cpu_us": cpu, "rps": rps})
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
