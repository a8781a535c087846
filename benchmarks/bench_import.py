"""Import time: the sync clients' own share after requests + pydantic (``-X importtime``), the same
by wall clock, and compiled from source; with ``--upstream DIR``, ``import agentcube`` and the
import of the code-interpreter client against upstream's SDK.

    .venv/bin/python benchmarks/bench_import.py --quick
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from _harness import (
    FRESH,
    Report,
    Settings,
    Step,
    median,
    run_alone,
    section,
)

_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


# `import agentcube` loads its public names on first use: the figure imports both sync clients.
SYNC_CLIENTS = "from agentcube import AgentRuntimeClient, CodeInterpreterClient"


def _import_times(env: dict[str, str]) -> tuple[float, float]:
    """One run of ``-X importtime``: the cumulative ms of what the sync clients import after
    requests + pydantic, and requests + pydantic's."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import requests, pydantic; " + SYNC_CLIENTS],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    own = base = 0
    after = False  # past pydantic: the top-level imports of SYNC_CLIENTS
    for line in out.stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m and len(m.group(3)) == 1:  # top-level imports only
            if m.group(4) in ("requests", "pydantic"):
                base += int(m.group(2))
                after = m.group(4) == "pydantic"
            elif after:
                own += int(m.group(2))
    return own / 1000, base / 1000


def _own_and_total(env: dict[str, str], statement: str, cwd: str) -> tuple[float, float]:
    """One run of ``-X importtime`` of ``statement`` alone: the self time of the agentcube
    modules (ms) and of every import (ms)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=cwd,  # with -c the working directory comes first on sys.path: not this checkout
    )
    own = total = 0
    for line in out.stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            total += int(m.group(1))
            own += int(m.group(1)) if m.group(4).startswith("agentcube") else 0
    return own / 1000, total / 1000


UPSTREAM_GOAL = 1.2  # SDK / upstream's SDK, min of the runs


def bench_versus_upstream(s: Settings, report: Report, work: str, upstream: str) -> None:
    """``import agentcube`` and ``from agentcube import CodeInterpreterClient`` in fresh
    processes, this SDK against upstream's (its directory on PYTHONPATH), min of the runs."""
    runs = max(10, s.import_runs)
    section(f"import time against upstream's SDK (-X importtime, min of {runs} runs each)")
    cwd = os.path.join(work, "import-cwd")
    os.makedirs(cwd, exist_ok=True)
    base = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")
    }
    base["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache-versus")
    envs = {"sdk": base, "upstream": {**base, "PYTHONPATH": upstream}}
    for statement in ("import agentcube", "from agentcube import CodeInterpreterClient"):
        seen: dict[str, list[tuple[float, float]]] = {"sdk": [], "upstream": []}
        for env in envs.values():  # fill the bytecode caches
            _own_and_total(env, statement, cwd)
        for i in range(runs):
            for name in ("sdk", "upstream") if i % 2 == 0 else ("upstream", "sdk"):
                seen[name].append(_own_and_total(envs[name], statement, cwd))
        own = {name: min(r[0] for r in rows) for name, rows in seen.items()}
        total = {name: min(r[1] for r in rows) for name, rows in seen.items()}
        ratio = total["sdk"] / total["upstream"]
        report.add(
            f"`{statement}` in a fresh process, every import (SDK / upstream's SDK)",
            f"{ratio:.2f} ({total['sdk']:.1f} ms / {total['upstream']:.1f} ms; agentcube's own "
            f"modules {own['sdk']:.1f} ms / {own['upstream']:.1f} ms)",
            f"<= {UPSTREAM_GOAL}",
            ratio <= UPSTREAM_GOAL,
        )


def bench_import(s: Settings, report: Report, work: str) -> None:
    section(f"import time ({s.import_runs} runs each)")
    # As installed by pip, every module has its bytecode (.pyc). A bytecode cache in a temp
    # dir gives agentcube the same, whatever PYTHONDONTWRITEBYTECODE says; one untimed run
    # fills it.
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")
    # From source: no bytecode for agentcube (an editable install with
    # PYTHONDONTWRITEBYTECODE=1); requests and pydantic keep theirs.
    source = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    source["PYTHONDONTWRITEBYTECODE"] = "1"
    code_wall = (
        "import time, requests, pydantic; t = time.perf_counter(); " + SYNC_CLIENTS + "; "
        "print(time.perf_counter() - t)"
    )
    _import_times(cached)
    runs: dict[str, list[float]] = {"own": [], "base": [], "source": [], "wall": []}
    for _ in range(s.import_runs):
        own, base = _import_times(cached)
        runs["own"].append(own)
        runs["base"].append(base)
        runs["source"].append(_import_times(source)[0])
        out = subprocess.run(
            [sys.executable, "-c", code_wall],
            capture_output=True,
            text=True,
            check=True,
            env=cached,
        )
        runs["wall"].append(float(out.stdout) * 1000)
    ms = median(runs["own"])
    report.add(
        "import time: the sync clients' own share (-X importtime, after requests + pydantic)",
        f"{ms:.1f} ms (requests + pydantic: {median(runs['base']):.0f} ms)",
        "<= 30 ms",
        ms <= 30,
    )
    report.add(
        "import time: same, wall clock without -X importtime",
        f"{median(runs['wall']):.1f} ms",
        "informational",
        None,
    )
    report.add(
        "import time: same, agentcube compiled from source (no .pyc)",
        f"{median(runs['source']):.1f} ms",
        "informational",
        None,
    )


IMPORT = Step(lambda b: bench_import(b.s, b.report, b.work), FRESH)
VERSUS = Step(
    lambda b: bench_versus_upstream(b.s, b.report, b.work, b.upstream) if b.upstream else None,
    FRESH,
)
STEPS = [IMPORT, VERSUS]

if __name__ == "__main__":
    run_alone(__doc__, STEPS, "bench_import.py", "import time")
