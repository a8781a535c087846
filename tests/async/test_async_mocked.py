"""The async clients against aiohttp mocked by aioresponses (routes in ``aiomock.py``): what
is sent, when, and what comes back.

Every URL is on loopback or under ``.invalid`` (which never resolves), and a request that no
route matches fails the test instead of leaving the machine. Cancellation is synchronised with
events (a route that waits for a gate, a log record that says where the client is), never with
timed sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import gzip
import json
import logging
import pickle
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import requests

from agentcube import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    InvalidArgumentError,
    PermissionDeniedError,
    RetryPolicy,
    ServerError,
    ServiceAccountAuth,
    SessionError,
    SessionNotFoundError,
    StopOutcome,
    TokenAuth,
)
from agentcube.aio import AsyncAgentRuntimeClient, AsyncCodeInterpreterClient

from .aiomock import Answer, MockRouter, Request, Route, mocked

pytestmark = pytest.mark.asyncio

WM = "http://wm.invalid"
ROUTER = "http://127.0.0.1:9"
TOKEN_URL = "http://127.0.0.1:9/oauth/token"
SESSION_HEADER = "x-agentcube-session-id"
TOKEN = "tok-Secret-4b1d9e"
NO_DELAY = RetryPolicy(backoff=0, max_backoff=0)
CI_PREFIX = f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
AR_PREFIX = f"{ROUTER}/v1/namespaces/default/agent-runtimes/my-agent/invocations/"
URLS = {"workload_manager_url": WM, "router_url": ROUTER}


# -- answers --------------------------------------------------------------------------------------


def result(stdout: str = "", stderr: str = "", exit_code: int = 0) -> dict[str, Any]:
    return {
        "stdout": stdout,
        "stderr": stderr,
        "exit_code": exit_code,
        "duration": 0.001,
        "start_time": "2026-11-24T04:40:31.346605434Z",
        "end_time": "2026-11-24T04:40:31.347990798Z",
    }


def created(session_id: str) -> Answer:
    return Answer(
        200,
        json={
            "kind": "Sandbox",
            "sessionId": session_id,
            "sandboxId": "sb-" + session_id,
            "sandboxName": "my-interpreter-abcdefgh",
            "entryPoints": [{"path": "/", "protocol": "HTTP", "endpoint": "10.0.0.1:8080"}],
        },
    )


def deleted() -> Answer:
    return Answer(200, json={"message": "Sandbox deleted successfully"})


def executed(stdout: str = "") -> Answer:
    return Answer(200, json=result(stdout))


def create_route(mock: MockRouter, session_id: str = "ci-1") -> Route:
    return mock.post(f"{WM}/v1/code-interpreter").mock(return_value=created(session_id))


def delete_route(
    mock: MockRouter, session_id: str = "ci-1", segment: str = "code-interpreter"
) -> Route:
    return mock.delete(f"{WM}/v1/{segment}/sessions/{session_id}")


def body_of(route: Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def mock() -> Iterator[MockRouter]:
    # A request no route matches gets a connection error (never leaves) and fails the test.
    yield from mocked()


@pytest.fixture
def clients() -> Iterator[list[Any]]:
    """Clients a test made; at the end, any still owning a session gives it up (no network),
    so that no garbage-collection warning outlives the test."""
    made: list[Any] = []
    yield made
    for client in made:
        with contextlib.suppress(SessionError):
            client._detach()


@pytest.fixture
def make_ci(clients: list[Any]) -> Callable[..., AsyncCodeInterpreterClient]:
    def factory(**kw: Any) -> AsyncCodeInterpreterClient:
        for key, value in URLS.items():
            kw.setdefault(key, value)
        kw.setdefault("retry", NO_DELAY)
        client = AsyncCodeInterpreterClient(**kw)
        clients.append(client)
        return client

    return factory


@pytest.fixture
def make_ar(clients: list[Any]) -> Callable[..., AsyncAgentRuntimeClient]:
    def factory(agent_name: str = "my-agent", **kw: Any) -> AsyncAgentRuntimeClient:
        for key, value in URLS.items():
            kw.setdefault(key, value)
        kw.setdefault("retry", NO_DELAY)
        client = AsyncAgentRuntimeClient(agent_name, **kw)
        clients.append(client)
        return client

    return factory


class _LogEvent(logging.Handler):
    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.fixture
def logged() -> Iterator[Callable[[str], asyncio.Event]]:
    """``logged(text)``: an event set when the SDK logs a message containing ``text`` (the log
    says where a task is: waiting for an answer after a cancel, or about to sleep to retry)."""
    logger = logging.getLogger("agentcube")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    handlers: list[_LogEvent] = []

    def factory(text: str) -> asyncio.Event:
        handler = _LogEvent(text)
        handlers.append(handler)
        logger.addHandler(handler)
        return handler.event

    yield factory
    for handler in handlers:
        logger.removeHandler(handler)
    logger.setLevel(level)


class Gate:
    """A route side effect that says when a request arrived and answers only when opened."""

    def __init__(self, answer: Callable[[Request], Answer]) -> None:
        self.answer = answer
        self.arrived = asyncio.Event()
        self.opened = asyncio.Event()
        self.seen: list[Request] = []
        self.answered = 0

    async def __call__(self, request: Request) -> Answer:
        self.seen.append(request)
        self.arrived.set()
        await self.opened.wait()
        self.answered += 1
        return self.answer(request)


def in_task(coro: Awaitable[Any], caught: list[BaseException]) -> asyncio.Task[Any]:
    """Run ``coro`` in a task and keep the exception it raises there: the one with the notes
    (awaiting a cancelled task raises a new ``CancelledError``, without them)."""

    async def run() -> Any:
        try:
            return await coro
        except BaseException as exc:
            caught.append(exc)
            raise

    return asyncio.create_task(run())


def notes(exc: BaseException) -> list[str]:
    return list(getattr(exc, "__notes__", []))


HAS_NOTES = sys.version_info >= (3, 11)


# -- 1. create, run a command, stop ----------------------------------------------------------------


async def test_create_execute_and_stop_send_what_the_sync_client_sends(
    mock: MockRouter, clients: list[Any]
) -> None:
    create = mock.post(f"{WM}/v1/code-interpreter").mock(return_value=created("ci-7"))
    prefix = f"{ROUTER}/v1/namespaces/team-a/code-interpreters/py-large/invocations/"
    execute = mock.post(prefix + "api/execute").mock(return_value=executed("hi\n"))
    delete = delete_route(mock, "ci-7").mock(return_value=deleted())

    ci = await AsyncCodeInterpreterClient.create(
        name="py-large",
        namespace="team-a",
        ttl=60,
        metadata={"owner": "alice"},
        **URLS,
    )
    clients.append(ci)
    assert ci.session_id == "ci-7"
    assert ci.owns_session
    assert create.call_count == 1
    # The body the sync client sends (tests/unit/test_code_interpreter.py).
    assert body_of(create) == {
        "name": "py-large",
        "namespace": "team-a",
        "ttl": 60,
        "metadata": {"owner": "alice"},
    }
    assert create.calls.last.request.headers["Content-Type"] == "application/json"
    assert not execute.called and not delete.called

    assert await ci.execute_command("echo hi") == "hi\n"
    assert execute.call_count == 1
    sent = execute.calls.last.request
    assert sent.headers[SESSION_HEADER] == "ci-7"
    assert "echo hi" in json.loads(sent.content)["command"]

    assert await ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 1
    assert ci.session_id is None
    calls = len(mock.calls)
    assert await ci.stop() is StopOutcome.NOTHING_TO_DO
    assert len(mock.calls) == calls
    assert delete.call_count == 1


async def test_default_create_body(mock: MockRouter, make_ci: Any) -> None:
    create = create_route(mock)
    delete_route(mock).mock(return_value=deleted())
    ci = await make_ci().start()
    assert body_of(create) == {
        "name": "my-interpreter",
        "namespace": "default",
        "ttl": 3600,
        "metadata": {},
    }
    await ci.stop()


# -- 2. __init__ sends nothing --------------------------------------------------------------------


async def test_constructing_sends_nothing_and_methods_before_start_refuse(
    mock: MockRouter, make_ci: Any, make_ar: Any
) -> None:
    anything = mock.route().mock(return_value=Answer(500))
    ci = make_ci()
    ar = make_ar()
    assert ci.session_id is None and ar.session_id is None
    assert not anything.called

    for call in (
        lambda: ci.execute_command("true"),
        lambda: ci.run_code("python", "print(1)"),
        lambda: ci.list_files(),
        lambda: ci.write_file("x", "a.txt"),
        lambda: ar.invoke({"q": 1}),
    ):
        with pytest.raises(SessionError, match="create"):
            await call()
    assert not anything.called
    assert len(mock.calls) == 0


# -- 3. attaching ---------------------------------------------------------------------------------


async def test_attached_code_interpreter_stop_deletes_it(mock: MockRouter, make_ci: Any) -> None:
    execute = mock.post(CI_PREFIX + "api/execute").mock(return_value=executed("ok"))
    delete = delete_route(mock, "ci-9").mock(return_value=deleted())
    ci = make_ci(session_id="ci-9")  # no await: attaching sends nothing
    assert ci.session_id == "ci-9"
    assert not ci.owns_session
    assert len(mock.calls) == 0
    assert await ci.execute_command("true") == "ok"
    assert execute.calls.last.request.headers[SESSION_HEADER] == "ci-9"
    assert await ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 1
    assert ci.session_id is None


async def test_attached_agent_runtime_stop_keeps_it_and_delete_deletes_it(
    mock: MockRouter, make_ar: Any
) -> None:
    delete = delete_route(mock, "ar-9", "agent-runtime").mock(return_value=deleted())
    kept = make_ar(session_id="ar-9")
    assert await kept.stop() is StopOutcome.KEPT
    assert len(mock.calls) == 0
    assert kept.session_id == "ar-9"

    ended = make_ar(session_id="ar-9")
    assert await ended.delete() is StopOutcome.DELETED
    assert delete.call_count == 1
    assert ended.session_id is None
    assert await ended.delete() is StopOutcome.NOTHING_TO_DO
    assert delete.call_count == 1


@pytest.mark.parametrize("kind", ["ci", "ar"])
async def test_detach_then_stop_sends_nothing(
    mock: MockRouter, make_ci: Any, make_ar: Any, kind: str
) -> None:
    anything = mock.route().mock(return_value=Answer(500))
    client = make_ci(session_id="s-1") if kind == "ci" else make_ar(session_id="s-1")
    assert await client.detach() == "s-1"
    assert await client.stop() is StopOutcome.KEPT
    assert not anything.called


async def test_detach_of_an_owned_session_then_stop_sends_nothing(
    mock: MockRouter, make_ci: Any
) -> None:
    create_route(mock)
    delete = delete_route(mock).mock(return_value=deleted())
    ci = await make_ci().start()
    assert ci.owns_session
    assert await ci.detach() == "ci-1"
    assert not ci.owns_session
    assert await ci.stop() is StopOutcome.KEPT
    assert not delete.called


# -- 4. one DELETE across concurrent tasks --------------------------------------------------------


async def test_concurrent_stops_send_one_delete(mock: MockRouter, make_ci: Any) -> None:
    create_route(mock)
    gate = Gate(lambda _: deleted())
    delete = delete_route(mock).mock(side_effect=gate)
    ci = await make_ci().start()

    stops = asyncio.gather(*(ci.stop() for _ in range(10)))
    await gate.arrived.wait()  # the first DELETE is held here; every other stop() is queued
    gate.opened.set()
    outcomes = await stops
    assert delete.call_count == 1
    assert sorted(outcomes) == sorted([StopOutcome.DELETED] + [StopOutcome.NOTHING_TO_DO] * 9)
    assert ci.session_id is None


# -- 5. a failed DELETE keeps the session ---------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "error"),
    [
        ([Answer(500, json={"message": "boom"})] * 3, ServerError),
        ([Answer(503, json={"message": "busy"})] * 3, ServerError),
        ([Answer(403, json={"message": "forbidden"})], PermissionDeniedError),
    ],
    ids=["500-after-retries", "503-after-retries", "403"],
)
async def test_a_failed_delete_keeps_the_session_and_a_later_stop_retries(
    mock: MockRouter,
    make_ci: Any,
    failures: list[Answer],
    error: type[Exception],
) -> None:
    create_route(mock)
    delete = delete_route(mock).mock(side_effect=[*failures, deleted()])
    retry = RetryPolicy(max_attempts=3, backoff=0, statuses={500, 502, 503, 504})
    ci = await make_ci(retry=retry).start()

    with pytest.raises(error):
        await ci.stop()
    assert delete.call_count == len(failures)
    assert ci.session_id == "ci-1"
    assert ci.owns_session

    assert await ci.stop() is StopOutcome.DELETED
    assert delete.call_count == len(failures) + 1
    assert ci.session_id is None


# -- 6. async with --------------------------------------------------------------------------------


async def test_async_with_deletes_on_normal_exit(mock: MockRouter, make_ci: Any) -> None:
    create = create_route(mock)
    write = mock.post(CI_PREFIX + "api/files").mock(
        return_value=Answer(
            200, json={"path": "x.py", "size": 12, "mode": "-rw-------", "modified": "2026-11-24Z"}
        )
    )
    execute = mock.post(CI_PREFIX + "api/execute").mock(return_value=executed("42\n"))
    delete = delete_route(mock).mock(return_value=deleted())
    async with make_ci() as ci:
        assert create.call_count == 1
        assert await ci.run_code("python", "print(6 * 7)") == "42\n"
        assert write.call_count == 1 and execute.call_count == 1
        sent = json.loads(write.calls.last.request.content)
        assert base64.b64decode(sent["content"]) == b"print(6 * 7)"
        assert not delete.called
    assert delete.call_count == 1
    assert ci.session_id is None


async def test_async_with_lets_the_body_exception_through_unchanged(
    mock: MockRouter, make_ci: Any
) -> None:
    create_route(mock)
    delete = delete_route(mock).mock(return_value=deleted())
    boom = ValueError("boom")
    with pytest.raises(ValueError) as info:
        async with make_ci() as ci:
            raise boom
    assert info.value is boom
    assert notes(boom) == []
    assert delete.call_count == 1
    assert ci.session_id is None


async def test_async_with_reports_a_cleanup_failure_alongside_the_body_exception(
    mock: MockRouter, make_ci: Any, caplog: pytest.LogCaptureFixture
) -> None:
    create_route(mock)
    delete = delete_route(mock).mock(return_value=Answer(403, json={"message": "no"}))
    boom = ValueError("boom")
    with caplog.at_level(logging.ERROR, logger="agentcube"):
        with pytest.raises(ValueError) as info:
            async with make_ci() as ci:
                raise boom
    assert info.value is boom
    assert delete.call_count == 1
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("stop() failed" in m and "PermissionDeniedError" in m for m in logged), logged
    if HAS_NOTES:
        assert any("PermissionDeniedError" in n for n in notes(boom)), notes(boom)
    assert ci.session_id == "ci-1"  # still owned: a later stop() can retry


# -- 7. garbage collected without stop() ----------------------------------------------------------


async def test_an_owned_client_collected_without_stop_warns_naming_its_session(
    mock: MockRouter,
) -> None:
    create_route(mock, "ci-gc-1")
    delete = delete_route(mock, "ci-gc-1").mock(return_value=deleted())
    ci = await AsyncCodeInterpreterClient.create(**URLS)
    assert ci.session_id == "ci-gc-1"
    with pytest.warns(ResourceWarning, match="ci-gc-1"):
        del ci
        gc.collect()
    assert not delete.called  # a finalizer sends nothing


async def test_a_stopped_or_attached_client_collected_does_not_warn(
    mock: MockRouter,
) -> None:
    create_route(mock)
    delete_route(mock).mock(return_value=deleted())
    stopped = await AsyncCodeInterpreterClient.create(**URLS)
    await stopped.stop()
    attached = AsyncAgentRuntimeClient("my-agent", session_id="ar-1", **URLS)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        del stopped, attached
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]


# -- 8. cancellation ------------------------------------------------------------------------------


async def test_cancelled_while_the_create_is_in_flight_waits_and_deletes(
    mock: MockRouter, make_ci: Any, logged: Callable[[str], asyncio.Event]
) -> None:
    gate = Gate(lambda _: created("ci-c"))
    mock.post(f"{WM}/v1/code-interpreter").mock(side_effect=gate)
    delete = delete_route(mock, "ci-c").mock(return_value=deleted())
    waiting = logged("cancelled while in flight")
    ci = make_ci()

    task = asyncio.create_task(ci.start())
    await gate.arrived.wait()
    task.cancel()
    await waiting.wait()  # the task took the cancel and now waits for the create's answer
    assert not task.done()
    assert not delete.called
    gate.opened.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert gate.answered == 1
    assert delete.call_count == 1  # the session the create made is deleted again
    assert ci.session_id is None


async def test_cancelled_twice_during_the_create_gives_up_and_says_a_sandbox_may_run(
    mock: MockRouter, make_ci: Any, logged: Callable[[str], asyncio.Event]
) -> None:
    gate = Gate(lambda _: created("ci-c"))
    mock.post(f"{WM}/v1/code-interpreter").mock(side_effect=gate)
    delete = mock.delete(url__startswith=f"{WM}/").mock(return_value=deleted())
    waiting = logged("cancelled while in flight")
    ci = make_ci()

    caught: list[BaseException] = []
    task = in_task(ci.start(), caught)
    await gate.arrived.wait()
    task.cancel()
    await waiting.wait()
    with pytest.warns(ResourceWarning, match="may be running"):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (exc,) = caught
    assert isinstance(exc, asyncio.CancelledError)
    if HAS_NOTES:
        assert any("may be running" in n for n in notes(exc)), notes(exc)
    assert gate.answered == 0
    assert not delete.called
    assert ci.session_id is None


async def test_cancelled_while_the_delete_is_in_flight_finishes_it(
    mock: MockRouter, make_ci: Any, logged: Callable[[str], asyncio.Event]
) -> None:
    create_route(mock)
    gate = Gate(lambda _: deleted())
    delete = delete_route(mock).mock(side_effect=gate)
    waiting = logged("cancelled while in flight")
    ci = await make_ci().start()

    task = asyncio.create_task(ci.stop())
    await gate.arrived.wait()
    task.cancel()
    await waiting.wait()
    assert not task.done()
    gate.opened.set()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]
    assert delete.call_count == 1
    assert ci.session_id is None
    assert await ci.stop() is StopOutcome.NOTHING_TO_DO
    assert delete.call_count == 1


async def test_cancelled_while_a_delete_is_in_flight_that_fails_does_not_retry(
    mock: MockRouter, make_ci: Any, logged: Callable[[str], asyncio.Event]
) -> None:
    create_route(mock)
    gate = Gate(lambda _: Answer(503, json={"message": "busy"}))
    delete = delete_route(mock).mock(side_effect=gate)
    waiting = logged("cancelled while in flight")
    ci = await make_ci(retry=RetryPolicy(max_attempts=3, backoff=0)).start()

    caught: list[BaseException] = []
    task = in_task(ci.stop(), caught)
    await gate.arrived.wait()
    task.cancel()
    await waiting.wait()
    gate.opened.set()
    with pytest.warns(ResourceWarning, match="ci-1"):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert isinstance(caught[0], asyncio.CancelledError)
    assert delete.call_count == 1  # the answer was waited for, but no retry after the cancel
    assert ci.session_id == "ci-1"
    delete.mock(side_effect=None, return_value=deleted())
    assert await ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 2


async def test_cancelled_before_the_create_is_sent_sends_nothing(
    mock: MockRouter, make_ci: Any
) -> None:
    # The create waits for its credential (a token fetch, held at a gate): nothing is on the
    # wire yet, so a cancel there abandons the create instead of sending it and deleting again.
    gate = Gate(lambda _: Answer(200, json={"access_token": "t", "expires_in": 60}))
    mock.post(TOKEN_URL).mock(side_effect=gate)
    create = create_route(mock)
    delete = mock.delete(url__startswith=f"{WM}/").mock(return_value=deleted())
    ci = make_ci(auth=ServiceAccountAuth(TOKEN_URL, "client-a", "client-secret-xyz"))

    task = asyncio.create_task(ci.start())
    await gate.arrived.wait()
    task.cancel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        done, _ = await asyncio.wait({task}, timeout=10)
        assert done, "the cancelled start() went on with the create"
        with pytest.raises(asyncio.CancelledError):
            await task
    assert gate.answered == 0
    assert not create.called and not delete.called
    assert ci.session_id is None


class _FixedPause(RetryPolicy):
    """A retry policy whose pause before each retry is long and fixed (not random)."""

    def delay(self, attempt: int) -> float:
        return 60.0


async def test_cancelled_during_a_retry_pause_of_the_delete_names_the_session(
    mock: MockRouter, make_ci: Any, logged: Callable[[str], asyncio.Event]
) -> None:
    create_route(mock, "ci-r")
    delete = delete_route(mock, "ci-r").mock(
        side_effect=[Answer(503, json={"message": "busy"}), deleted()]
    )
    retrying = logged("retrying")
    ci = await make_ci(retry=_FixedPause(max_attempts=3)).start()

    caught: list[BaseException] = []
    task = in_task(ci.stop(), caught)
    await retrying.wait()  # the first DELETE answered 503; the task now sleeps 60 s to retry
    assert delete.call_count == 1
    with pytest.warns(ResourceWarning, match="ci-r"):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)
        assert done, "the cancelled stop() waited out the retry pause"
        with pytest.raises(asyncio.CancelledError):
            await task
    (exc,) = caught
    if HAS_NOTES:
        assert any("ci-r" in n for n in notes(exc)), notes(exc)
    assert delete.call_count == 1  # no retry after the cancel
    assert ci.session_id == "ci-r"
    assert ci.owns_session

    assert await ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 2
    assert ci.session_id is None


async def test_cancelled_inside_async_with_deletes_the_session(
    mock: MockRouter, make_ci: Any
) -> None:
    create_route(mock)
    delete = delete_route(mock).mock(return_value=deleted())
    inside = asyncio.Event()
    ci = make_ci()

    async def body() -> None:
        async with ci:
            inside.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(body())
    await inside.wait()
    assert not delete.called
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert delete.call_count == 1
    assert ci.session_id is None


async def test_cancelled_while_the_agent_bootstrap_is_in_flight_waits_and_deletes(
    mock: MockRouter, make_ar: Any, logged: Callable[[str], asyncio.Event]
) -> None:
    gate = Gate(lambda _: Answer(200, text="hi", headers={SESSION_HEADER: "ar-c"}))
    bootstrap = mock.get(AR_PREFIX).mock(side_effect=gate)
    delete = delete_route(mock, "ar-c", "agent-runtime").mock(return_value=deleted())
    waiting = logged("cancelled while in flight")
    ar = make_ar()

    task = asyncio.create_task(ar.start())
    await gate.arrived.wait()
    assert SESSION_HEADER not in gate.seen[0].headers
    task.cancel()
    await waiting.wait()
    assert not task.done()
    assert not delete.called
    gate.opened.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bootstrap.call_count == 1
    assert delete.call_count == 1
    assert ar.session_id is None


# -- 9. errors ------------------------------------------------------------------------------------


async def test_a_404_on_execute_is_session_not_found_and_a_requests_http_error(
    mock: MockRouter, make_ci: Any
) -> None:
    body = {"error": 'sessions.agentcube.volcano.sh "ci-1" not found'}
    execute = mock.post(CI_PREFIX + "api/execute").mock(return_value=Answer(404, json=body))
    ci = make_ci(session_id="ci-1", auth_token=TOKEN)
    with pytest.raises(SessionNotFoundError) as info:
        await ci.execute_command("true")
    assert execute.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"
    err = info.value
    assert isinstance(err, requests.HTTPError)
    assert err.response is not None
    assert err.response.status_code == 404
    assert json.loads(err.response.text) == body
    assert err.response.request is not None
    assert "Authorization" not in err.response.request.headers
    assert err.response.request.url == CI_PREFIX + "api/execute"
    assert TOKEN.encode() not in pickle.dumps(err)
    assert TOKEN not in repr(err) and TOKEN not in str(err)


async def test_a_token_the_server_echoes_is_scrubbed(mock: MockRouter, make_ci: Any) -> None:
    mock.post(CI_PREFIX + "api/execute").mock(
        return_value=Answer(
            401,
            json={"error": f"invalid bearer token {TOKEN}"},
            headers={"WWW-Authenticate": f'Bearer error="invalid_token" token="{TOKEN}"'},
        )
    )
    ci = make_ci(session_id="ci-1", auth_token=TOKEN)
    with pytest.raises(AuthenticationError) as info:
        await ci.execute_command("true")
    err = info.value
    assert err.response is not None
    assert err.response.status_code == 401
    assert "invalid bearer token" in err.response.text
    for shown in (str(err), repr(err), err.response.text, str(err.response.headers)):
        assert TOKEN not in shown
    assert TOKEN.encode() not in pickle.dumps(err)
    assert err.response.request is not None
    assert "Authorization" not in err.response.request.headers


# -- 10. retries ----------------------------------------------------------------------------------


async def test_a_router_429_is_retried_even_for_a_post(mock: MockRouter, make_ci: Any) -> None:
    overloaded = {"error": "server overloaded, please try again later", "code": "SERVER_OVERLOADED"}
    execute = mock.post(CI_PREFIX + "api/execute").mock(
        side_effect=[Answer(429, json=overloaded), executed("second")]
    )
    ci = make_ci(session_id="ci-1")
    assert await ci.execute_command("true") == "second"
    assert execute.call_count == 2


async def test_a_429_from_the_sandbox_itself_is_not_retried_for_a_post(
    mock: MockRouter, make_ci: Any
) -> None:
    execute = mock.post(CI_PREFIX + "api/execute").mock(
        side_effect=[
            Answer(429, json={"error": "slow down"}, headers={SESSION_HEADER: "ci-1"}),
            executed("second"),
        ]
    )
    ci = make_ci(session_id="ci-1")
    with pytest.raises(APIError) as info:
        await ci.execute_command("true")
    assert info.value.status_code == 429
    assert execute.call_count == 1


async def test_a_502_on_a_get_is_retried(mock: MockRouter, make_ci: Any) -> None:
    listing = {
        "files": [
            {
                "name": "a.txt",
                "size": 3,
                "modified": "2026-11-24T04:40:48Z",
                "mode": "-rw-r--r--",
                "is_dir": False,
            }
        ]
    }
    files = mock.get(url__startswith=CI_PREFIX + "api/files").mock(
        side_effect=[
            Answer(502, json={"error": "sandbox unreachable"}),
            Answer(200, json=listing),
        ]
    )
    ci = make_ci(session_id="ci-1")
    found = await ci.list_files("/")
    assert [f["name"] for f in found] == ["a.txt"]
    assert files.call_count == 2


async def test_a_502_on_a_post_is_not_retried(mock: MockRouter, make_ci: Any) -> None:
    execute = mock.post(CI_PREFIX + "api/execute").mock(
        side_effect=[Answer(502, json={"error": "sandbox unreachable"}), executed()]
    )
    ci = make_ci(session_id="ci-1")
    with pytest.raises(ServerError):
        await ci.execute_command("true")
    assert execute.call_count == 1


# -- 11. validation before any request ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 1e10},
        {"connect_timeout": float("nan")},
        {"workload_manager_url": "http://127.0.0.1:99999"},
        {"router_url": "http://127.0.0.1:99999"},
        {"namespace": "Bad_NS"},
    ],
    ids=["timeout", "connect_timeout", "wm-port", "router-port", "namespace"],
)
@pytest.mark.parametrize("kind", ["ci", "ar"])
async def test_a_bad_argument_is_refused_at_construction(
    mock: MockRouter, kind: str, kwargs: dict[str, Any]
) -> None:
    anything = mock.route().mock(return_value=Answer(500))
    args = {**URLS, **kwargs}
    with pytest.raises(InvalidArgumentError):
        if kind == "ci":
            AsyncCodeInterpreterClient(**args)
        else:
            AsyncAgentRuntimeClient("my-agent", **args)
    with pytest.raises(InvalidArgumentError):
        if kind == "ci":
            await AsyncCodeInterpreterClient.create(**args)
        else:
            await AsyncAgentRuntimeClient.create("my-agent", **args)
    assert not anything.called


async def test_a_bad_argument_to_a_method_is_refused_before_sending(
    mock: MockRouter, make_ci: Any, make_ar: Any
) -> None:
    anything = mock.route().mock(return_value=Answer(500))
    ci = make_ci(session_id="ci-1")
    ar = make_ar(session_id="ar-1")
    with pytest.raises(InvalidArgumentError):
        await ci.execute_command("true", timeout=1e10)
    with pytest.raises(InvalidArgumentError):
        await ar.invoke({"q": 1}, timeout=1e10)
    with pytest.raises(InvalidArgumentError):
        await ar.invoke({"q": 1}, path="a\ud800b")
    with pytest.raises(InvalidArgumentError):
        await ar.invoke({"q": 1}, path="../escape")
    with pytest.raises(InvalidArgumentError):
        await ci.run_code("cobol", "DISPLAY 'HI'.")
    assert not anything.called


# -- 12. ServiceAccountAuth under asyncio ---------------------------------------------------------


async def test_service_account_auth_fetches_one_token_for_concurrent_requests(
    mock: MockRouter, clients: list[Any]
) -> None:
    access = "sa-access-token-91f"
    gate = Gate(lambda _: Answer(200, json={"access_token": access, "expires_in": 3600}))
    token = mock.post(TOKEN_URL).mock(side_effect=gate)
    made = iter(range(100))
    create = mock.post(f"{WM}/v1/code-interpreter").mock(
        side_effect=lambda _: created(f"ci-{next(made)}")
    )
    delete = mock.delete(url__startswith=f"{WM}/v1/code-interpreter/sessions/").mock(
        return_value=deleted()
    )
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", "client-secret-xyz")

    async def one() -> AsyncCodeInterpreterClient:
        client = await AsyncCodeInterpreterClient.create(auth=auth, retry=NO_DELAY, **URLS)
        clients.append(client)
        return client

    starting = asyncio.gather(*(one() for _ in range(10)))
    await gate.arrived.wait()  # one fetch is held open while the ten creates queue behind it
    for _ in range(20):
        await asyncio.sleep(0)  # (widens the window only; the assertions hold regardless)
    assert not create.called
    gate.opened.set()
    started = await starting
    assert token.call_count == 1
    assert b"client_secret=client-secret-xyz" in token.calls.last.request.content
    assert create.call_count == 10
    for call in create.calls:
        assert call.request.headers["Authorization"] == f"Bearer {access}"
    await asyncio.gather(*(c.stop() for c in started))
    assert delete.call_count == 10
    for call in delete.calls:
        assert call.request.headers["Authorization"] == f"Bearer {access}"
    assert token.call_count == 1


# -- 13. credentials ------------------------------------------------------------------------------


async def test_auth_token_goes_to_both_planes(mock: MockRouter, make_ci: Any) -> None:
    create = create_route(mock)
    execute = mock.post(CI_PREFIX + "api/execute").mock(return_value=executed())
    delete = delete_route(mock).mock(return_value=deleted())
    async with make_ci(auth_token=TOKEN) as ci:
        await ci.execute_command("true")
    for route in (create, execute, delete):
        assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_without_a_credential_no_authorization_is_sent(
    mock: MockRouter, make_ci: Any
) -> None:
    create = create_route(mock)
    execute = mock.post(CI_PREFIX + "api/execute").mock(return_value=executed())
    delete = delete_route(mock).mock(return_value=deleted())
    async with make_ci() as ci:
        await ci.execute_command("true")
    for route in (create, execute, delete):
        assert "Authorization" not in route.calls.last.request.headers


async def test_each_plane_gets_its_own_credential(
    mock: MockRouter, make_ci: Any, make_ar: Any
) -> None:
    create = create_route(mock)
    execute = mock.post(CI_PREFIX + "api/execute").mock(return_value=executed())
    delete = delete_route(mock).mock(return_value=deleted())
    planes = {
        "workload_manager_auth": TokenAuth("k8s-sa-token"),
        "router_auth": TokenAuth("oidc-jwt"),
    }
    async with make_ci(**planes) as ci:
        await ci.execute_command("true")
    assert create.calls.last.request.headers["Authorization"] == "Bearer k8s-sa-token"
    assert delete.calls.last.request.headers["Authorization"] == "Bearer k8s-sa-token"
    assert execute.calls.last.request.headers["Authorization"] == "Bearer oidc-jwt"

    bootstrap = mock.get(AR_PREFIX).mock(
        return_value=Answer(200, text="", headers={SESSION_HEADER: "ar-1"})
    )
    invoke = mock.post(AR_PREFIX + "chat").mock(return_value=Answer(200, json={}))
    ar_delete = delete_route(mock, "ar-1", "agent-runtime").mock(return_value=deleted())
    async with make_ar(auth=TokenAuth("both"), router_auth=TokenAuth("router-only")) as ar:
        await ar.invoke({}, path="chat")
    assert bootstrap.calls.last.request.headers["Authorization"] == "Bearer router-only"
    assert invoke.calls.last.request.headers["Authorization"] == "Bearer router-only"
    assert ar_delete.calls.last.request.headers["Authorization"] == "Bearer both"


# -- 14. invoke -----------------------------------------------------------------------------------


async def test_invoke_returns_json_or_text(mock: MockRouter, make_ar: Any) -> None:
    answers = mock.post(AR_PREFIX + "chat").mock(
        side_effect=[
            Answer(200, json={"answer": [1, 2]}),
            Answer(200, text="plain words", headers={"Content-Type": "text/plain"}),
        ]
    )
    ar = make_ar(session_id="ar-1")
    assert await ar.invoke({"q": "hi"}, path="chat") == {"answer": [1, 2]}
    sent = answers.calls.last.request
    assert json.loads(sent.content) == {"q": "hi"}
    assert sent.headers[SESSION_HEADER] == "ar-1"
    assert sent.headers["Content-Type"] == "application/json"
    assert await ar.invoke({"q": "again"}, path="chat") == "plain words"
    assert answers.call_count == 2


async def test_a_new_agent_runtime_bootstraps_then_invokes_then_deletes(
    mock: MockRouter, make_ar: Any
) -> None:
    bootstrap = mock.get(AR_PREFIX).mock(
        return_value=Answer(404, text="no route", headers={SESSION_HEADER: "ar-5"})
    )
    invoke = mock.post(AR_PREFIX).mock(return_value=Answer(200, json={"ok": True}))
    delete = delete_route(mock, "ar-5", "agent-runtime").mock(return_value=deleted())
    ar = await make_ar().start()
    assert ar.session_id == "ar-5" and ar.owns_session
    assert bootstrap.call_count == 1
    assert await ar.invoke({"x": 1}) == {"ok": True}
    assert invoke.calls.last.request.headers[SESSION_HEADER] == "ar-5"
    assert await ar.stop() is StopOutcome.DELETED
    assert delete.call_count == 1


# -- 15. transport failures: aiohttp's exceptions, mapped in one place ---------------------------


def _refused() -> aiohttp.ClientConnectorError:
    key = SimpleNamespace(host="127.0.0.1", port=9, ssl=None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))  # type: ignore[arg-type]


async def test_a_connection_never_made_is_retried_even_for_a_command(
    mock: MockRouter, make_ci: Any
) -> None:
    execute = mock.post(CI_PREFIX + "api/execute").mock(
        side_effect=[_refused(), aiohttp.ConnectionTimeoutError(), executed("ok")]
    )
    ci = make_ci(session_id="ci-1")
    assert await ci.execute_command("true") == "ok"
    assert execute.call_count == 3
    await ci.detach()


@pytest.mark.parametrize(
    ("failure", "error", "reached"),
    [
        (_refused(), APIConnectionError, False),
        (aiohttp.ConnectionTimeoutError(), APITimeoutError, False),
        (aiohttp.ServerDisconnectedError(), APIConnectionError, True),
        (aiohttp.SocketTimeoutError(), APITimeoutError, True),
        (aiohttp.ClientPayloadError("truncated"), APIConnectionError, True),
    ],
    ids=["refused", "connect-timeout", "disconnected", "read-timeout", "payload"],
)
async def test_transport_failures_become_sdk_errors_without_the_library_chained(
    mock: MockRouter, make_ci: Any, failure: BaseException, error: type[Exception], reached: bool
) -> None:
    execute = mock.post(CI_PREFIX + "api/execute").mock(side_effect=failure)
    ci = make_ci(session_id="ci-1", retry=RetryPolicy(max_attempts=2, backoff=0))
    with pytest.raises(error) as info:
        await ci.execute_command("true")
    assert type(info.value) is error
    assert info.value.reached_server is reached
    assert type(failure).__name__ in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    # A command that may have reached the sandbox is not sent again; one never sent is.
    assert execute.call_count == (1 if reached else 2)
    await ci.detach()


async def test_an_invalid_url_is_an_invalid_argument(mock: MockRouter, make_ci: Any) -> None:
    mock.post(CI_PREFIX + "api/execute").mock(side_effect=aiohttp.InvalidURL("x"))
    ci = make_ci(session_id="ci-1")
    with pytest.raises(InvalidArgumentError, match="cannot be sent"):
        await ci.execute_command("true")
    await ci.detach()


async def test_answers_are_decoded_here_and_a_broken_download_leaves_no_file(
    mock: MockRouter, make_ci: Any, tmp_path: Any
) -> None:
    packed = gzip.compress(b"x" * 5000)
    mock.get(CI_PREFIX + "api/files/a.txt").mock(
        return_value=Answer(200, content=packed, headers={"Content-Encoding": "gzip"})
    )
    mock.get(CI_PREFIX + "api/files/b.txt").mock(
        return_value=Answer(200, content=packed[:-30], headers={"Content-Encoding": "gzip"})
    )
    listing = mock.get(CI_PREFIX + "api/files").mock(
        return_value=Answer(
            200,
            content=gzip.compress(b'{"files": []}'),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    )
    ci = make_ci(session_id="ci-1")
    await ci.download_file("a.txt", tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_bytes() == b"x" * 5000
    assert await ci.list_files(".") == []
    assert listing.calls.last.request.headers["Accept-Encoding"] == "gzip, deflate"
    with pytest.raises(APIConnectionError):
        await ci.download_file("b.txt", tmp_path / "b.txt")
    assert not (tmp_path / "b.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    await ci.detach()


# -- 16. at most AGENTCUBE_MAX_CONNECTIONS requests in flight per host -----------------------------


def waiting_for_a_turn(url: str) -> int:
    """How many calls to ``url``'s host wait for a turn in the running loop's pool."""
    from yarl import URL

    from agentcube._drivers import _async

    gate = _async.shared_pool().gate(URL(url))
    assert gate is not None
    return sum(not turn.done() for turn in gate._waiting)


async def until(check: Callable[[], bool]) -> None:
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_calls_past_the_limit_wait_their_turn_and_the_wait_is_no_timeout(
    mock: MockRouter, make_ar: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTCUBE_MAX_CONNECTIONS", "2")  # read when this loop's pool is made
    in_flight, most = 0, 0

    async def slow(request: Request) -> Answer:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.3)  # a slow server: each attempt takes 0.3 s of its 0.5 s bound
        in_flight -= 1
        return Answer(200, json={"ok": True})

    invoke = mock.post(AR_PREFIX).mock(side_effect=slow)
    ar = make_ar(session_id="ar-1", timeout=0.4, connect_timeout=0.1)
    started = time.monotonic()
    answers = await asyncio.gather(*(ar.invoke({"n": i}) for i in range(6)))
    # Three turns of two: the last calls waited 0.6 s, past their bound, and still succeeded.
    assert time.monotonic() - started >= 0.85
    assert answers == [{"ok": True}] * 6
    assert most == 2
    assert invoke.call_count == 6  # none retried
    await ar.detach()


async def test_a_call_cancelled_while_it_waits_its_turn_sends_nothing_and_frees_the_turn(
    mock: MockRouter, make_ar: Any, make_ci: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTCUBE_MAX_CONNECTIONS", "1")
    gate = Gate(lambda _: Answer(200, json={"ok": True}))
    invoke = mock.post(AR_PREFIX).mock(side_effect=gate)
    ar = make_ar(session_id="ar-1")
    first = asyncio.create_task(ar.invoke({"n": 1}))
    await gate.arrived.wait()
    queued = asyncio.create_task(ar.invoke({"n": 2}))
    await until(lambda: waiting_for_a_turn(ROUTER) == 1)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert waiting_for_a_turn(ROUTER) == 0
    gate.opened.set()
    assert await first == {"ok": True}
    assert await ar.invoke({"n": 3}) == {"ok": True}  # the cancelled call held no turn
    assert [json.loads(c.request.content) for c in invoke.calls] == [{"n": 1}, {"n": 3}]
    await ar.detach()

    # A DELETE (finished when cancelled in flight) cancelled while it waits is abandoned at
    # once: nothing is on the wire, and its session is kept for a later stop().
    held = Gate(lambda _: deleted())
    delete_route(mock, "ci-1").mock(side_effect=held)
    waiting_delete = delete_route(mock, "ci-2").mock(return_value=deleted())
    one, two = make_ci(session_id="ci-1"), make_ci(session_id="ci-2")
    stopping = asyncio.create_task(one.delete())
    await held.arrived.wait()
    caught: list[BaseException] = []
    queued = in_task(two.delete(), caught)
    await until(lambda: waiting_for_a_turn(WM) == 1)
    queued.cancel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        done, _ = await asyncio.wait({queued}, timeout=10)
    assert done, "a DELETE cancelled while it waited for a turn was waited for"
    assert not waiting_delete.called and two.session_id == "ci-2"
    held.opened.set()
    assert await stopping is StopOutcome.DELETED
    assert await two.delete() is StopOutcome.DELETED


async def test_a_limit_of_zero_is_no_limit(
    mock: MockRouter, make_ar: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTCUBE_MAX_CONNECTIONS", "0")
    gate = Gate(lambda _: Answer(200, json={"ok": True}))
    mock.post(AR_PREFIX).mock(side_effect=gate)
    ar = make_ar(session_id="ar-1")
    calls = [asyncio.create_task(ar.invoke({"n": i})) for i in range(150)]
    await until(lambda: len(gate.seen) == 150)  # all on the wire at once
    gate.opened.set()
    assert await asyncio.gather(*calls) == [{"ok": True}] * 150
    await ar.detach()
