"""The async clients decode JSON answers as the sync ones do (as 0.1.0 did through requests):
bytes that are not UTF-8 inside a JSON string become U+FFFD, and the answer stays JSON (issue 17).

The sync twin is ``tests/unit/test_answer_decoding.py``; both drivers hand the same bytes and
headers to the same flows, so the results are identical.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx

from agentcube import RetryPolicy
from agentcube.aio import AsyncAgentRuntimeClient, AsyncCodeInterpreterClient

pytestmark = pytest.mark.asyncio

WM = "http://wm.invalid"
ROUTER = "http://127.0.0.1:9"
CI_PREFIX = f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
AR_PREFIX = f"{ROUTER}/v1/namespaces/default/agent-runtimes/my-agent/invocations/"
URLS = {"workload_manager_url": WM, "router_url": ROUTER, "retry": RetryPolicy(max_attempts=1)}
GIN_JSON = {"Content-Type": "application/json; charset=utf-8"}


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def _answer(content: bytes, headers: dict[str, str] = GIN_JSON) -> httpx.Response:
    return httpx.Response(200, content=content, headers=headers)


async def test_execute_with_invalid_utf8_in_its_answer_returns_the_output(
    mock: respx.MockRouter,
) -> None:
    body = b'{"stdout": "\xff\xfe", "stderr": "", "exit_code": 0}'
    mock.post(CI_PREFIX + "api/execute").mock(return_value=_answer(body))
    ci = AsyncCodeInterpreterClient(session_id="ci-1", **URLS)
    assert await ci.execute_command("x") == "\ufffd\ufffd"
    result = await ci.execute_command_result("x")
    assert result == {"stdout": "\ufffd\ufffd", "stderr": "", "exit_code": 0}
    await ci.detach()


async def test_invoke_with_invalid_utf8_in_its_answer_returns_the_dict(
    mock: respx.MockRouter,
) -> None:
    mock.post(AR_PREFIX).mock(return_value=_answer(b'{"reply": "\xff\xfe ok"}'))
    ar = AsyncAgentRuntimeClient("my-agent", session_id="ar-1", **URLS)
    assert await ar.invoke({"q": 1}) == {"reply": "\ufffd\ufffd ok"}
    text = {"Content-Type": "text/plain; charset=latin-1"}
    mock.post(AR_PREFIX + "t").mock(return_value=_answer(b"caf\xe9", text))
    assert await ar.invoke({"q": 1}, path="t") == "caf\u00e9"


async def test_list_files_with_invalid_utf8_in_its_answer_lists(mock: respx.MockRouter) -> None:
    body = b'{"files": [{"name": "a\xff.txt", "size": 1, "mode": "-rw-r--r--", "is_dir": false}]}'
    mock.get(CI_PREFIX + "api/files").mock(return_value=_answer(body))
    ci = AsyncCodeInterpreterClient(session_id="ci-1", **URLS)
    (entry,) = await ci.list_files(".")
    assert entry["name"] == "a\ufffd.txt"
    await ci.detach()
