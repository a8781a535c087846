"""Unit-test fixtures: a fake WorkloadManager and Router on requests-mock, and client factories.

No test here opens a socket: every URL is a ``*.test`` host answered by requests-mock, and an
unregistered URL fails with ``NoMockAddress``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentcube import AgentRuntimeClient, CodeInterpreterClient, RetryPolicy, SessionError

WM = "http://wm.test"
ROUTER = "http://router.test"
SESSION_HEADER = "x-agentcube-session-id"
NO_DELAY = RetryPolicy(backoff=0)


class FakeAgentCube:
    """Registers the AgentCube endpoints (as the wire contract describes them) on requests-mock."""

    wm = WM
    router = ROUTER

    def __init__(self, mock: Any) -> None:
        self.mock = mock

    # -- WorkloadManager ----------------------------------------------------------------------

    def create(self, segment: str = "code-interpreter", session_id: str = "ci-1", **kw: Any) -> Any:
        if not kw:
            kw = {
                "json": {
                    "kind": "CodeInterpreter",
                    "sessionId": session_id,
                    "sandboxId": "sb-" + session_id,
                    "sandboxName": "sandbox-" + session_id,
                    "entryPoints": [{"path": "/", "protocol": "http", "endpoint": "10.0.0.1:8080"}],
                }
            }
        return self.mock.post(f"{WM}/v1/{segment}", **kw)

    def delete(self, segment: str = "code-interpreter", session_id: str = "ci-1", **kw: Any) -> Any:
        if not kw:
            kw = {"json": {"message": "Sandbox deleted successfully"}}
        return self.mock.delete(f"{WM}/v1/{segment}/sessions/{session_id}", **kw)

    # -- Router ---------------------------------------------------------------------------------

    @staticmethod
    def ci_url(subpath: str = "", name: str = "my-interpreter", namespace: str = "default") -> str:
        return f"{ROUTER}/v1/namespaces/{namespace}/code-interpreters/{name}/invocations/{subpath}"

    @staticmethod
    def ar_url(subpath: str = "", name: str = "my-agent", namespace: str = "default") -> str:
        return f"{ROUTER}/v1/namespaces/{namespace}/agent-runtimes/{name}/invocations/{subpath}"

    def bootstrap(self, session_id: str = "ar-1", status: int = 200, **kw: Any) -> Any:
        headers = {SESSION_HEADER: session_id} if session_id else {}
        if not any(k in kw for k in ("json", "text", "content", "body")):
            kw["text"] = ""
        return self.mock.get(self.ar_url(), status_code=status, headers=headers, **kw)

    def execute(self, stdout: str = "", stderr: str = "", exit_code: int = 0, **kw: Any) -> Any:
        if not kw:
            kw = {
                "json": {
                    "stdout": stdout,
                    "stderr": stderr,
                    "exit_code": exit_code,
                    "duration": "1ms",
                    "start_time": "2024-01-01T00:00:00Z",
                    "end_time": "2024-01-01T00:00:00Z",
                }
            }
        return self.mock.post(self.ci_url("api/execute"), **kw)

    # -- helpers ------------------------------------------------------------------------------

    def calls(self, method: str, url_part: str = "") -> list[Any]:
        return [r for r in self.mock.request_history if r.method == method and url_part in r.url]

    def deletes(self) -> list[Any]:
        return self.calls("DELETE")


@pytest.fixture
def cube(requests_mock: Any) -> FakeAgentCube:
    return FakeAgentCube(requests_mock)


def _finish(client: Any) -> None:
    # No network: only give up ownership so that no GC warning fires after the test.
    with contextlib.suppress(SessionError):
        client.detach()


@pytest.fixture
def make_ci(cube: FakeAgentCube) -> Iterator[Callable[..., CodeInterpreterClient]]:
    """Build a CodeInterpreterClient against the fake URLs (retries without delay)."""
    made: list[CodeInterpreterClient] = []

    def factory(**kw: Any) -> CodeInterpreterClient:
        kw.setdefault("workload_manager_url", WM)
        kw.setdefault("router_url", ROUTER)
        kw.setdefault("retry", NO_DELAY)
        client = CodeInterpreterClient(**kw)
        made.append(client)
        return client

    yield factory
    for client in made:
        _finish(client)


@pytest.fixture
def make_ar(cube: FakeAgentCube) -> Iterator[Callable[..., AgentRuntimeClient]]:
    """Build an AgentRuntimeClient for agent ``my-agent`` against the fake URLs."""
    made: list[AgentRuntimeClient] = []

    def factory(agent_name: str = "my-agent", **kw: Any) -> AgentRuntimeClient:
        kw.setdefault("workload_manager_url", WM)
        kw.setdefault("router_url", ROUTER)
        kw.setdefault("retry", NO_DELAY)
        client = AgentRuntimeClient(agent_name, **kw)
        made.append(client)
        return client

    yield factory
    for client in made:
        _finish(client)
