"""Async clients against raw httpx and the sync client, on one local AgentCube.

The server runs in a child process (see ``_server.py``). Figures, medians of interleaved
rounds in one run:

* 1,000 concurrent invokes from one event loop: ``AsyncAgentRuntimeClient.invoke`` against
  raw ``httpx.AsyncClient`` POSTs of the same wire request (same URL, headers, body, and the
  same pool limits). Goal: throughput >= 0.90 of raw. Also the client's thread count during
  the burst (no thread per request).
* 100 concurrent code-interpreter lifecycles (create, one command, stop): the async client
  with ``asyncio.gather`` against the sync client on 16 threads.
* client memory per open async session: 200 started clients, ``tracemalloc`` and RSS growth.

    .venv/bin/python benchmarks/bench_async.py            # about a minute
    .venv/bin/python benchmarks/bench_async.py --quick    # fewer rounds (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import abba, start_server
from _raw import SESSION_HEADER, USER_AGENT
from _server import ServerProcess

from agentcube import (
    AsyncAgentRuntimeClient,
    AsyncCodeInterpreterClient,
    CodeInterpreterClient,
)

AGENT = "echo-agent"
PAYLOAD = {"prompt": "hello", "n": 1}


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Rows:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, name: str, measured: str, goal: str = "informational", met: str = "-") -> None:
        self.rows.append((name, measured, goal, met))
        print(f"  {name}: {measured}  [{goal}{'' if met == '-' else ', met: ' + met}]", flush=True)

    def markdown(self) -> str:
        lines = ["| figure | measured | goal | met |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows]
        return "\n".join(lines)


# -- 1,000 concurrent invokes ------------------------------------------------------------------


async def _sdk_burst(client: AsyncAgentRuntimeClient, count: int) -> float:
    started = time.perf_counter()
    answers = await asyncio.gather(*(client.invoke(PAYLOAD) for _ in range(count)))
    elapsed = time.perf_counter() - started
    assert all(isinstance(a, dict) for a in answers)
    return count / elapsed


async def _raw_burst(http: httpx.AsyncClient, url: str, sid: str, count: int) -> float:
    body = json.dumps(PAYLOAD, separators=(",", ":")).encode()
    headers = {
        "User-Agent": USER_AGENT,
        SESSION_HEADER: sid,
        "Content-Type": "application/json",
    }

    async def one() -> Any:
        response = await http.post(url, content=body, headers=headers, timeout=120.0)
        response.raise_for_status()
        return response.json()

    started = time.perf_counter()
    answers = await asyncio.gather(*(one() for _ in range(count)))
    elapsed = time.perf_counter() - started
    assert all(isinstance(a, dict) for a in answers)
    return count / elapsed


async def bench_invokes(server: ServerProcess, rows: Rows, count: int, rounds: int) -> None:
    print(f"{count} concurrent invokes, {rounds} rounds, interleaved", flush=True)
    client = await AsyncAgentRuntimeClient.create(
        AGENT, router_url=server.router_url, workload_manager_url=server.workload_manager_url
    )
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)  # as the SDK's
    http = httpx.AsyncClient(limits=limits, follow_redirects=False)
    url = f"{server.router_url}/v1/namespaces/default/agent-runtimes/{AGENT}/invocations/"
    assert client.session_id is not None
    peak_threads = threading.active_count()
    stop = asyncio.Event()

    async def watch_threads() -> None:
        nonlocal peak_threads
        while not stop.is_set():
            peak_threads = max(peak_threads, threading.active_count())
            await asyncio.sleep(0.005)

    rates: dict[str, list[float]] = {"sdk": [], "raw": []}
    try:
        await _sdk_burst(client, 50)  # warm-up
        await _raw_burst(http, url, client.session_id, 50)
        threads_before = threading.active_count()
        watcher = asyncio.ensure_future(watch_threads())
        for _, which in abba(rounds, ("sdk", "raw")):
            if which == "sdk":
                rate = await _sdk_burst(client, count)
            else:
                rate = await _raw_burst(http, url, client.session_id, count)
            rates[which].append(rate)
            print(f"    {which}: {rate:.0f} invokes/s", flush=True)
        stop.set()
        await watcher
    finally:
        await http.aclose()
        await client.stop()
    sdk, raw = statistics.median(rates["sdk"]), statistics.median(rates["raw"])
    ratio = sdk / raw
    rows.add(
        f"{count} concurrent invokes, throughput (async SDK / raw httpx)",
        f"{ratio:.3f}",
        ">= 0.90",
        "yes" if ratio >= 0.90 else "no",
    )
    rows.add(
        f"client threads during {count} concurrent invokes (peak, before)",
        f"{peak_threads}, {threads_before}",
        "no thread per request",
        "yes" if peak_threads - threads_before < 16 else "no",
    )


# -- 100 concurrent lifecycles -----------------------------------------------------------------


async def _async_lifecycles(server: ServerProcess, count: int) -> float:
    async def one() -> None:
        async with AsyncCodeInterpreterClient(
            router_url=server.router_url, workload_manager_url=server.workload_manager_url
        ) as ci:
            await ci.execute_command("true")

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - started)


def _sync_lifecycles(server: ServerProcess, count: int, threads: int) -> float:
    def one(_: int) -> None:
        with CodeInterpreterClient(
            router_url=server.router_url, workload_manager_url=server.workload_manager_url
        ) as ci:
            ci.execute_command("true")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - started)


async def bench_lifecycles(server: ServerProcess, rows: Rows, count: int, rounds: int) -> None:
    print(f"{count} concurrent code-interpreter lifecycles, {rounds} rounds", flush=True)
    await _async_lifecycles(server, 10)  # warm-up
    await asyncio.to_thread(_sync_lifecycles, server, 10, 16)
    rates: dict[str, list[float]] = {"async": [], "sync": []}
    for _, which in abba(rounds, ("async", "sync")):
        if which == "async":
            rate = await _async_lifecycles(server, count)
        else:
            # In a thread so that this loop (and its shared pool) is not blocked; the sync
            # client has its own.
            rate = await asyncio.to_thread(_sync_lifecycles, server, count, 16)
        rates[which].append(rate)
        print(f"    {which}: {rate:.1f} lifecycles/s", flush=True)
    left = server.sessions()
    ratio = statistics.median(rates["async"]) / statistics.median(rates["sync"])
    rows.add(
        f"{count} concurrent code-interpreter lifecycles (async gather / sync on 16 threads)",
        f"{ratio:.3f}",
    )
    rows.add("lifecycles: sessions left on the server", str(len(left)), "0", str(not left).lower())


# -- memory per open session -------------------------------------------------------------------


def _count_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:  # the listing's own descriptor, gone already
            pass
    return count


async def bench_memory(server: ServerProcess, rows: Rows, count: int) -> None:
    print(f"memory: {count} open async code-interpreter sessions", flush=True)
    warm = await AsyncCodeInterpreterClient.create(
        router_url=server.router_url, workload_manager_url=server.workload_manager_url
    )
    await warm.execute_command("true")
    await warm.stop()
    gc.collect()
    rss_before = _rss_kib()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    clients = await asyncio.gather(
        *(
            AsyncCodeInterpreterClient.create(
                router_url=server.router_url, workload_manager_url=server.workload_manager_url
            )
            for _ in range(count)
        )
    )
    gc.collect()
    after = tracemalloc.take_snapshot()
    rss_after = _rss_kib()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    sockets = _count_sockets()
    await asyncio.gather(*(c.stop() for c in clients))
    rows.add(
        "client memory per open async session (Python heap, tracemalloc)",
        f"{grown / count / 1024:.1f} KiB",
    )
    rows.add(
        "client memory per open async session (RSS growth)",
        f"{max(0, rss_after - rss_before) / count:.1f} KiB",
    )
    rows.add(f"sockets held by the client with {count} open sessions", str(sockets))


async def run(args: argparse.Namespace, server: ServerProcess) -> Rows:
    rows = Rows()
    await bench_invokes(server, rows, 1000, 3 if args.quick else 7)
    await bench_lifecycles(server, rows, 100, 2 if args.quick else 5)
    await bench_memory(server, rows, 200)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agentcube-bench-async-") as root:
        server = start_server(root)
        try:
            started = time.perf_counter()
            rows = asyncio.run(run(args, server))
            print(f"\n{rows.markdown()}\n\n({time.perf_counter() - started:.0f} s)")
            if args.markdown:
                with open(args.markdown, "w") as f:
                    f.write(rows.markdown() + "\n")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
