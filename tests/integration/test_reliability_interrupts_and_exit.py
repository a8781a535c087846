"""Nothing forgotten when a process is interrupted or exits: SIGTERM during a stalled stop(),
Ctrl-C at each point of a create, and what exit cleanup could not delete named on stderr.

Every test here talks over real sockets on loopback (a guard refuses any other address) or
runs a child process, and each failed on the SDK as it was before the fix it covers (issue 10).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from typing import Any

import pytest

import agentcube
from agentcube import CodeInterpreterClient, RetryPolicy
from agentcube.local import LocalAgentCube

from .loopback import RecordingServer, json_answer
from .loopback import python_child as _child

pytestmark = pytest.mark.usefixtures("loopback_only")

ONCE = RetryPolicy(max_attempts=1)


def _urls_env(urls: dict[str, str]) -> dict[str, str]:
    return {"WORKLOAD_MANAGER_URL": urls["workload_manager_url"], "ROUTER_URL": urls["router_url"]}


def test_sigterm_during_a_stalled_stop_still_deletes_the_session(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    # The DELETE stop() sends stalls; SIGTERM arrives meanwhile. Exit cleanup must not wait on
    # the stalled call (or its lock): it sends its own DELETE, and the process ends by SIGTERM.
    cube.inject_fault("DELETE", "/v1/code-interpreter/sessions/*", delay=5.0)
    child = _child(
        """
        import agentcube
        from agentcube import CodeInterpreterClient
        agentcube.enable_exit_cleanup(timeout=5)
        ci = CodeInterpreterClient(timeout=30)
        print("id", ci.session_id, flush=True)
        print("stopping", flush=True)
        ci.stop()
        print("stop returned", flush=True)
        """,
        _urls_env(urls),
    )
    assert child.stdout is not None
    sid = child.stdout.readline().split()[1]
    assert child.stdout.readline().strip() == "stopping"
    time.sleep(0.5)
    started = time.monotonic()
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=15)
    assert child.returncode == -signal.SIGTERM, child.stderr.read() if child.stderr else ""
    assert time.monotonic() - started < 4, "the cleanup waited for the stalled stop()"
    assert not cube.has_session(sid)


def test_an_interrupt_after_the_id_is_read_leaves_nothing(
    cube: LocalAgentCube, urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C right after the create's answer was validated, before the client owned it.
    real = agentcube._flows.control_plane.check_server_session_id

    def interrupted(value: object) -> str:
        real(value)
        raise KeyboardInterrupt

    monkeypatch.setattr(agentcube._flows.control_plane, "check_server_session_id", interrupted)
    before = {s.session_id for s in cube.sessions()}
    with pytest.raises(KeyboardInterrupt):
        CodeInterpreterClient(**urls)
    assert {s.session_id for s in cube.sessions()} == before, "the new sandbox was deleted"


class _InterruptOn(logging.Handler):
    """Raises KeyboardInterrupt (as a Ctrl-C there would) when a log line says ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def emit(self, record: Any) -> None:
        if self.text in record.getMessage():
            raise KeyboardInterrupt


@pytest.mark.parametrize("delete_fails", [False, True])
def test_an_interrupt_on_the_created_log_line_leaves_nothing_unnamed(
    cube: LocalAgentCube, urls: dict[str, str], delete_fails: bool
) -> None:
    handler = _InterruptOn("Session created")
    logger = logging.getLogger("agentcube")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    before = {s.session_id for s in cube.sessions()}
    if delete_fails:
        cube.inject_fault("DELETE", "/v1/code-interpreter/sessions/*", status=500, times=10)
    try:
        warned = pytest.warns(ResourceWarning) if delete_fails else contextlib.nullcontext()
        with warned, pytest.raises(KeyboardInterrupt) as info:
            CodeInterpreterClient(**urls, retry=ONCE)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        cube.clear_faults()
    left = {s.session_id for s in cube.sessions()} - before
    if not delete_fails:
        assert left == set()
        return
    (sid,) = left
    if sys.version_info >= (3, 11):
        assert any(sid in note for note in info.value.__notes__)
    cube.delete_session(sid)


def test_ctrl_c_during_a_create_says_a_sandbox_may_be_running() -> None:
    slow = RecordingServer(lambda seen: json_answer({"sessionId": "s-slow"}, delay=3.0))
    try:
        child = _child(
            """
            import signal, sys, warnings
            # A shell may start us with SIGINT ignored; a user's Ctrl-C raises KeyboardInterrupt.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            warnings.simplefilter("always")
            from agentcube import CodeInterpreterClient
            print("creating", flush=True)
            try:
                CodeInterpreterClient()
            except KeyboardInterrupt as exc:
                print("notes", getattr(exc, "__notes__", []), flush=True)
            """,
            {"WORKLOAD_MANAGER_URL": slow.url, "ROUTER_URL": slow.url},
        )
        assert child.stdout is not None and child.stderr is not None
        assert child.stdout.readline().strip() == "creating"
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=15)
        assert "may be running" in err  # the ResourceWarning, on every Python version
        if sys.version_info >= (3, 11):
            assert "may be running" in out  # the note on the KeyboardInterrupt
    finally:
        slow.close()


def test_what_exit_cleanup_could_not_delete_is_printed_on_stderr(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    cube.inject_fault("DELETE", "/v1/code-interpreter/sessions/*", status=500, times=100)
    child = _child(
        """
        import agentcube
        from agentcube import CodeInterpreterClient, RetryPolicy
        agentcube.enable_exit_cleanup(timeout=3)
        ci = CodeInterpreterClient(retry=RetryPolicy(max_attempts=1))
        print(ci.session_id, flush=True)
        """,
        _urls_env(urls),  # no -W flag, no logging configured: what a user runs
    )
    out, err = child.communicate(timeout=30)
    cube.clear_faults()
    sid = out.split()[0]
    assert "agentcube: exit cleanup could not delete 1 session(s)" in err
    assert sid in err
    cube.delete_session(sid)
