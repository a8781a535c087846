"""Async clients: ten code-interpreter sessions at once, and an agent-runtime invoke.

With WORKLOAD_MANAGER_URL / ROUTER_URL set, this talks to that AgentCube; with neither set, it
starts the local AgentCube (agentcube.local) in this process and runs against it.
Needs aiohttp: pip install "agentcube-sdk[async]".
"""

from __future__ import annotations

import asyncio
import os
import time

from agentcube import AsyncAgentRuntimeClient, AsyncCodeInterpreterClient, StopOutcome
from agentcube.local import configured_or_local


async def square_in_a_sandbox(n: int) -> int:
    # `async with` creates the session on entry and deletes it on exit (also on error or
    # cancellation).
    async with AsyncCodeInterpreterClient() as ci:
        await ci.write_file(str(n), "n.txt")
        out = await ci.run_code("python", "print(int(open('n.txt').read()) ** 2)")
        return int(out)


async def main() -> None:
    started = time.perf_counter()
    squares = await asyncio.gather(*(square_in_a_sandbox(n) for n in range(10)))
    print(f"10 sandboxes at once -> {squares} in {time.perf_counter() - started:.2f} s")
    assert squares == [n * n for n in range(10)]

    agent = os.environ.get("AGENT_NAME", "echo-agent")
    runtime = await AsyncAgentRuntimeClient.create(agent)  # bootstraps a session it owns
    try:
        print(f"agent session {runtime.session_id}")
        print("invoke ->", await runtime.invoke({"prompt": "hello"}))
    finally:
        outcome = await runtime.stop()  # deletes the owned session
    print(f"agent stop() -> {outcome.value}")
    assert outcome is StopOutcome.DELETED


if __name__ == "__main__":
    with configured_or_local():
        asyncio.run(main())
