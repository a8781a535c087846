"""One contender of ``bench_versus.py`` in a process of its own: this SDK (``sdk``),
upstream's SDK (``upstream``, its directory on ``PYTHONPATH``) or hand-written requests with
upstream's wire bodies (``raw``).

    python benchmarks/_contender.py WHO WORKLOAD_MANAGER_URL ROUTER_URL

It opens a code-interpreter and an agent-runtime session, prints ``ready``, then reads lines
``OP N`` from stdin and runs ``N`` calls of ``OP`` for each, answering one JSON line: the wall
and CPU seconds of every call. ``quit`` ends it, its sessions deleted.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from _harness import AGENT, INTERPRETER, PAYLOAD

TEXT_1K = ("0123456789abcdef" * 64)[:1024]  # write_file of 1 KiB (upstream's takes text only)


def _sdk_ops(who: str, wm: str, router: str) -> tuple[dict[str, Callable[[], Any]], list[Any]]:
    # This SDK or upstream's, whichever ``agentcube`` the path gives: the same calls.
    from agentcube import AgentRuntimeClient, CodeInterpreterClient

    ci = CodeInterpreterClient(workload_manager_url=wm, router_url=router)
    if who == "sdk":  # its stop() deletes the session it bootstrapped
        ar = AgentRuntimeClient(AGENT, router_url=router, workload_manager_url=wm)
    else:  # upstream's has no delete: the session is deleted by hand at the end
        ar = AgentRuntimeClient(AGENT, router_url=router)

    def lifecycle() -> None:
        client = CodeInterpreterClient(workload_manager_url=wm, router_url=router)
        client.execute_command("true")
        client.stop()

    ops: dict[str, Callable[[], Any]] = {
        "execute": lambda: ci.execute_command("true"),
        "write": lambda: ci.write_file(TEXT_1K, f"versus-{who}.txt"),
        "lifecycle": lifecycle,
        "invoke": lambda: ar.invoke(PAYLOAD),
    }
    return ops, [ci, ar]


def _raw_ops(wm: str, router: str) -> tuple[dict[str, Callable[[], Any]], list[Any]]:
    import _raw

    http = _raw.new_session()
    base = router + _raw.prefix("code-interpreters", INTERPRETER)
    sid = _raw.create(http, wm, "code-interpreter", INTERPRETER)
    agent_url = router + _raw.prefix("agent-runtimes", AGENT)
    agent_sid = _raw.bootstrap(http, agent_url)
    data = TEXT_1K.encode()

    def lifecycle() -> None:
        new = _raw.create(http, wm, "code-interpreter", INTERPRETER)
        _raw.execute(http, base, new, _raw.TRUE_ARGV)
        _raw.delete(http, wm, "code-interpreter", new)

    class _Closer:
        def stop(self) -> None:
            _raw.delete(http, wm, "code-interpreter", sid)
            _raw.delete(http, wm, "agent-runtime", agent_sid)
            http.close()

    ops: dict[str, Callable[[], Any]] = {
        "execute": lambda: _raw.execute(http, base, sid, _raw.TRUE_ARGV),
        "write": lambda: _raw.write(http, base, sid, data, "versus-raw.txt"),
        "lifecycle": lifecycle,
        "invoke": lambda: _raw.invoke(http, agent_url, agent_sid, PAYLOAD),
    }
    return ops, [_Closer()]


def main() -> None:
    who, wm, router = sys.argv[1:4]
    ops, clients = _raw_ops(wm, router) if who == "raw" else _sdk_ops(who, wm, router)
    perf, cpu_clock = time.perf_counter_ns, time.process_time_ns
    print("ready", flush=True)
    for line in sys.stdin:
        op, count = line.split()
        if op == "quit":
            break
        call = ops[op]
        wall: list[float] = []
        cpu: list[float] = []
        for _ in range(int(count)):
            c0, t0 = cpu_clock(), perf()
            call()
            t1, c1 = perf(), cpu_clock()
            wall.append((t1 - t0) / 1e9)
            cpu.append((c1 - c0) / 1e9)
        print(json.dumps([wall, cpu]), flush=True)
    for client in clients:
        if hasattr(client, "stop"):
            client.stop()
            continue
        session_id = client.session_id  # upstream's agent-runtime client: close() keeps it
        client.close()
        if session_id:
            import requests

            requests.delete(f"{wm}/v1/agent-runtime/sessions/{session_id}", timeout=30)


if __name__ == "__main__":
    main()
