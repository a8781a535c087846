"""Async clients against raw aiohttp and the sync client, on one local AgentCube.

The server runs in a child process (see ``_server.py``). Figures, medians of interleaved
rounds in one run, wall time and client CPU (``process_time``) of each round:

* 1,000 concurrent invokes from one event loop: ``AsyncAgentRuntimeClient.invoke`` against
  raw ``aiohttp`` POSTs of the same wire request, with ``TCPConnector(limit=100)`` (what a
  user would write, and the SDK's default: ``AGENTCUBE_MAX_CONNECTIONS``) and with no limit
  (what the SDK's pool had before, one connection per call at once). Goal: within 1.2 x raw aiohttp
  (limit 100) in wall time and client CPU. Also the client's thread count during the burst
  (no thread per request).
* 100 concurrent code-interpreter lifecycles (create, one command, stop): the async client
  with ``asyncio.gather`` against raw aiohttp sending the same three requests (upstream's
  argv ``["true"]``), and against the sync client on 16 threads (CPU per lifecycle at most the
  sync client's).
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

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import abba, start_server
from _raw import SESSION_HEADER, TRUE_ARGV, USER_AGENT
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


GOAL = 1.2  # async SDK / raw aiohttp (limit 100), wall time and client CPU


def _measured(
    rounds: dict[str, list[tuple[float, float]]], which: str, started: tuple[float, float]
) -> None:
    wall = time.perf_counter() - started[0]
    cpu = time.process_time() - started[1]
    rounds[which].append((wall, cpu))


def _raw_session(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        headers={"User-Agent": USER_AGENT},
        timeout=aiohttp.ClientTimeout(total=120.0),
    )


async def _raw_invoke(http: aiohttp.ClientSession, url: str, sid: str) -> Any:
    body = json.dumps(PAYLOAD, separators=(",", ":")).encode()
    headers = {SESSION_HEADER: sid, "Content-Type": "application/json"}
    async with http.post(url, data=body, headers=headers) as response:
        response.raise_for_status()
        return await response.json()


def _rows_against(
    rows: Rows, what: str, rounds: dict[str, list[tuple[float, float]]], count: int, goal: bool
) -> None:
    """Rows of the SDK's median wall and CPU against every other contender's."""
    wall = {k: statistics.median(r[0] for r in v) for k, v in rounds.items()}
    cpu = {k: statistics.median(r[1] for r in v) for k, v in rounds.items()}
    for other in [k for k in rounds if k != "sdk"]:
        for name, figure in (("wall time", wall), ("client CPU", cpu)):
            ratio = figure["sdk"] / figure[other]
            unit = f"{figure['sdk']:.2f} s / {figure[other]:.2f} s"
            if name == "client CPU":
                per = (figure["sdk"] / count * 1e6, figure[other] / count * 1e6)
                unit = f"{per[0]:.0f} us / {per[1]:.0f} us per call"
            judged = goal and other == "raw aiohttp (limit 100)"
            rows.add(
                f"{what}, {name} (async SDK / {other})",
                f"{ratio:.2f} ({unit})",
                f"<= {GOAL}" if judged else "informational",
                ("yes" if ratio <= GOAL else "no") if judged else "-",
            )


async def bench_invokes(server: ServerProcess, rows: Rows, count: int, rounds: int) -> None:
    print(f"{count} concurrent invokes, {rounds} rounds, interleaved", flush=True)
    client = await AsyncAgentRuntimeClient.create(
        AGENT, router_url=server.router_url, workload_manager_url=server.workload_manager_url
    )
    raw = {
        "raw aiohttp (limit 100)": _raw_session(100),
        "raw aiohttp (no limit)": _raw_session(0),
    }
    url = f"{server.router_url}/v1/namespaces/default/agent-runtimes/{AGENT}/invocations/"
    sid = client.session_id
    assert sid is not None
    peak_threads = threading.active_count()
    stop = asyncio.Event()

    async def watch_threads() -> None:
        nonlocal peak_threads
        while not stop.is_set():
            peak_threads = max(peak_threads, threading.active_count())
            await asyncio.sleep(0.005)

    async def burst(which: str, n: int) -> None:
        if which == "sdk":
            answers = await asyncio.gather(*(client.invoke(PAYLOAD) for _ in range(n)))
        else:
            http = raw[which]
            answers = await asyncio.gather(*(_raw_invoke(http, url, sid) for _ in range(n)))
        assert all(isinstance(a, dict) for a in answers)

    seen: dict[str, list[tuple[float, float]]] = {"sdk": [], **{k: [] for k in raw}}
    try:
        for which in seen:  # warm-up
            await burst(which, 50)
        threads_before = threading.active_count()
        watcher = asyncio.ensure_future(watch_threads())
        for _, which in abba(rounds, list(seen)):
            started = (time.perf_counter(), time.process_time())
            await burst(which, count)
            _measured(seen, which, started)
            print(f"    {which}: {seen[which][-1][0]:.2f} s", flush=True)
        stop.set()
        await watcher
    finally:
        for http in raw.values():
            await http.close()
        await client.stop()
    _rows_against(rows, f"{count} concurrent invokes", seen, count, goal=True)
    rows.add(
        f"client threads during {count} concurrent invokes (peak, before)",
        f"{peak_threads}, {threads_before}",
        "no thread per request",
        "yes" if peak_threads - threads_before < 16 else "no",
    )


# -- 100 concurrent lifecycles -----------------------------------------------------------------


async def _async_lifecycles(server: ServerProcess, count: int) -> None:
    async def one() -> None:
        async with AsyncCodeInterpreterClient(
            router_url=server.router_url, workload_manager_url=server.workload_manager_url
        ) as ci:
            await ci.execute_command("true")

    await asyncio.gather(*(one() for _ in range(count)))


def _sync_lifecycles(server: ServerProcess, count: int, threads: int) -> None:
    def one(_: int) -> None:
        with CodeInterpreterClient(
            router_url=server.router_url, workload_manager_url=server.workload_manager_url
        ) as ci:
            ci.execute_command("true")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))


async def _raw_lifecycles(server: ServerProcess, http: aiohttp.ClientSession, count: int) -> None:
    wm = server.workload_manager_url
    base = (
        f"{server.router_url}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
    )
    create = {"name": "my-interpreter", "namespace": "default", "ttl": 3600, "metadata": {}}

    async def one() -> None:
        async with http.post(f"{wm}/v1/code-interpreter", json=create) as response:
            response.raise_for_status()
            sid = (await response.json())["sessionId"]
        body = {"command": TRUE_ARGV, "timeout": "120s"}
        async with http.post(base + "api/execute", json=body, headers={SESSION_HEADER: sid}) as r:
            r.raise_for_status()
            assert (await r.json())["exit_code"] == 0
        async with http.delete(f"{wm}/v1/code-interpreter/sessions/{sid}") as response:
            response.raise_for_status()

    await asyncio.gather(*(one() for _ in range(count)))


async def bench_lifecycles(server: ServerProcess, rows: Rows, count: int, rounds: int) -> None:
    print(f"{count} concurrent code-interpreter lifecycles, {rounds} rounds", flush=True)
    http = _raw_session(100)
    names = ["sdk", "raw aiohttp (limit 100)", "sync SDK on 16 threads"]

    async def run_one(which: str, n: int) -> None:
        if which == "sdk":
            await _async_lifecycles(server, n)
        elif which == names[1]:
            await _raw_lifecycles(server, http, n)
        else:
            # In a thread so that this loop (and its shared pool) is not blocked; the sync
            # client has its own.
            await asyncio.to_thread(_sync_lifecycles, server, n, 16)

    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    try:
        for which in names:  # warm-up
            await run_one(which, 10)
        for _, which in abba(rounds, names):
            started = (time.perf_counter(), time.process_time())
            await run_one(which, count)
            _measured(seen, which, started)
            print(f"    {which}: {seen[which][-1][0]:.2f} s", flush=True)
    finally:
        await http.close()
    left = server.sessions()
    _rows_against(rows, f"{count} concurrent lifecycles", seen, count, goal=True)
    sync_cpu = statistics.median(r[1] for r in seen[names[2]])
    sdk_cpu = statistics.median(r[1] for r in seen["sdk"])
    rows.add(
        "client CPU per lifecycle, async SDK / sync SDK",
        f"{sdk_cpu / sync_cpu:.2f}",
        "<= 1.0",
        "yes" if sdk_cpu <= sync_cpu else "no",
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
