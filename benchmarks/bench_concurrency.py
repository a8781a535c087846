"""Concurrency: threads running agent-runtime lifecycles (create, 5 invokes, stop) with the
SDK against raw ``requests``, rounds in ABBA order; throughput, sessions left, errors.

    .venv/bin/python benchmarks/bench_concurrency.py --quick
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import _raw
from _harness import (
    AGENT,
    PAYLOAD,
    Report,
    Settings,
    Step,
    abba,
    median,
    run_alone,
    section,
)
from _server import ServerProcess

from agentcube import AgentRuntimeClient

CONCURRENCY_GOAL = 0.97  # SDK / raw, throughput of 16 threads


def _sdk_lifecycles(server: ServerProcess, count: int) -> None:
    for _ in range(count):
        with AgentRuntimeClient(
            AGENT, router_url=server.router_url, workload_manager_url=server.workload_manager_url
        ) as c:
            for _ in range(5):
                c.invoke(PAYLOAD)


def _raw_lifecycles(server: ServerProcess, count: int) -> None:
    http = _raw.new_session()
    url = server.router_url + _raw.prefix("agent-runtimes", AGENT)
    try:
        for _ in range(count):
            sid = _raw.bootstrap(http, url)
            for _ in range(5):
                _raw.invoke(http, url, sid, PAYLOAD)
            _raw.delete(http, server.workload_manager_url, "agent-runtime", sid)
    finally:
        http.close()


def _round(
    server: ServerProcess, s: Settings, work: Callable[[ServerProcess, int], None]
) -> tuple[float, list[str]]:
    errors: list[str] = []

    def run() -> None:
        try:
            work(server, s.per_thread)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run) for _ in range(s.threads)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return s.threads * s.per_thread / elapsed, errors


def bench_concurrency(server: ServerProcess, s: Settings, report: Report) -> None:
    total = s.threads * s.per_thread
    section(
        f"concurrency ({s.threads} threads x {s.per_thread} lifecycles, {s.rounds} rounds, ABBA)"
    )
    _round(server, dataclasses.replace(s, per_thread=2), _sdk_lifecycles)  # warm-up
    _round(server, dataclasses.replace(s, per_thread=2), _raw_lifecycles)
    rates: dict[str, list[float]] = {"sdk": [], "raw": []}
    errors: list[str] = []
    works = {"sdk": _sdk_lifecycles, "raw": _raw_lifecycles}
    for _, which in abba(s.rounds, ("sdk", "raw")):
        rate, errs = _round(server, s, works[which])
        rates[which].append(rate)
        errors.extend(errs)
        print(f"    {which}: {rate:.1f} lifecycles/s ({total} lifecycles)", flush=True)
    left = server.sessions()
    ratio = median(rates["sdk"]) / median(rates["raw"])
    report.add(
        f"concurrency throughput ({s.threads}x{s.per_thread} lifecycles, SDK / raw)",
        f"{ratio:.3f} ({median(rates['sdk']):.0f} / {median(rates['raw']):.0f} lifecycles/s)",
        f">= {CONCURRENCY_GOAL}",
        ratio >= CONCURRENCY_GOAL and not errors,
    )
    report.add(
        "concurrency: sessions left on the server", str(len(left)), "0", not left, exact=True
    )
    report.add(
        "concurrency: errors",
        str(len(errors)) + (f" ({errors[0]})" if errors else ""),
        "0",
        not errors,
        exact=True,
    )


CONCURRENCY = Step(lambda b: bench_concurrency(b.server, b.s, b.report))
STEPS = [CONCURRENCY]

if __name__ == "__main__":
    run_alone(__doc__, STEPS, "bench_concurrency.py", "concurrency")
