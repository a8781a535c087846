"""An agent's notebook: a code context loads data in one cell and summarises it in the next,
with the output of a slow cell shown as it is printed, and a background job it can stop.

With WORKLOAD_MANAGER_URL / ROUTER_URL set, this talks to that AgentCube; with neither set, it
starts the local AgentCube (agentcube.local) in this process and runs against it.
"""

from __future__ import annotations

import sys

from agentcube import CodeInterpreterClient
from agentcube.local import configured_or_local

# What a model would write, cell by cell.
LOAD = """
import csv, io, statistics
raw = "city,temp\\nOslo,4\\nLima,19\\nCairo,27\\nOslo,6\\nLima,21\\n"
rows = list(csv.DictReader(io.StringIO(raw)))
print(f"loaded {len(rows)} rows")
"""
SUMMARISE = """
by_city = {}
for row in rows:
    by_city.setdefault(row["city"], []).append(float(row["temp"]))
{city: statistics.mean(temps) for city, temps in sorted(by_city.items())}
"""
SLOW = """
import time
for step in range(1, 4):
    print(f"fitting step {step}/3", flush=True)
    time.sleep(0.4)
"""


def show(chunk: str) -> None:
    sys.stdout.write("  live | " + chunk)


def main() -> None:
    with configured_or_local(), CodeInterpreterClient() as ci:
        with ci.create_code_context("python") as ctx:
            print(ctx.run(LOAD).stdout.strip())  # the rows stay in the interpreter
            summary = ctx.run(SUMMARISE)
            print("mean temperature by city ->", summary.text)

            failed = ctx.run("by_city['Paris']")
            assert failed.error is not None  # an error in the code is a result
            print("a bad cell ->", failed.error.name, failed.error.value)

            print("a slow cell, its output as it comes:")
            ctx.run(SLOW, on_stdout=show)
            assert ctx.run("len(rows)").text == "5"  # still there

        job = ci.execute_command("while true; do date; sleep 1; done", background=True)
        print(f"background job {job.pid} running: {job.is_running()}")
        job.kill()
        print(f"stopped with exit code {job.wait(10)}")


if __name__ == "__main__":
    main()
