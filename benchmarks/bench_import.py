"""Import time: agentcube's own share after requests + pydantic (``-X importtime``), the same
by wall clock, and compiled from source.

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


def _import_times(env: dict[str, str]) -> tuple[float, float]:
    """One run of ``-X importtime``: agentcube's cumulative ms and requests + pydantic's."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import requests, pydantic; import agentcube"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    own = base = 0
    for line in out.stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m and len(m.group(3)) == 1:  # top-level imports only
            if m.group(4) == "agentcube":
                own = int(m.group(2))
            elif m.group(4) in ("requests", "pydantic"):
                base += int(m.group(2))
    return own / 1000, base / 1000


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
        "import time, requests, pydantic; t = time.perf_counter(); import agentcube; "
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
        "import time: agentcube's own share (-X importtime, after requests + pydantic)",
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
STEPS = [IMPORT]

if __name__ == "__main__":
    run_alone(__doc__, STEPS, "bench_import.py", "import time")
