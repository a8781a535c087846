"""Code contexts, live output and background process control on the async client: the same
flows as the sync one, first against aiohttp mocked by aioresponses (what is sent), then against the
local AgentCube (what happens)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agentcube import (
    AsyncBackgroundProcess,
    AsyncCodeContext,
    CodeContextError,
    CommandExecutionError,
    RetryPolicy,
)
from agentcube._flows import contexts as context_flows
from agentcube.aio import AsyncCodeInterpreterClient
from agentcube.local import LocalAgentCube

from .aiomock import Answer, MockRouter, Request, mocked

pytestmark = pytest.mark.asyncio

ROUTER = "http://127.0.0.1:9"
PREFIX = f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
HERE = {"x-agentcube-session-id": "ci-1"}


def executed(stdout: str = "", stderr: str = "", exit_code: int = 0) -> Answer:
    body = {"stdout": stdout, "stderr": stderr, "exit_code": exit_code, "duration": 0.001}
    return Answer(200, json=body, headers=HERE)


def answer(**kw: Any) -> str:
    body: dict[str, Any] = {"text": None, "results": [], "error": None, "stdout": "", "stderr": ""}
    body.update(kw)
    return json.dumps(body) + "\n"


@pytest.fixture
def mock() -> Iterator[MockRouter]:
    yield from mocked()


@pytest.fixture
def ci() -> Iterator[AsyncCodeInterpreterClient]:
    client = AsyncCodeInterpreterClient(
        session_id="ci-1",
        workload_manager_url="http://wm.invalid",
        router_url=ROUTER,
        retry=RetryPolicy(backoff=0, max_backoff=0),
    )
    yield client
    client._detach()


def argv_of(request: Request) -> list[str]:
    argv: list[str] = json.loads(request.content)["command"]
    return argv


# -- mocked ---------------------------------------------------------------------------------------


async def test_mocked_a_run_is_one_execute(mock: MockRouter, ci) -> None:
    execute = mock.post(PREFIX + "api/execute").mock(return_value=executed("77\n"))
    ctx = await ci.create_code_context()
    assert isinstance(ctx, AsyncCodeContext) and execute.call_count == 1
    execute.mock(return_value=executed(answer(text="2", stdout="x\n")))
    run = await ctx.run("1 + 1")
    assert (run.text, run.stdout, execute.call_count) == ("2", "x\n", 2)
    assert argv_of(execute.calls.last.request)[2] == context_flows.RUN
    execute.mock(return_value=executed("", "agentcube: the context's interpreter is gone", 3))
    with pytest.raises(CodeContextError, match="create a new context"):
        await ctx.run("1")
    execute.mock(return_value=executed(""))
    async with ctx:
        pass
    assert ctx.closed and argv_of(execute.calls.last.request)[2] == context_flows.CLOSE


async def test_mocked_a_live_run_follows_the_output(mock: MockRouter, ci) -> None:
    execute = mock.post(PREFIX + "api/execute").mock(return_value=executed("77\n"))
    ctx = await ci.create_code_context()
    execute.mock(return_value=executed(""))
    d = ctx.directory
    mock.get(PREFIX + f"api/files/{d}/result.json").mock(
        side_effect=[
            Answer(404, json={"error": "File not found"}, headers=HERE),
            Answer(200, text=answer(text="'ok'", stdout="a\nb\n"), headers=HERE),
        ]
    )
    mock.get(PREFIX + f"api/files/{d}/stdout").mock(
        side_effect=[
            Answer(206, content=b"a\n", headers=HERE),
            Answer(206, content=b"b\n", headers=HERE),
        ]
    )
    mock.get(PREFIX + f"api/files/{d}/stderr").mock(return_value=Answer(416, headers=HERE))
    seen: list[str] = []
    run = await ctx.run("...", on_stdout=seen.append)
    assert seen == ["a\n", "b\n"] and run.text == "'ok'"
    assert argv_of(execute.calls.last.request)[-1] == "follow"


async def test_mocked_background_process_control(mock: MockRouter, ci) -> None:
    execute = mock.post(PREFIX + "api/execute").mock(return_value=executed("31\n"))
    bg = await ci.execute_command("serve", background=True)
    assert isinstance(bg, AsyncBackgroundProcess) and bg == (31, bg.log_file)
    execute.mock(return_value=executed("running\n"))
    assert await bg.is_running()
    execute.mock(return_value=executed("exited 5\n"))
    assert await bg.wait(3) == 5
    execute.mock(return_value=executed(""))
    await bg.kill(9)
    assert argv_of(execute.calls.last.request)[-1] == "KILL"
    mock.get(PREFIX + f"api/files/{bg.log_file}").mock(
        return_value=Answer(200, content=b"log\n", headers=HERE)
    )
    assert await bg.output() == "log\n"
    execute.mock(return_value=executed(".agentcube/processes/ab\t31\tx.log\n"))
    assert await ci.list_processes() == [(31, "x.log")]


# -- against the local AgentCube ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cube() -> Iterator[LocalAgentCube]:
    with LocalAgentCube(quiet=True) as server:
        yield server
        assert server.sessions() == []


@pytest.fixture
def urls(cube: LocalAgentCube) -> dict[str, str]:
    return {"workload_manager_url": cube.workload_manager_url, "router_url": cube.router_url}


async def test_local_state_live_output_and_one_cell_at_a_time(urls: dict[str, str]) -> None:
    async with AsyncCodeInterpreterClient(**urls) as ci:
        async with await ci.create_code_context() as ctx:
            await ctx.run("import time\ndata = [3, 1, 2]\nlog = []")
            assert (await ctx.run("sorted(data)")).text == "[1, 2, 3]"
            cell = "log.append('in'); time.sleep(0.2); log.append('out')"
            await asyncio.gather(ctx.run(cell), ctx.run(cell))
            assert (await ctx.run("log")).text == "['in', 'out', 'in', 'out']"
            seen: list[tuple[float, str]] = []
            started = time.monotonic()
            run = await ctx.run(
                "print('first')\ntime.sleep(1)\nprint('second')",
                on_stdout=lambda chunk: seen.append((time.monotonic() - started, chunk)),
            )
            assert run.stdout == "first\nsecond\n" and seen[0][1] == "first\n"
            assert seen[0][0] < 0.6  # well before the cell ends
            timed_out = await ctx.run("time.sleep(30)", timeout=0.5)
            assert timed_out.error is not None and timed_out.error.name == "TimeoutError"
            assert (await ctx.run("len(data)")).text == "3"
        assert ctx.closed


async def test_local_live_command_and_background_processes(urls: dict[str, str]) -> None:
    async with AsyncCodeInterpreterClient(**urls) as ci:
        chunks: list[str] = []
        assert await ci.execute_command("echo a; sleep 0.3; echo b", on_stdout=chunks.append) == (
            "a\nb\n"
        )
        assert "".join(chunks) == "a\nb\n"
        with pytest.raises(CommandExecutionError):
            await ci.execute_command("exit 2", on_stderr=chunks.append)
        bg = await ci.execute_command("echo up; sleep 30", background=True)
        assert await bg.is_running()
        deadline = time.monotonic() + 5
        while not (await bg.output()).startswith("up"):  # past the watcher's start
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await bg.kill()
        assert await bg.wait(10) == 143 and not await bg.is_running()
        assert (await bg.output()).startswith("up\n")  # and the shell's "Terminated"
        assert (bg.pid, bg.log_file) in {(p.pid, p.log_file) for p in await ci.list_processes()}
