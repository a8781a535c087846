"""Send a fixed sequence of SDK calls from a fresh process (so no connection exists yet).

    python benchmarks/_connprobe.py one-client WM_URL ROUTER_URL N
        one AgentRuntimeClient: bootstrap, N invokes, stop
    python benchmarks/_connprobe.py lifecycles WM_URL ROUTER_URL N
        N AgentRuntimeClients one after the other: bootstrap, 5 invokes, stop

The benchmark reads the server's count of accepted TCP connections around it.
"""

from __future__ import annotations

import sys

from agentcube import AgentRuntimeClient

PAYLOAD = {"prompt": "hello"}


def main(argv: list[str]) -> int:
    mode, wm_url, router_url, count = argv[0], argv[1], argv[2], int(argv[3])
    if mode == "one-client":
        with AgentRuntimeClient(
            "echo-agent", router_url=router_url, workload_manager_url=wm_url
        ) as client:
            for _ in range(count):
                client.invoke(PAYLOAD)
    elif mode == "lifecycles":
        for _ in range(count):
            with AgentRuntimeClient(
                "echo-agent", router_url=router_url, workload_manager_url=wm_url
            ) as client:
                for _ in range(5):
                    client.invoke(PAYLOAD)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
