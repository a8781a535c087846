"""What isolating a session costs: create and ``execute_command("true")``, isolated against
unisolated, each against a server of its own (both running at once, calls interleaved in ABBA
order), and the median create of an isolated session against its goal.

    .venv/bin/python benchmarks/bench_isolation.py --quick
"""

from __future__ import annotations

import os
import time
from typing import Any

from _harness import INTERPRETER, Bench, Step, interleaved_many, median, run_alone
from _harness import section as start_section
from _server import ServerProcess

from agentcube import CodeInterpreterClient

CREATE_GOAL = 0.050  # seconds, median, isolated session create


def _client(server: ServerProcess) -> CodeInterpreterClient:
    return CodeInterpreterClient(
        INTERPRETER,
        workload_manager_url=server.workload_manager_url,
        router_url=server.router_url,
    )


def bench_isolation(bench: Bench) -> None:
    s, report = bench.s, bench.report
    servers: dict[str, ServerProcess] = {}
    try:
        for mode in ("namespaces", "none"):
            root = os.path.join(bench.work, f"isolation-{mode}")
            os.makedirs(root)
            options: dict[str, Any] = {"session_timeout": None, "isolation": mode}
            servers[mode] = ServerProcess(root, **options)
        creates = max(20, s.calls // 10)
        start_section(f"isolation: create ({creates} each) and execute ({s.calls} each)")

        def create(mode: str) -> Any:
            def run(_: int) -> None:
                started = time.perf_counter()
                client = _client(servers[mode])
                elapsed.setdefault(mode, []).append(time.perf_counter() - started)
                client.stop()

            return run

        elapsed: dict[str, list[float]] = {}
        for mode in servers:  # warm-up: the first sandbox starts the zygote
            create(mode)(0)
        elapsed.clear()
        interleaved_many(creates, {mode: create(mode) for mode in servers})
        clients = {mode: _client(server) for mode, server in servers.items()}
        try:
            calls = {mode: (lambda c: lambda i: c.execute_command("true"))(client)
                     for mode, client in clients.items()}  # fmt: skip
            for _ in range(20):
                for call in calls.values():
                    call(0)
            wall, _ = interleaved_many(s.calls, calls)
        finally:
            for client in clients.values():
                client.stop()
        isolated, plain = median(elapsed["namespaces"]), median(elapsed["none"])
        report.add(
            "isolated session create (median)",
            f"{isolated * 1e3:.1f} ms",
            f"< {CREATE_GOAL * 1e3:.0f} ms",
            isolated < CREATE_GOAL,
        )
        report.add(
            "create: isolated / unisolated (median)",
            f"{isolated / plain:.2f} ({isolated * 1e3:.1f} ms / {plain * 1e3:.1f} ms)",
            "informational",
            None,
        )
        run_isolated, run_plain = median(wall["namespaces"]), median(wall["none"])
        report.add(
            'execute_command("true"): isolated / unisolated (median)',
            f"{run_isolated / run_plain:.2f} ({run_isolated * 1e3:.1f} ms / "
            f"{run_plain * 1e3:.1f} ms)",
            "informational",
            None,
        )
    finally:
        for server in servers.values():
            server.stop()


ISOLATION = Step(bench_isolation, phase="fresh")
STEPS = [ISOLATION]

if __name__ == "__main__":
    run_alone(__doc__, STEPS, "bench_isolation.py", "isolation costs")
