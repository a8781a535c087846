"""The async clients against the real local AgentCube (``agentcube.local``) over loopback.

One ``LocalAgentCube`` serves the module; every test leaves it holding no session it made.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.loopback import DripServer  # tests/ is on sys.path (pytest's rootdir import)

from agentcube import APITimeoutError, AsyncBackgroundProcess, RetryPolicy, StopOutcome
from agentcube.aio import AsyncAgentRuntimeClient, AsyncCodeInterpreterClient
from agentcube.local import LocalAgentCube

pytestmark = pytest.mark.asyncio

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def cube() -> Iterator[LocalAgentCube]:
    with LocalAgentCube(quiet=True) as server:
        yield server
        left = server.sessions()
        assert left == [], f"sessions left on the server: {left}"


@pytest.fixture
def urls(cube: LocalAgentCube) -> dict[str, str]:
    return {"workload_manager_url": cube.workload_manager_url, "router_url": cube.router_url}


@pytest.fixture(autouse=True)
def no_leaks(cube: LocalAgentCube) -> Iterator[None]:
    before = {s.session_id for s in cube.sessions()}
    yield
    leaked = {s.session_id for s in cube.sessions()} - before
    for sid in leaked:
        cube.delete_session(sid)
    assert not leaked, f"test leaked sessions: {sorted(leaked)}"


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> bool:
    """Poll ``check`` (something in a sandbox process) until it holds or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


# -- the full lifecycle ---------------------------------------------------------------------------


async def test_code_interpreter_lifecycle(
    cube: LocalAgentCube, urls: dict[str, str], tmp_path: Path
) -> None:
    ci = await AsyncCodeInterpreterClient.create(**urls)
    sid = ci.session_id
    assert sid is not None and ci.owns_session
    assert cube.has_session(sid)

    assert await ci.run_code("python", "print(6 * 7)") == "42\n"
    assert await ci.run_code("bash", "echo $((6 * 7))") == "42\n"
    assert await ci.execute_command(["printf", "%s", "a b"]) == "a b"

    await ci.write_file("hello async\n", "dir/a.txt")
    await ci.write_file(b"\x00\x01binary", "dir/b.bin", mode=0o600)
    listing = {f["name"]: f for f in await ci.list_files("dir")}
    assert set(listing) == {"a.txt", "b.bin"}
    assert listing["a.txt"]["size"] == len("hello async\n")
    assert listing["b.bin"]["size"] == 8
    assert not listing["a.txt"]["is_dir"]

    target = tmp_path / "missing" / "deeper" / "a.txt"
    await ci.download_file("dir/a.txt", target)
    assert target.read_text() == "hello async\n"

    payload = os.urandom(300 * 1024)
    source = tmp_path / "up.bin"
    source.write_bytes(payload)
    await ci.upload_file(source, "up/loaded.bin")
    remote = await ci.execute_command(["sha256sum", "up/loaded.bin"])
    assert remote.split()[0] == hashlib.sha256(payload).hexdigest()

    started = time.monotonic()
    bg = await ci.execute_command("echo started-bg; sleep 30", background=True)
    assert time.monotonic() - started < 10, "a background command must return at once"
    assert isinstance(bg, AsyncBackgroundProcess) and bg.pid > 0

    async def logged_start() -> bool:
        out = await ci.execute_command_result(["cat", bg.log_file])
        return "started-bg" in out["stdout"]

    assert await eventually(logged_start)
    assert (await ci.execute_command_result(["kill", "-0", str(bg.pid)]))["exit_code"] == 0
    await ci.execute_command(["kill", str(bg.pid)])

    assert await ci.stop() is StopOutcome.DELETED
    assert ci.session_id is None
    assert not cube.has_session(sid)


async def test_code_interpreter_async_with_and_attach(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    async with AsyncCodeInterpreterClient(**urls) as ci:
        sid = ci.session_id
        assert sid is not None and cube.has_session(sid)
        await ci.write_file("kept", "state.txt")
        attached = AsyncCodeInterpreterClient(session_id=sid, **urls)  # no await
        assert await attached.execute_command(["cat", "state.txt"]) == "kept"
        assert await attached.detach() == sid
        assert await attached.stop() is StopOutcome.KEPT
        assert cube.has_session(sid)
    assert not cube.has_session(sid)


async def test_agent_runtime_lifecycle(cube: LocalAgentCube, urls: dict[str, str]) -> None:
    ar = await AsyncAgentRuntimeClient.create("echo-agent", **urls)
    sid = ar.session_id
    assert sid is not None and ar.owns_session
    assert cube.has_session(sid)
    assert await ar.invoke({"prompt": "hi"}) == {"echo": {"prompt": "hi"}, "path": ""}
    assert await ar.invoke({"n": 1}, path="chat/v1") == {"echo": {"n": 1}, "path": "chat/v1"}

    attached = AsyncAgentRuntimeClient("echo-agent", session_id=sid, **urls)
    assert await attached.invoke("plain") == {"echo": "plain", "path": ""}
    assert await attached.stop() is StopOutcome.KEPT
    assert cube.has_session(sid)

    assert await ar.stop() is StopOutcome.DELETED
    assert not cube.has_session(sid)


async def test_agent_runtime_attached_delete(cube: LocalAgentCube, urls: dict[str, str]) -> None:
    owner = await AsyncAgentRuntimeClient.create("echo-agent", **urls)
    sid = await owner.detach()
    assert await owner.stop() is StopOutcome.KEPT
    assert cube.has_session(sid)
    attached = AsyncAgentRuntimeClient("echo-agent", session_id=sid, **urls)
    assert await attached.delete() is StopOutcome.DELETED
    assert not cube.has_session(sid)


# -- concurrency ----------------------------------------------------------------------------------


async def test_twenty_sessions_at_once(cube: LocalAgentCube, urls: dict[str, str]) -> None:
    before = {s.session_id for s in cube.sessions()}
    seen: list[str] = []

    async def one(i: int) -> str:
        async with AsyncCodeInterpreterClient(**urls) as ci:
            assert ci.session_id is not None
            seen.append(ci.session_id)
            await ci.write_file(f"n={i}", "n.txt")
            return await ci.run_code("python", "print(open('n.txt').read())")

    outputs = await asyncio.gather(*(one(i) for i in range(20)))
    assert outputs == [f"n={i}\n" for i in range(20)]
    assert len(set(seen)) == 20
    assert {s.session_id for s in cube.sessions()} == before
    assert not any(cube.has_session(sid) for sid in seen)


async def test_calls_past_the_connection_limit_share_its_connections(
    cube: LocalAgentCube, urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTCUBE_MAX_CONNECTIONS", "4")  # read when this loop's pool is made
    ar = await AsyncAgentRuntimeClient.create("echo-agent", **urls)
    try:
        cube.reset_counters()
        answers = await asyncio.gather(*(ar.invoke({"n": i}) for i in range(40)))
        assert answers == [{"echo": {"n": i}, "path": ""} for i in range(40)]
        # The bootstrap's connection and at most three more: never more than 4 at once.
        assert 1 <= cube.connections_accepted()["router"] <= 3
    finally:
        await ar.stop()


# -- files in constant memory ---------------------------------------------------------------------


class Ticker:
    """A task that wakes every 10 ms and records the longest gap between its wake-ups."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


async def measured(transfer: Awaitable[None]) -> tuple[int, Ticker]:
    """Run ``transfer`` beside a ticker; return the peak of memory traced meanwhile."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        async with Ticker() as ticker:
            await transfer
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, ticker


def _write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(MiB, left))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


async def test_a_64_mib_file_moves_in_constant_memory_without_blocking_the_loop(
    urls: dict[str, str], tmp_path: Path
) -> None:
    size = 64 * MiB
    source = tmp_path / "big.bin"
    digest = _write_random(source, size)
    back = tmp_path / "back" / "big.bin"
    async with AsyncCodeInterpreterClient(**urls) as ci:
        # The server runs in this process too: what tracemalloc sees includes its buffers.
        up_peak, up_ticker = await measured(ci.upload_file(source, "big.bin"))
        remote = await ci.execute_command(["sha256sum", "big.bin"])
        assert remote.split()[0] == digest
        down_peak, down_ticker = await measured(ci.download_file("big.bin", back))
    assert back.stat().st_size == size
    assert _hash_file(back) == digest
    for what, peak, ticker in (
        ("upload", up_peak, up_ticker),
        ("download", down_peak, down_ticker),
    ):
        assert peak < 16 * MiB, f"{what} peak {peak / MiB:.1f} MiB"
        assert ticker.ticks > 0, f"the loop never ran during the {what}"
        assert ticker.max_gap < 0.5, f"{what} blocked the loop for {ticker.max_gap:.2f} s"


# -- exit cleanup ---------------------------------------------------------------------------------

CHILD = """
import asyncio, os, sys
import agentcube
from agentcube.aio import AsyncAgentRuntimeClient, AsyncCodeInterpreterClient

if sys.argv[1] == "cleanup":
    agentcube.enable_exit_cleanup(timeout=10)
urls = {"workload_manager_url": os.environ["T_WM"], "router_url": os.environ["T_ROUTER"]}
kept = []

async def main():
    ci = await AsyncCodeInterpreterClient.create(**urls)
    ar = await AsyncAgentRuntimeClient.create("echo-agent", **urls)
    kept.extend([ci, ar])  # never stopped
    print("owned", ci.session_id, ar.session_id, flush=True)

asyncio.run(main())
"""


def _run_child(mode: str, urls: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("T_", "PYTHONWARN"))}
    env.update(T_WM=urls["workload_manager_url"], T_ROUTER=urls["router_url"])
    return subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", CHILD, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _owned(stdout: str) -> list[str]:
    for line in stdout.splitlines():
        if line.startswith("owned "):
            return line.split()[1:]
    raise AssertionError(f"no session ids in the child's output: {stdout!r}")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX")
async def test_exit_cleanup_deletes_the_sessions_of_async_clients(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    done = await asyncio.to_thread(_run_child, "cleanup", urls)
    assert done.returncode == 0, done.stderr
    ids = _owned(done.stdout)
    assert len(ids) == 2
    for sid in ids:
        assert not cube.has_session(sid), f"exit cleanup left {sid}"
        assert sid not in done.stderr, done.stderr  # nothing warned about it either

    # Without the switch, the same child leaves both (so the test above can fail).
    plain = await asyncio.to_thread(_run_child, "plain", urls)
    assert plain.returncode == 0, plain.stderr
    left = _owned(plain.stdout)
    try:
        for sid in left:
            assert cube.has_session(sid)
            assert sid in plain.stderr  # a ResourceWarning names it
    finally:
        for sid in left:
            cube.delete_session(sid)


# -- a server that drips its answer ---------------------------------------------------------------


@pytest.fixture
def drip() -> Iterator[DripServer]:
    def body(method: str, target: str) -> tuple[int, bytes]:
        if "api/files" in target:
            return 200, json.dumps({"files": [{"name": "a" * 50}]}).encode()
        if "agent-runtimes" in target:
            return 200, json.dumps({"echo": "x" * 100}).encode()
        return 200, json.dumps({"message": "Sandbox deleted successfully" + " " * 50}).encode()

    server = DripServer(body, interval=0.05)  # ~200 bytes: ~10 s per answer
    yield server
    server.close()


@pytest.mark.parametrize("attempts", [1, 3])
async def test_a_dripping_server_cannot_hold_a_call_past_connect_plus_read(
    drip: DripServer, attempts: int
) -> None:
    # The answer arrives a byte every 50 ms, so no single read ever waits the read timeout:
    # only a bound on the whole attempt stops it (the whole answer would take ~10 s).
    connect, read = 0.2, 0.5
    per_attempt = connect + read + 0.3  # the bound, plus slack
    retry = RetryPolicy(max_attempts=attempts, backoff=0, max_backoff=0)
    urls = {"workload_manager_url": drip.url, "router_url": drip.url}
    ci = AsyncCodeInterpreterClient(
        session_id="s-drip", timeout=read, connect_timeout=connect, retry=retry, **urls
    )
    ar = AsyncAgentRuntimeClient(
        "echo-agent", session_id="s-drip", timeout=read, connect_timeout=connect, **urls
    )
    calls: list[tuple[str, Callable[[], Awaitable[Any]], int]] = [
        ("list_files", ci.list_files, attempts),  # a GET: may be retried
        ("stop", ci.stop, attempts),  # the DELETE: may be retried
        ("invoke", lambda: ar.invoke({"q": 1}), 1),  # a POST: sent once
    ]
    for name, call, most in calls:
        seen = len(drip.requests)
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await call()
        ended = time.monotonic()
        arrivals = drip.arrivals[seen:]
        assert 1 <= len(arrivals) <= most, (name, drip.requests[seen:])
        assert ended - started < len(arrivals) * per_attempt + 0.2, (name, ended - started)
        # Each attempt, from its arrival at the server to the next one (or the end), is bounded.
        for begin, end in zip(arrivals, [*arrivals[1:], ended], strict=True):
            assert end - begin < per_attempt, (name, end - begin)
    await ci.detach()
