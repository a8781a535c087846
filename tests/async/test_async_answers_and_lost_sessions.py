"""The async clients against issue 17's points, as the sync ones (the twins are
``tests/unit/test_answer_decoding.py`` and ``tests/unit/test_session_not_found.py``):

- JSON answers are decoded as 0.1.0 decoded them through requests: bytes that are not UTF-8
  inside a JSON string become U+FFFD, and the answer stays JSON. Both drivers hand the same
  bytes and headers to the same flows, so the results are identical.
- A session the Router says it does not know is forgotten (upstream's #460): the error reaches
  the caller, then ``session_id`` is None, ``stop()`` sends nothing and says ``ALREADY_GONE``,
  and later calls raise ``SessionError``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentcube import (
    NotFoundError,
    RetryPolicy,
    SessionError,
    SessionNotFoundError,
    StopOutcome,
    _exit_cleanup,
)
from agentcube.aio import AsyncAgentRuntimeClient, AsyncCodeInterpreterClient

from .aiomock import Answer, MockRouter, mocked

pytestmark = pytest.mark.asyncio

WM = "http://wm.invalid"
ROUTER = "http://127.0.0.1:9"
HEADER = "x-agentcube-session-id"
CI_PREFIX = f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
AR_PREFIX = f"{ROUTER}/v1/namespaces/default/agent-runtimes/my-agent/invocations/"
URLS = {"workload_manager_url": WM, "router_url": ROUTER, "retry": RetryPolicy(max_attempts=1)}
GIN_JSON = {"Content-Type": "application/json; charset=utf-8"}
ROUTER_939ABB5 = {"error": 'sessions.agentcube.volcano.sh "ci-1" not found'}


@pytest.fixture
def mock() -> Iterator[MockRouter]:
    yield from mocked()


def _answer(content: bytes, headers: dict[str, str] = GIN_JSON) -> Answer:
    return Answer(200, content=content, headers=headers)


def _created(mock: MockRouter) -> None:
    answer = Answer(200, json={"sessionId": "ci-1"})
    mock.post(f"{WM}/v1/code-interpreter").mock(return_value=answer)


# -- answers with invalid UTF-8 -------------------------------------------------------------------


async def test_execute_with_invalid_utf8_in_its_answer_returns_the_output(
    mock: MockRouter,
) -> None:
    body = b'{"stdout": "\xff\xfe", "stderr": "", "exit_code": 0}'
    mock.post(CI_PREFIX + "api/execute").mock(return_value=_answer(body))
    ci = AsyncCodeInterpreterClient(session_id="ci-1", **URLS)
    assert await ci.execute_command("x") == "\ufffd\ufffd"
    result = await ci.execute_command_result("x")
    assert result == {"stdout": "\ufffd\ufffd", "stderr": "", "exit_code": 0}
    await ci.detach()


async def test_invoke_with_invalid_utf8_in_its_answer_returns_the_dict(
    mock: MockRouter,
) -> None:
    mock.post(AR_PREFIX).mock(return_value=_answer(b'{"reply": "\xff\xfe ok"}'))
    ar = AsyncAgentRuntimeClient("my-agent", session_id="ar-1", **URLS)
    assert await ar.invoke({"q": 1}) == {"reply": "\ufffd\ufffd ok"}
    text = {"Content-Type": "text/plain; charset=latin-1"}
    mock.post(AR_PREFIX + "t").mock(return_value=_answer(b"caf\xe9", text))
    assert await ar.invoke({"q": 1}, path="t") == "caf\u00e9"


async def test_list_files_with_invalid_utf8_in_its_answer_lists(mock: MockRouter) -> None:
    body = b'{"files": [{"name": "a\xff.txt", "size": 1, "mode": "-rw-r--r--", "is_dir": false}]}'
    mock.get(CI_PREFIX + "api/files").mock(return_value=_answer(body))
    ci = AsyncCodeInterpreterClient(session_id="ci-1", **URLS)
    (entry,) = await ci.list_files(".")
    assert entry["name"] == "a\ufffd.txt"
    await ci.detach()


# -- a session the Router does not know ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (ROUTER_939ABB5, {}),
        ({"error": "session not found", "code": "SESSION_NOT_FOUND"}, {}),
        ({"code": "SESSION_NOT_FOUND"}, {HEADER: "ci-1"}),
    ],
    ids=repr,
)
async def test_an_owned_session_the_router_does_not_know_is_forgotten(
    mock: MockRouter, body: dict[str, str], headers: dict[str, str]
) -> None:
    _created(mock)
    delete = mock.delete(f"{WM}/v1/code-interpreter/sessions/ci-1")
    answer = Answer(404, json=body, headers=headers)
    execute = mock.post(CI_PREFIX + "api/execute").mock(return_value=answer)
    ci = await AsyncCodeInterpreterClient.create(**URLS)
    assert _exit_cleanup.is_registered(ci._cleanup_key)
    with pytest.raises(SessionNotFoundError) as info:
        await ci.execute_command("true")
    assert info.value.session_id == "ci-1"
    assert ci.session_id is None
    assert not _exit_cleanup.is_registered(ci._cleanup_key)
    with pytest.raises(SessionError, match="session ci-1 was not found"):
        await ci.list_files(".")
    assert await ci.stop() is StopOutcome.ALREADY_GONE
    assert await ci.stop() is StopOutcome.NOTHING_TO_DO
    assert await ci.delete() is StopOutcome.NOTHING_TO_DO
    assert execute.call_count == 1
    assert delete.call_count == 0


async def test_an_attached_agent_runtime_session_is_forgotten(mock: MockRouter) -> None:
    body = {"error": 'sessions.agentcube.volcano.sh "ar-1" not found'}
    mock.post(AR_PREFIX).mock(return_value=Answer(404, json=body))
    ar = AsyncAgentRuntimeClient("my-agent", session_id="ar-1", **URLS)
    with pytest.raises(SessionNotFoundError):
        await ar.invoke({"q": 1})
    assert ar.session_id is None
    with pytest.raises(SessionError):
        await ar.detach()
    assert await ar.stop() is StopOutcome.ALREADY_GONE  # KEPT, had the session lived


async def test_a_sandbox_404_keeps_the_session(mock: MockRouter) -> None:
    answer = Answer(404, json={"error": "File not found", "code": 404}, headers={HEADER: "ci-1"})
    mock.get(CI_PREFIX + "api/files").mock(return_value=answer)
    delete = mock.delete(f"{WM}/v1/code-interpreter/sessions/ci-1").mock(
        return_value=Answer(200, json={"message": "Sandbox deleted successfully"})
    )
    ci = AsyncCodeInterpreterClient(session_id="ci-1", **URLS)
    with pytest.raises(NotFoundError) as info:
        await ci.list_files("nope")
    assert not isinstance(info.value, SessionNotFoundError)
    assert ci.session_id == "ci-1"
    assert await ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 1
