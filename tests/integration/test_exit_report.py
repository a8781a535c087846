"""What a user sees at exit, with the exit cleanup off (the default): a child process leaves
owned sessions behind, and stderr names each one with what to do; nothing is deleted."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agentcube.local import LocalAgentCube

CHILD = r"""
import gc, os, sys
from agentcube import AgentRuntimeClient, CodeInterpreterClient

mode = sys.argv[1]
urls = {"workload_manager_url": os.environ["T_WM"], "router_url": os.environ["T_ROUTER"]}
if mode == "router-only":
    agent = AgentRuntimeClient("echo-agent", router_url=os.environ["T_ROUTER"])
    print("owned", agent.session_id, flush=True)
    print("bootstrapped", flush=True, file=sys.stderr)
    agent.stop()
    sys.exit(0)
ci = CodeInterpreterClient(**urls)
print("owned", ci.session_id, flush=True)
if mode == "dropped":
    def make_and_drop():
        client = CodeInterpreterClient(**urls)
        print("owned", client.session_id, flush=True)
    make_and_drop()
    gc.collect()
if mode == "detached":
    ci.detach()
if mode == "stopped":
    ci.stop()
if mode == "interrupted":
    raise KeyboardInterrupt
"""


def _run(mode: str, urls: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("T_", "PYTHONWARN"))}
    env.pop("WORKLOAD_MANAGER_URL", None)
    env.update(T_WM=urls["workload_manager_url"], T_ROUTER=urls["router_url"])
    return subprocess.run(
        [sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, timeout=60
    )


def _owned(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split()[1] for line in done.stdout.splitlines() if line.startswith("owned ")]


@contextlib.contextmanager
def _child(
    cube: LocalAgentCube, urls: dict[str, str], mode: str
) -> Iterator[tuple[subprocess.CompletedProcess[str], list[str]]]:
    """Run the child; afterwards delete what it left (this test's leak, not the suite's)."""
    done = _run(mode, urls)
    owned = _owned(done)
    try:
        yield done, owned
    finally:
        for sid in owned:
            cube.delete_session(sid)


def _report(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "still running at exit" in line]


@pytest.mark.parametrize("mode", ["plain", "interrupted", "dropped"])
def test_sessions_left_at_exit_are_named_with_what_to_do_and_kept(
    cube: LocalAgentCube, urls: dict[str, str], mode: str
) -> None:
    with _child(cube, urls, mode) as (done, owned):
        assert owned, done.stderr
        (line,) = _report(done.stderr)
        for sid in owned:
            assert sid in line
            assert cube.has_session(sid), "the report must not delete anything"
        for advice in ("stop()", "`with`", "detach()", "enable_exit_cleanup()"):
            assert advice in line
        if mode == "interrupted":
            assert "KeyboardInterrupt" in done.stderr


@pytest.mark.parametrize("mode", ["stopped", "detached"])
def test_nothing_is_reported_for_stopped_or_detached_sessions(
    cube: LocalAgentCube, urls: dict[str, str], mode: str
) -> None:
    with _child(cube, urls, mode) as (done, _):
        assert done.returncode == 0, done.stderr
        assert _report(done.stderr) == [], done.stderr
        assert "agentcube:" not in done.stderr


def test_an_agent_session_without_a_workload_manager_url_is_named_when_bootstrapped(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    with _child(cube, urls, "router-only") as (done, owned):
        (sid,) = owned
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stderr.splitlines() if sid in line]
        # Once, before anything else the script does, and on stderr whatever the filters.
        assert len(lines) == 1, done.stderr
        assert done.stderr.index(lines[0]) < done.stderr.index("bootstrapped")
        assert "WORKLOAD_MANAGER_URL" in lines[0] and "idle timeout" in lines[0]
        assert cube.has_session(sid)
