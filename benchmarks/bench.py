"""Benchmark the SDK against hand-written ``requests`` calls, on loopback.

    .venv/bin/python benchmarks/bench.py            # full run (a few minutes)
    .venv/bin/python benchmarks/bench.py --quick    # small sizes, < 60 s (CI)

Prints one row per figure: what was measured, the goal, and whether it is met. The exit code
is 0 even when a goal is missed, unless ``--strict`` (any goal) or ``--strict-exact`` (only the
goals that do not depend on timing: request and connection counts, sessions left, memory, no
partial file).

The server (``agentcube.local``) runs in a separate process, so the client's GIL and RSS are
its own; its counters are read over a pipe between measurements. SDK and raw calls are
interleaved (ABBA order) in the same run and compared by the ratio of their medians.
BENCHMARKS.md explains the method and holds the figures of one full run.

Each family is a script of its own (``bench_overhead.py``, ``bench_wire.py``,
``bench_versus.py``, ``bench_first_use.py``, ``bench_concurrency.py``, ``bench_files.py``,
``bench_contexts.py``, ``bench_import.py``, ``bench_isolation.py``, same flags) over the
shared harness (``_harness.py``); this one runs them all, in this order.
"""

from __future__ import annotations

import sys

import bench_concurrency
import bench_contexts
import bench_files
import bench_first_use
import bench_import
import bench_isolation
import bench_overhead
import bench_versus
import bench_wire
from _harness import main

# The order of the rows (and of the load on the shared server) of every full run so far.
STEPS = [
    bench_overhead.INVOKE,
    bench_wire.REUSE,
    bench_overhead.LIFECYCLE,
    bench_overhead.CALLS,
    bench_versus.VERSUS,
    bench_versus.DOWNLOADS,
    bench_first_use.FIRST_USE,
    bench_wire.REQUESTS,
    bench_concurrency.CONCURRENCY,
    bench_files.MEMORY,
    bench_files.BROKEN_DOWNLOAD,
    bench_contexts.CONTEXTS,
    bench_import.IMPORT,
    bench_import.VERSUS,
    bench_isolation.ISOLATION,
]

if __name__ == "__main__":
    sys.exit(main(__doc__, STEPS, "bench.py"))
