"""Reliability and security, round two: the promises an adversarial suite broke (issue 10).

Every test here talks over real sockets on loopback (a guard refuses any other address) or
runs a child process, and each failed on the SDK as it was before the fix it covers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import agentcube
from agentcube import (
    AgentCubeError,
    AgentRuntimeClient,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    CodeInterpreterClient,
    DataPlaneError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    RetryPolicy,
    ServerError,
    ServiceAccountAuth,
    TokenAuth,
)
from agentcube.clients import (
    AgentRuntimeDataPlaneClient,
    CodeInterpreterDataPlaneClient,
    ControlPlaneClient,
)
from agentcube.local import LocalAgentCube

from .loopback import Answer, DripServer, RecordingServer, Seen, closed_port_url, json_answer

TOKEN = "R2-planted-bearer-token-7f3a9c"
SECRET = "R2-planted-client-secret-4e1b"
ONCE = RetryPolicy(max_attempts=1)
PREFIX = "/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in these tests may reach an address other than loopback."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in _LOOPBACK and not str(host).startswith("127."):
            raise OSError(f"test guard: {host!r} is not loopback")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


# -- what an error may carry -------------------------------------------------------------------


def _frames(exc: BaseException) -> Iterator[Any]:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        tb = error.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename != __file__:  # not the test's own locals
                yield tb.tb_frame
            tb = tb.tb_next
        stack += [error.__cause__, error.__context__]


def _assert_carries_nothing(exc: BaseException, *secrets: str) -> None:
    """No secret in the error's text, notes, attributes, pickle, chain or frame locals."""
    texts = [str(exc), repr(exc), repr(exc.args), *getattr(exc, "__notes__", [])]
    response = getattr(exc, "response", None)
    if response is not None:
        request = response.request
        texts += [response.text, repr(dict(response.headers))]
        if request is not None:
            assert "Authorization" not in request.headers
            texts += [repr(dict(request.headers)), repr(request.body)]
    request = getattr(exc, "request", None)
    if request is not None:
        assert "Authorization" not in request.headers
        assert request.body is None
    pickled = pickle.dumps(exc)
    for frame in _frames(exc):  # what --showlocals would print
        texts += [repr(value) for value in frame.f_locals.values()]
    for secret in secrets:
        assert secret.encode() not in pickled, "the pickled error holds a secret"
        for text in texts:
            assert secret not in text


@pytest.fixture
def echo() -> Iterator[RecordingServer]:
    """Answers every request with an error that echoes the Authorization header and the body."""

    def answer(seen: Seen) -> Answer:
        sent = (seen.header("Authorization") or [""])[0]
        if seen.target.endswith("/text"):
            return Answer(
                500, b"x" * 495 + sent.encode() + b" trailing", {"Content-Type": "text/plain"}
            )
        return json_answer(
            {"message": f"rejected {sent} with body {seen.body.decode('latin-1')}"}, status=401
        )

    server = RecordingServer(answer)
    yield server
    server.close()


def test_an_error_answer_carries_no_credential_pickled_or_not(echo: RecordingServer) -> None:
    ci = CodeInterpreterClient(
        session_id="s-1",
        workload_manager_url=echo.url,
        router_url=echo.url,
        auth_token=TOKEN,
        retry=ONCE,
    )
    with pytest.raises(APIError) as info:
        ci.execute_command("true")
    error = info.value
    assert echo.requests()[-1].header("Authorization") == [f"Bearer {TOKEN}"]
    assert error.response.status_code == 401  # the body and status still work
    assert "rejected" in error.response.json()["message"]
    assert "[secure]" in error.response.json()["message"]
    _assert_carries_nothing(error, TOKEN)
    ci.detach()


def test_a_token_echoed_across_the_500_character_cut_shows_none_of_it(
    echo: RecordingServer,
) -> None:
    dp = AgentRuntimeDataPlaneClient(echo.url, "default", "a", auth=TokenAuth(TOKEN), retry=ONCE)
    with pytest.raises(ServerError) as info:
        agentcube._sync.run(
            agentcube._flows.agent_runtime.invoke(dp.target("s-1"), {}, None, "text"), dp._transport
        )
    assert TOKEN[:4] not in str(info.value)  # scrubbed first, then cut
    _assert_carries_nothing(info.value, TOKEN)


def test_a_token_endpoint_failure_carries_no_client_secret(echo: RecordingServer) -> None:
    auth = ServiceAccountAuth(echo.url + "/token", "client-a", SECRET)
    with pytest.raises(AuthenticationError) as info:
        auth.get_token()
    assert SECRET in echo.requests()[-1].body.decode()
    assert info.value.response is not None and info.value.response.request.body is None
    _assert_carries_nothing(info.value, SECRET)


@pytest.mark.parametrize("failure", ["refused", "timeout", "dropped"])
def test_a_connection_failure_carries_no_credential(failure: str) -> None:
    if failure == "refused":
        url = closed_port_url()
        server = None
    else:
        server = RecordingServer(
            lambda seen: (
                Answer(200, b"{}", delay=3.0)
                if failure == "timeout"
                else Answer(200, b"x", declared_length=10)
            )
        )
        url = server.url
    try:
        ci = CodeInterpreterClient(
            session_id="s-1",
            workload_manager_url=url,
            router_url=url,
            auth_token=TOKEN,
            retry=ONCE,
            timeout=0.5,
        )
        with pytest.raises(APIConnectionError) as info:
            ci.list_files()
        assert info.value.__cause__ is None and info.value.__context__ is None
        _assert_carries_nothing(info.value, TOKEN)
        ci.detach()
    finally:
        if server is not None:
            server.close()


def test_a_failing_auth_provider_reaches_the_caller_with_no_secret_in_frames(
    echo: RecordingServer,
) -> None:
    auth = ServiceAccountAuth(echo.url + "/token", "client-a", SECRET)
    ci = CodeInterpreterClient(
        session_id="s-1",
        workload_manager_url=echo.url,
        router_url=echo.url,
        auth=auth,
        retry=ONCE,
    )
    with pytest.raises(AuthenticationError) as info:
        ci.list_files()
    _assert_carries_nothing(info.value, SECRET)
    ci.detach()


def test_proxy_credentials_echoed_back_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    # The Router is reached through a proxy taken from the environment, with credentials in
    # its URL; the proxy fails and echoes what it got, Proxy-Authorization included.
    def proxy_answer(seen: Seen) -> Answer:
        echoed = {k: v for k, v in seen.headers}
        return json_answer({"error": f"upstream failed for {seen.target}: {echoed}"}, status=502)

    proxy = RecordingServer(proxy_answer)
    password = "pa55-R2-proxy-word"
    port = proxy.url.rsplit(":", 1)[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://agent:{password}@127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "")
    try:
        ci = CodeInterpreterClient(
            session_id="s-1",
            workload_manager_url="http://wm.invalid",
            router_url="http://router.invalid",
            retry=ONCE,
        )
        with pytest.raises(ServerError) as info:
            ci.list_files()
        assert proxy.requests()[-1].header("Proxy-Authorization")
        import base64

        basic = base64.b64encode(f"agent:{password}".encode()).decode()
        _assert_carries_nothing(info.value, password, basic)
        ci.detach()
    finally:
        proxy.close()


# -- nothing forgotten -------------------------------------------------------------------------


def _child(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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


# -- bounded time --------------------------------------------------------------------------------


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


# -- typed errors, before anything is created ----------------------------------------------------


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def deep() -> Iterator[RecordingServer]:
    def answer(seen: Seen) -> Answer:
        if seen.method == "DELETE":
            return Answer(404, DEEP, {"Content-Type": "application/json"})
        if seen.target.endswith("/agent-runtimes/a/invocations/"):
            return Answer(500, DEEP, {"Content-Type": "application/json"})
        return Answer(200, DEEP, {"Content-Type": "application/json"})

    server = RecordingServer(answer)
    yield server
    server.close()


def test_deeply_nested_answers_are_typed_errors(deep: RecordingServer) -> None:
    url = deep.url
    with pytest.raises(InvalidResponseError, match="may be running"):
        CodeInterpreterClient(workload_manager_url=url, router_url=url, retry=ONCE)
    ci = CodeInterpreterClient(
        session_id="s-1", workload_manager_url=url, router_url=url, retry=ONCE
    )
    with pytest.raises(DataPlaneError):
        ci.list_files()
    with pytest.raises(DataPlaneError):
        ci.execute_command("true")
    with pytest.raises(NotFoundError):
        ci.stop()  # a 404 that is not the WorkloadManager's own: the id is kept
    assert ci.session_id == "s-1"
    ci.detach()
    with pytest.raises(ServerError):
        AgentRuntimeClient("a", router_url=url, retry=ONCE)
    with pytest.raises(AuthenticationError):
        ServiceAccountAuth(url + "/token", "c", SECRET).get_token()


@pytest.mark.parametrize("value", [1e10, 10**400, float("inf"), -1, 0])
def test_out_of_range_timeouts_are_refused_before_sending(
    echo: RecordingServer, value: object
) -> None:
    url = echo.url
    with pytest.raises(InvalidArgumentError):
        CodeInterpreterClient(workload_manager_url=url, router_url=url, timeout=value)
    with pytest.raises(InvalidArgumentError):
        AgentRuntimeClient("a", router_url=url, session_id="s", connect_timeout=value)
    with pytest.raises(InvalidArgumentError):
        ServiceAccountAuth(url, "c", SECRET, timeout=value)
    with pytest.raises(InvalidArgumentError):
        agentcube.enable_exit_cleanup(value)  # type: ignore[arg-type]
    ci = CodeInterpreterClient(session_id="s", workload_manager_url=url, router_url=url)
    if value not in (0,):  # 0 means the default command timeout, as it always has
        with pytest.raises(InvalidArgumentError):
            ci.execute_command("true", timeout=value)  # type: ignore[arg-type]
    ci.detach()
    assert echo.requests() == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999",
        "http://127.0.0.1:abc",
        "http://127.0.0.1:0",
        "http://127.0.0.1 x",
        "http://[::1",
        "http://127.0.0.1:-1",
    ],
)
def test_impossible_urls_are_refused_before_anything_is_created(
    echo: RecordingServer, url: str
) -> None:
    good = echo.url
    for build in (
        lambda: CodeInterpreterClient(workload_manager_url=good, router_url=url),
        lambda: CodeInterpreterClient(workload_manager_url=url, router_url=good),
        lambda: AgentRuntimeClient("a", router_url=url),
        lambda: ControlPlaneClient(url),
        lambda: ServiceAccountAuth(url, "c", SECRET),
    ):
        with pytest.raises(InvalidArgumentError):
            build()
    assert echo.requests() == [], "nothing was created with a bad URL on the other plane"


def test_bad_values_anywhere_are_invalid_argument_errors(echo: RecordingServer) -> None:
    url = echo.url
    ar = AgentRuntimeClient("a", router_url=url, session_id="s")
    with pytest.raises(InvalidArgumentError):
        ar.invoke({}, path="a\ud800b")
    with pytest.raises(InvalidArgumentError):
        CodeInterpreterClient(
            workload_manager_url=url,
            router_url=url,
            metadata={1: "x"},  # type: ignore[dict-item]
        )
    for bad in (None, {600}, {"502"}, [True], 502):
        with pytest.raises(InvalidArgumentError):
            RetryPolicy(statuses=bad)  # type: ignore[arg-type]
    for margin in (float("nan"), float("inf"), -1, "30"):
        with pytest.raises(InvalidArgumentError):
            ServiceAccountAuth(url, "c", SECRET, refresh_margin=margin)  # type: ignore[arg-type]
    assert echo.requests() == []
    assert isinstance(InvalidArgumentError("x"), (AgentCubeError, ValueError))
