"""Exit and crash: a child process uses the SDK against the local server run by this test.

With ``enable_exit_cleanup()`` the sessions the child still owns are deleted at normal exit and
on SIGTERM; without it they are left, and a ResourceWarning names each one. Attached sessions
are never touched.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from agentcube import AgentRuntimeClient, CodeInterpreterClient
from agentcube.local import LocalAgentCube

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHILD = r"""
import gc, os, sys, threading, time
import agentcube
from agentcube import AgentRuntimeClient, CodeInterpreterClient

mode = set(sys.argv[1].split(","))
urls = {"workload_manager_url": os.environ["T_WM"], "router_url": os.environ["T_ROUTER"]}
if "cleanup" in mode:
    agentcube.enable_exit_cleanup(timeout=float(os.environ.get("T_CLEANUP_TIMEOUT", "10")))
attached = [
    CodeInterpreterClient(session_id=os.environ["T_ATTACH_CI"], **urls),
    AgentRuntimeClient("echo-agent", session_id=os.environ["T_ATTACH_AR"], **urls),
]
owned = AgentRuntimeClient("echo-agent", **urls) if "ar" in mode else CodeInterpreterClient(**urls)
print("owned", owned.session_id, flush=True)
if "dropped" in mode:
    def make_and_drop():
        client = CodeInterpreterClient(**urls)
        print("dropped", client.session_id, flush=True)
    make_and_drop()
    gc.collect()
if "no-threads" in mode:
    def refuse(self):  # as Python 3.12 may at interpreter shutdown
        raise RuntimeError("can't create new thread at interpreter shutdown")
    threading.Thread.start = refuse
if "wait" in mode:
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def attached_ids(cube: LocalAgentCube, urls: dict[str, str]) -> Iterator[dict[str, str]]:
    """A code-interpreter and an agent-runtime session the child attaches to (never owns)."""
    ci = CodeInterpreterClient(**urls)
    ar = AgentRuntimeClient("echo-agent", **urls)
    ids = {"T_ATTACH_CI": ci.detach(), "T_ATTACH_AR": ar.detach()}
    yield ids
    for sid in ids.values():
        cube.delete_session(sid)


def _env(urls: dict[str, str], attached: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("T_", "PYTHONWARN"))}
    env.update(T_WM=urls["workload_manager_url"], T_ROUTER=urls["router_url"], **attached)
    env.update(extra)
    return env


def _child(mode: str, env: dict[str, str]) -> list[str]:
    return [sys.executable, "-W", "always::ResourceWarning", "-c", CHILD, mode]


def _ids(stdout: str, label: str) -> list[str]:
    return re.findall(rf"^{label} (\S+)$", stdout, re.MULTILINE)


def _warnings_naming(stderr: str, sid: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ResourceWarning" in line and sid in line]


def _run(mode: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_child(mode, env), env=env, capture_output=True, text=True, timeout=60)


def _assert_attached_untouched(cube: LocalAgentCube, attached: dict[str, str]) -> None:
    for sid in attached.values():
        assert cube.has_session(sid), f"exit cleanup touched attached session {sid}"


@pytest.mark.parametrize("kind", ["ci", "ar"])
def test_without_the_switch_one_session_is_left_and_a_warning_names_it(
    cube: LocalAgentCube, urls: dict[str, str], attached_ids: dict[str, str], kind: str
) -> None:
    before = {s.session_id for s in cube.sessions()}
    done = _run(f"plain,{kind}", _env(urls, attached_ids))
    assert done.returncode == 0, done.stderr
    (sid,) = _ids(done.stdout, "owned")
    left = {s.session_id for s in cube.sessions()} - before
    assert left == {sid}
    assert _warnings_naming(done.stderr, sid), done.stderr
    _assert_attached_untouched(cube, attached_ids)
    cube.delete_session(sid)


@pytest.mark.parametrize("kind", ["ci", "ar"])
def test_with_the_switch_nothing_is_left_at_normal_exit(
    cube: LocalAgentCube, urls: dict[str, str], attached_ids: dict[str, str], kind: str
) -> None:
    before = {s.session_id for s in cube.sessions()}
    done = _run(f"cleanup,{kind}", _env(urls, attached_ids))
    assert done.returncode == 0, done.stderr
    (sid,) = _ids(done.stdout, "owned")
    assert {s.session_id for s in cube.sessions()} - before == set()
    assert not cube.has_session(sid)
    assert not _warnings_naming(done.stderr, sid), done.stderr
    _assert_attached_untouched(cube, attached_ids)
    deletes = [r for r in cube.requests_seen() if r.method == "DELETE"]
    assert not any(sid_ in r.path for r in deletes for sid_ in attached_ids.values())


def _terminate(mode: str, env: dict[str, str]) -> tuple[int, str, str, float]:
    child = subprocess.Popen(
        _child(mode, env), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        lines = []
        for line in child.stdout:
            lines.append(line)
            if line.startswith("ready"):
                break
        signalled = time.monotonic()
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
        return child.returncode, "".join(lines) + out, err, time.monotonic() - signalled
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_with_the_switch_nothing_is_left_after_sigterm(
    cube: LocalAgentCube, urls: dict[str, str], attached_ids: dict[str, str]
) -> None:
    before = {s.session_id for s in cube.sessions()}
    code, out, err, _ = _terminate("cleanup,wait", _env(urls, attached_ids))
    assert code == -signal.SIGTERM, err  # the previous (default) handler still ends the process
    (sid,) = _ids(out, "owned")
    assert {s.session_id for s in cube.sessions()} - before == set()
    assert not cube.has_session(sid)
    _assert_attached_untouched(cube, attached_ids)


def test_without_the_switch_sigterm_leaves_the_session(
    cube: LocalAgentCube, urls: dict[str, str], attached_ids: dict[str, str]
) -> None:
    before = {s.session_id for s in cube.sessions()}
    code, out, _, _ = _terminate("plain,wait", _env(urls, attached_ids))
    assert code == -signal.SIGTERM
    (sid,) = _ids(out, "owned")
    assert {s.session_id for s in cube.sessions()} - before == {sid}
    cube.delete_session(sid)


def test_the_switch_also_deletes_sessions_of_clients_dropped_without_stop(
    cube: LocalAgentCube, urls: dict[str, str], attached_ids: dict[str, str]
) -> None:
    before = {s.session_id for s in cube.sessions()}
    done = _run("cleanup,dropped", _env(urls, attached_ids))
    assert done.returncode == 0, done.stderr
    (dropped,) = _ids(done.stdout, "dropped")
    # The finalizer still names it, and says what will happen to it.
    (warning,) = _warnings_naming(done.stderr, dropped)
    assert "exit cleanup will delete it" in warning
    assert {s.session_id for s in cube.sessions()} - before == set()
    _assert_attached_untouched(cube, attached_ids)


def test_cleanup_runs_inline_when_no_thread_can_start(
    cube: LocalAgentCube, urls: dict[str, str], attached_ids: dict[str, str]
) -> None:
    before = {s.session_id for s in cube.sessions()}
    done = _run("cleanup,no-threads", _env(urls, attached_ids))
    assert done.returncode == 0, done.stderr
    assert {s.session_id for s in cube.sessions()} - before == set()
    _assert_attached_untouched(cube, attached_ids)


@pytest.mark.parametrize(
    "mode",
    [
        "cleanup",
        # No thread can start at shutdown (Python 3.12+): the requests themselves must stop at
        # the deadline, not only the loop between sessions.
        "cleanup,no-threads",
    ],
)
def test_cleanup_gives_up_within_its_time_bound_and_names_what_is_left(
    cube: LocalAgentCube, urls: dict[str, str], attached_ids: dict[str, str], mode: str
) -> None:
    # The WorkloadManager stalls every DELETE far longer than the cleanup may take.
    cube.inject_fault("DELETE", "/v1/*/sessions/*", delay=20, times=10)
    before = {s.session_id for s in cube.sessions()}
    started = time.monotonic()
    done = _run(mode, _env(urls, attached_ids, T_CLEANUP_TIMEOUT="1.0"))
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    (sid,) = _ids(done.stdout, "owned")
    assert elapsed < 10, f"the child took {elapsed:.1f}s to exit with a 1s cleanup bound"
    named = _warnings_naming(done.stderr, sid)
    assert any("exit cleanup could not delete" in line for line in named), done.stderr
    cube.clear_faults()
    assert {s.session_id for s in cube.sessions()} - before == {sid}
    cube.delete_session(sid)


FORKING = r"""
import os, sys
import agentcube
from agentcube import CodeInterpreterClient

urls = {"workload_manager_url": os.environ["T_WM"], "router_url": os.environ["T_ROUTER"]}
agentcube.enable_exit_cleanup(timeout=5)
ci = CodeInterpreterClient(**urls)
assert ci.execute_command("echo before") == "before\n"  # a pooled connection exists now
pid = os.fork()
if pid == 0:
    # The child uses the parent's client (new connections), then exits through atexit.
    assert ci.execute_command("echo child") == "child\n"
    sys.exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
print("owned", ci.session_id, flush=True)
assert ci.execute_command("echo after") == "after\n"  # the child's exit deleted nothing
print("alive after child exit", flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_deletes_its_parents_sessions(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    env = _env(urls, {})
    done = subprocess.run(
        [sys.executable, "-c", FORKING], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "alive after child exit" in done.stdout
    # The parent's own exit cleanup then deleted its session.
    (sid,) = _ids(done.stdout, "owned")
    assert not cube.has_session(sid)
