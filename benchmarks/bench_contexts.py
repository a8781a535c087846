"""Code contexts and live output: a context run against a command (the median of
``ctx.run("1 + 1")`` over the median of ``execute_command("true")``, interleaved in ABBA
order), a context's start, and how long after a print its callback hears of it.

    .venv/bin/python benchmarks/bench_contexts.py --quick
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from _harness import INTERPRETER, Report, Settings, Step, interleaved_many, median, run_alone
from _harness import section as start_section
from _server import ServerProcess

from agentcube import CodeInterpreterClient

RUN_GOAL = 1.5  # context run / command, median latency
FIRST_CHUNK_GOAL = 0.5  # seconds from a print in the sandbox to its callback


def bench_context_run(server: ServerProcess, s: Settings, report: Report) -> None:
    start_section(f"context run against a command ({s.calls} calls each, interleaved)")
    client = CodeInterpreterClient(
        INTERPRETER,
        router_url=server.router_url,
        workload_manager_url=server.workload_manager_url,
    )
    try:
        starts = []
        for _ in range(5):
            started = time.perf_counter()
            client.create_code_context().close()
            starts.append(time.perf_counter() - started)
        ctx = client.create_code_context()
        assert ctx.run("1 + 1").text == "2"
        calls: dict[str, Callable[[int], Any]] = {
            "context": lambda i: ctx.run("1 + 1"),
            "command": lambda i: client.execute_command("true"),
        }
        for _ in range(20):  # warm-up
            for call in calls.values():
                call(0)
        wall, _ = interleaved_many(s.calls, calls)
        ratio = median(wall["context"]) / median(wall["command"])
        report.add(
            'context run: ctx.run("1 + 1") / execute_command("true") (median latency)',
            f"{ratio:.2f} ({median(wall['context']) * 1e3:.1f} ms / "
            f"{median(wall['command']) * 1e3:.1f} ms)",
            f"<= {RUN_GOAL}",
            ratio <= RUN_GOAL,
        )
        report.add(
            "context start + close (median of 5)",
            f"{median(starts) * 1e3:.0f} ms",
            "informational",
            None,
        )
        bench_first_chunk(client, ctx, 5 if s.calls < 1000 else 20, report)
        ctx.close()
    finally:
        client.stop()


def bench_first_chunk(client: CodeInterpreterClient, ctx: Any, runs: int, report: Report) -> None:
    """The sandbox prints its clock (local: the same clock as ours); the callback notes when it
    heard of it."""
    start_section(f"live output: first chunk latency ({runs} runs each)")

    def latency(run: Callable[[Callable[[str], None]], Any]) -> float:
        heard: list[float] = []
        printed: list[float] = []

        def callback(chunk: str) -> None:
            if not heard:
                heard.append(time.time())
                printed.append(float(chunk.split()[0]))

        run(callback)
        return heard[0] - printed[0]

    cell = "import time\nprint(time.time(), flush=True)\ntime.sleep(1)"
    command = 'python3 -c "import time; print(time.time(), flush=True)"; sleep 1'
    in_context = [latency(lambda cb: ctx.run(cell, on_stdout=cb)) for _ in range(runs)]
    in_command = [
        latency(lambda cb: client.execute_command(command, on_stdout=cb)) for _ in range(runs)
    ]
    for name, values in (("ctx.run", in_context), ("execute_command", in_command)):
        report.add(
            f"live output: print to callback, {name} (median, max)",
            f"{median(values) * 1e3:.0f} ms, {max(values) * 1e3:.0f} ms",
            f"<= {FIRST_CHUNK_GOAL * 1e3:.0f} ms",
            max(values) <= FIRST_CHUNK_GOAL,
        )


CONTEXTS = Step(lambda b: bench_context_run(b.server, b.s, b.report))
STEPS = [CONTEXTS]

if __name__ == "__main__":
    run_alone(__doc__, STEPS, "bench_contexts.py", "code contexts and live output")
