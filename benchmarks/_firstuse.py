"""First use in a fresh process: spawn, import, create + execute("true") + stop, per contender.

Each run is a new interpreter (``sys.executable``) that imports its client and runs one
code-interpreter lifecycle against the benchmark's server, then prints one line; the parent
times spawn to that line (what a CLI, a serverless function or an MCP server started per
request pays). Contenders are interleaved run by run:

- ``sdk``: this SDK (``CodeInterpreterClient``).
- ``raw``: hand-written ``requests``, the same three requests the SDK sends.
- ``upstream``: upstream's SDK, from a checkout given with ``--upstream`` (its directory on
  ``PYTHONPATH``, so its ``agentcube`` package shadows this one); skipped without it.
- ``python``: ``python -c pass`` (the interpreter alone), and ``pydantic``:
  ``python -c "import pydantic"``, so the goal (SDK <= upstream + what importing pydantic
  alone costs) is measured in the same run.

Every contender gets bytecode (as ``pip install`` gives): a cache in a temporary directory
(``PYTHONPYCACHEPREFIX``), filled by one untimed run each.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import _raw

_SDK = """\
import time
t0 = time.perf_counter()
from agentcube import CodeInterpreterClient
t1 = time.perf_counter()
client = CodeInterpreterClient(workload_manager_url={wm!r}, router_url={router!r})
client.execute_command("true")
client.stop()
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, flush=True)
"""

# The three requests a user would send by hand (upstream's bodies: the argv ["true"]).
_RAW = """\
import time
t0 = time.perf_counter()
import requests
t1 = time.perf_counter()
http = requests.Session()
http.headers["User-Agent"] = {user_agent!r}
answer = http.post(
    {wm!r} + "/v1/code-interpreter",
    json={{"name": "my-interpreter", "namespace": "default", "ttl": 3600, "metadata": {{}}}},
    timeout=(5.0, 150.0),
)
answer.raise_for_status()
sid = answer.json()["sessionId"]
answer = http.post(
    {router!r} + "/v1/namespaces/default/code-interpreters/my-interpreter/invocations/api/execute",
    json={{"command": {argv!r}, "timeout": "120s"}},
    headers={{"x-agentcube-session-id": sid}},
    timeout=(5.0, 160.0),
)
answer.raise_for_status()
if answer.json()["exit_code"] != 0:
    raise SystemExit("the command failed")
answer = http.delete({wm!r} + "/v1/code-interpreter/sessions/" + sid, timeout=(5.0, 120.0))
if answer.status_code not in (200, 404):
    answer.raise_for_status()
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, flush=True)
"""

# Upstream's SDK 0.1.0 has the same constructor and calls.
_UPSTREAM = _SDK

_PYTHON = "print(0, 0, flush=True)"
_PYDANTIC = """\
import time
t0 = time.perf_counter()
import pydantic
print(time.perf_counter() - t0, 0, flush=True)
"""

CONTENDERS = ("sdk", "raw", "upstream", "python", "pydantic")


def _programs(wm: str, router: str) -> dict[str, str]:
    fields = {"wm": wm, "router": router, "user_agent": _raw.USER_AGENT, "argv": _raw.TRUE_ARGV}
    return {
        "sdk": _SDK.format(**fields),
        "raw": _RAW.format(**fields),
        "upstream": _UPSTREAM.format(**fields),
        "python": _PYTHON,
        "pydantic": _PYDANTIC,
    }


def _env(cache: str, upstream: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    for name in ("WORKLOAD_MANAGER_URL", "ROUTER_URL", "PYTHONPATH"):
        env.pop(name, None)
    if upstream is not None:
        env["PYTHONPATH"] = upstream
    return env


def _spawn(program: str, env: dict[str, str]) -> tuple[float, float, float]:
    """(spawn to the answer line, import, the lifecycle) in seconds."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", program],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # upstream logs at INFO to stderr
        env=env,
        # With -c the working directory comes first on sys.path: run in the (empty) bytecode
        # cache directory, or this checkout's agentcube would shadow upstream's package.
        cwd=env["PYTHONPYCACHEPREFIX"],
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    elapsed = time.perf_counter() - started
    child.stdout.close()
    if child.wait(timeout=60) != 0 or not line:
        raise RuntimeError(f"a first-use run failed (exit code {child.returncode})")
    imported, lifecycle = (float(x) for x in line.split())
    return elapsed, imported, lifecycle


def measure(
    wm: str, router: str, runs: int, cache: str, upstream: str | None = None
) -> dict[str, dict[str, float]]:
    """Median seconds per contender: ``total`` (spawn to answer), ``import``, ``lifecycle``."""
    programs = _programs(wm, router)
    os.makedirs(cache, exist_ok=True)
    envs = {name: _env(cache, None) for name in CONTENDERS}
    names = [n for n in CONTENDERS if n != "upstream"]
    if upstream is not None:
        envs["upstream"] = _env(cache, upstream)
        names.insert(2, "upstream")
    for name in names:  # fill the bytecode caches, warm the server
        _spawn(programs[name], envs[name])
    seen: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    for i in range(runs):
        shift = i % len(names)  # each contender in each position in turn
        for name in names[shift:] + names[:shift]:
            seen[name].append(_spawn(programs[name], envs[name]))
    return {
        name: {
            key: statistics.median(run[index] for run in runs_)
            for index, key in enumerate(("total", "import", "lifecycle"))
        }
        for name, runs_ in seen.items()
    }
