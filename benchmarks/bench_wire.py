"""What goes on the wire: TCP connections a client process opens (connection reuse), and the
requests each lifecycle operation sends, counted by the server. Their goals do not depend
on timing (the run_code latency row is informational).

    .venv/bin/python benchmarks/bench_wire.py --quick
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from _harness import (
    AGENT,
    HERE,
    PAYLOAD,
    Report,
    Settings,
    Step,
    median,
    run_alone,
    section,
)
from _server import ServerProcess

from agentcube import AgentRuntimeClient, CodeInterpreterClient


def _connections_for(server: ServerProcess, mode: str, count: int) -> dict[str, int]:
    """TCP connections the server accepts while a fresh process runs ``_connprobe.py``."""
    server.reset()
    probe = os.path.join(HERE, "_connprobe.py")
    args = [mode, server.workload_manager_url, server.router_url, str(count)]
    subprocess.run([sys.executable, probe, *args], check=True, timeout=300)
    return server.connections()


def bench_reuse(server: ServerProcess, s: Settings, report: Report) -> None:
    n = s.reuse_invokes
    section(
        f"connection reuse (fresh client processes: {n} invokes; {s.reuse_lifecycles} lifecycles)"
    )
    seen = _connections_for(server, "one-client", n)
    router, wm = seen["router"], seen["workload_manager"]
    report.add(
        f"connection reuse: TCP connections for 1 client, bootstrap + {n} invokes + stop",
        f"router {router}, workload manager {wm}",
        "1 (router)",
        router == 1 and wm <= 1,
        exact=True,
    )
    seen = _connections_for(server, "lifecycles", s.reuse_lifecycles)
    router, wm = seen["router"], seen["workload_manager"]
    report.add(
        f"connection reuse: TCP connections for {s.reuse_lifecycles} clients one after another "
        "(create, 5 invokes, stop)",
        f"router {router}, workload manager {wm}",
        "1 per service",
        router == 1 and wm == 1,
        exact=True,
    )


def _count(server: ServerProcess, action: Callable[[], Any]) -> list[tuple[str, str, str]]:
    server.reset()
    action()
    return server.requests()


def _describe(seen: list[tuple[str, str, str]]) -> str:
    if not seen:
        return "0"
    short = (f"{m} {re.sub(r'/sessions/[^/]+$|^.*/invocations/', _short, p)}" for _, m, p in seen)
    return f"{len(seen)}: " + ", ".join(short)


def _short(match: re.Match[str]) -> str:
    return "/sessions/ID" if match.group(0).startswith("/sessions/") else ".../invocations/"


def bench_requests(server: ServerProcess, report: Report) -> None:
    section("requests per lifecycle operation (counted by the server)")
    wm, router = server.workload_manager_url, server.router_url
    box: dict[str, Any] = {}

    def create() -> None:
        box["ci"] = CodeInterpreterClient(workload_manager_url=wm, router_url=router)

    seen = _count(server, create)
    report.add(
        "requests: code-interpreter create", _describe(seen), "1", len(seen) == 1, exact=True
    )
    ci: CodeInterpreterClient = box["ci"]
    seen = _count(server, lambda: ci.run_code("python", "print(6 * 7)"))
    report.add(
        "requests: one run_code", _describe(seen), "2 (see note)", len(seen) == 2, exact=True
    )
    # What the second request costs: the script's write, next to the whole run_code.
    run, write = [], []
    for _ in range(20):
        started = time.perf_counter()
        ci.run_code("python", "print(6 * 7)")
        run.append(time.perf_counter() - started)
        started = time.perf_counter()
        ci.write_file("print(6 * 7)", "bench-script.py")
        write.append(time.perf_counter() - started)
    report.add(
        "run_code latency, and the script write's part of it",
        f"{median(run) * 1e3:.1f} ms, write {median(write) * 1e3:.1f} ms",
        "informational",
        None,
    )
    seen = _count(server, ci.stop)
    report.add("requests: owned stop", _describe(seen), "1", len(seen) == 1, exact=True)
    seen = _count(server, ci.stop)
    report.add("requests: second stop", _describe(seen), "0", len(seen) == 0, exact=True)

    owner = AgentRuntimeClient(AGENT, router_url=router, workload_manager_url=wm)
    try:
        attached = AgentRuntimeClient(
            AGENT, router_url=router, workload_manager_url=wm, session_id=owner.session_id
        )
        attached.invoke(PAYLOAD)
        seen = _count(server, attached.stop)
        report.add(
            "requests: attached agent-runtime stop",
            _describe(seen),
            "0",
            len(seen) == 0,
            exact=True,
        )
        seen = _count(server, attached.stop)
        report.add(
            "requests: attached agent-runtime second stop",
            _describe(seen),
            "0",
            len(seen) == 0,
            exact=True,
        )
    finally:
        owner.stop()


REUSE = Step(lambda b: bench_reuse(b.server, b.s, b.report))
REQUESTS = Step(lambda b: bench_requests(b.server, b.report))
STEPS = [REUSE, REQUESTS]

if __name__ == "__main__":
    run_alone(__doc__, STEPS, "bench_wire.py", "requests and connections")
