"""Bounded time: a server that drips its answer holds no call, exit cleanup included, past its
bound, and a forked child never waits on a token fetch of its parent's threads.

Every test here talks over real sockets on loopback (a guard refuses any other address) or
runs a child process, and each failed on the SDK as it was before the fix it covers (issue 10).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from agentcube import APITimeoutError, CodeInterpreterClient, RetryPolicy, ServiceAccountAuth
from agentcube.clients import CodeInterpreterDataPlaneClient

from .loopback import DripServer, RecordingServer, json_answer
from .loopback import python_child as _child

pytestmark = pytest.mark.usefixtures("loopback_only")

SECRET = "R2-planted-client-secret-4e1b"


@pytest.fixture
def drip() -> Iterator[DripServer]:
    def body(method: str, target: str) -> tuple[int, bytes]:
        if method == "POST" and target.endswith("/v1/code-interpreter"):
            return 200, json.dumps({"sessionId": "s-drip"}).encode()
        if "api/files" in target:
            return 200, json.dumps({"files": [{"name": "a" * 50}]}).encode()
        return 200, json.dumps({"message": "Sandbox deleted successfully" + " " * 50}).encode()

    server = DripServer(body, interval=0.05)  # ~200 bytes: ~10 s per answer
    yield server
    server.close()


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_dripping_server_cannot_hold_stop_or_list_files_past_their_bound(
    drip: DripServer, attempts: int
) -> None:
    connect, read = 0.5, 1.0
    bound = attempts * (connect + read) + 0.5  # attempts x the per-attempt bound, plus slack
    ci = CodeInterpreterClient(
        session_id="s-drip",
        workload_manager_url=drip.url,
        router_url=drip.url,
        timeout=read,
        connect_timeout=connect,
        retry=RetryPolicy(max_attempts=attempts, backoff=0, max_backoff=0),
    )
    for call in (ci.list_files, ci.stop):
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            call()
        assert time.monotonic() - started < bound, call
    ci.detach()


def test_a_low_level_client_with_its_own_pool_sizes_is_bounded_as_well(drip: DripServer) -> None:
    # pool_connections / pool_maxsize give the client connections of its own: they must still
    # be the watchdog's to cut, or a dripping server holds the call for as long as it drips.
    connect, read = 0.5, 1.0
    dp = CodeInterpreterDataPlaneClient(
        "s-drip",
        router_url=drip.url,
        namespace="default",
        cr_name="ci",
        timeout=read,
        connect_timeout=connect,
        pool_connections=2,
        pool_maxsize=2,
        retry=RetryPolicy(max_attempts=1),
    )
    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        dp.list_files()
    assert time.monotonic() - started < connect + read + 0.5
    dp.close()


def test_exit_cleanup_holds_its_bound_against_a_dripping_server_without_threads(
    drip: DripServer,
) -> None:
    # At exit, Python 3.12+ may refuse new threads: the cleanup runs inline, and only the
    # watchdog (started by enable_exit_cleanup) can stop a request to a server that drips.
    child = _child(
        """
        import threading, agentcube
        from agentcube import CodeInterpreterClient, RetryPolicy
        ci = CodeInterpreterClient(retry=RetryPolicy(max_attempts=1), timeout=60)
        agentcube.enable_exit_cleanup(timeout=1)
        def refuse(self):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        threading.Thread.start = refuse
        print(ci.session_id, flush=True)
        """,
        {"WORKLOAD_MANAGER_URL": drip.url, "ROUTER_URL": drip.url},
    )
    started = time.monotonic()
    _, err = child.communicate(timeout=60)
    assert time.monotonic() - started < 15, "exit took as long as the drip"
    assert "s-drip" in err, err  # named as left behind


def test_exit_cleanup_without_threads_takes_no_longer_than_its_timeout(drip: DripServer) -> None:
    # The cleanup's deadline bounds each attempt in all: not its connect and its read timeouts
    # each shrunk to the time left (which let the watchdog wait for their sum: 2 x timeout).
    child = _child(
        """
        import atexit, sys, threading, time, agentcube
        from agentcube import CodeInterpreterClient, RetryPolicy
        ci = CodeInterpreterClient(retry=RetryPolicy(max_attempts=1), timeout=60)
        # Registered before the cleanup, so it runs after it (atexit runs the last one first).
        atexit.register(lambda: print(f"took {time.monotonic() - ended}", file=sys.stderr))
        agentcube.enable_exit_cleanup(timeout=2.0)
        def refuse(self):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        threading.Thread.start = refuse
        ended = time.monotonic()
        """,
        {"WORKLOAD_MANAGER_URL": drip.url, "ROUTER_URL": drip.url},
    )
    _, err = child.communicate(timeout=60)
    took = float(err.rsplit("took ", 1)[1].split()[0])
    assert took < 2.0 + 0.5, f"exit cleanup took {took:.2f} s with a 2 s timeout"
    assert "s-drip" in err, err  # named as left behind


def test_a_forked_child_can_fetch_a_token_while_a_parent_thread_was_fetching() -> None:
    slow = RecordingServer(
        lambda seen: json_answer({"access_token": "t-1", "expires_in": 3600}, delay=2.0)
    )
    try:
        auth = ServiceAccountAuth(slow.url + "/token", "client-a", SECRET)
        fetching = threading.Thread(target=auth.get_token, daemon=True)
        fetching.start()
        time.sleep(0.3)  # the thread holds the auth's lock, waiting for the answer
        pid = os.fork()
        if pid == 0:  # the child: the lock must not be held by a thread that does not exist
            try:
                code = 0 if auth.get_token() == "t-1" else 2
            except BaseException:
                code = 3
            os._exit(code)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in get_token()")
        fetching.join(10)
    finally:
        slow.close()
