"""First use in a fresh process: spawn to the answer of create + execute + stop, this SDK
against raw ``requests`` (and upstream's SDK with ``--upstream DIR``); see ``_firstuse.py``.

    .venv/bin/python benchmarks/bench_first_use.py --quick [--upstream DIR]
"""

from __future__ import annotations

import os

import _firstuse
from _harness import (
    Report,
    Settings,
    Step,
    run_alone,
    section,
)
from _server import ServerProcess


def bench_first_use(
    server: ServerProcess, s: Settings, report: Report, work: str, upstream: str | None
) -> None:
    who = "SDK, raw requests" + (", upstream's SDK" if upstream else "")
    section(
        f"first use in a fresh process ({who}; median of {s.first_use_runs} spawns each, "
        "interleaved)"
    )
    if upstream is not None and not os.path.isfile(
        os.path.join(upstream, "agentcube", "__init__.py")
    ):
        raise SystemExit(f"--upstream {upstream}: no agentcube package in that directory")
    cache = os.path.join(work, "pycache-first-use")
    seen = _firstuse.measure(
        server.workload_manager_url, server.router_url, s.first_use_runs, cache, upstream
    )
    for name, figures in seen.items():
        print(
            f"    {name}: {figures['total'] * 1e3:.1f} ms (import {figures['import'] * 1e3:.1f} "
            f"ms, create + execute + stop {figures['lifecycle'] * 1e3:.1f} ms)",
            flush=True,
        )
    sdk, raw = seen["sdk"]["total"], seen["raw"]["total"]
    pydantic = seen["pydantic"]["total"] - seen["python"]["total"]
    report.add(
        "first use: spawn to the answer of create + execute + stop (SDK / raw requests)",
        f"{sdk / raw:.2f} (import {seen['sdk']['import'] / seen['raw']['import']:.2f}, "
        f"lifecycle {seen['sdk']['lifecycle'] / seen['raw']['lifecycle']:.2f})",
        "informational",
        None,
    )
    if "upstream" not in seen:
        return
    theirs = seen["upstream"]["total"]
    report.add(
        "first use: spawn to the answer of create + execute + stop (SDK / upstream's SDK)",
        f"{sdk / theirs:.2f} (import {seen['sdk']['import'] / seen['upstream']['import']:.2f}, "
        f"lifecycle {seen['sdk']['lifecycle'] / seen['upstream']['lifecycle']:.2f}); "
        f"upstream + import pydantic alone: {(theirs + pydantic) / theirs:.2f}",
        "<= 1.2",
        sdk <= 1.2 * theirs,
    )


FIRST_USE = Step(lambda b: bench_first_use(b.server, b.s, b.report, b.work, b.upstream))
STEPS = [FIRST_USE]

if __name__ == "__main__":
    run_alone(__doc__, STEPS, "bench_first_use.py", "first use")
