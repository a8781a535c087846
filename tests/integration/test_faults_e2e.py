"""Failure paths over real sockets, with the local server's fault injection."""

from __future__ import annotations

import pytest

from agentcube import (
    AgentRuntimeClient,
    APIConnectionError,
    AuthenticationError,
    CodeInterpreterClient,
    RetryPolicy,
    ServerError,
    StopOutcome,
)
from agentcube.local import LocalAgentCube

from .conftest import TOKEN

FAST = RetryPolicy(max_attempts=3, backoff=0.01, max_backoff=0.02)
DELETE_CI = "/v1/code-interpreter/sessions/*"


def test_injected_503_on_delete_is_retried_to_success(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    client = CodeInterpreterClient(**urls, retry=FAST)
    fault = cube.inject_fault("DELETE", DELETE_CI, status=503, times=2)
    assert client.stop() is StopOutcome.DELETED
    assert fault.hits == 2
    assert not cube.has_session(client.session_id)


def test_injected_500_on_delete_keeps_the_id_and_a_later_stop_retries(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    client = CodeInterpreterClient(**urls, retry=FAST)
    sid = client.session_id
    fault = cube.inject_fault("DELETE", DELETE_CI, status=500)
    with pytest.raises(ServerError) as info:
        client.stop()
    assert fault.hits == 1, "a 500 must not be retried"
    assert info.value.session_id == sid and info.value.status_code == 500
    assert client.session_id == sid and client.owns_session
    assert cube.has_session(sid)
    assert client.stop() is StopOutcome.DELETED
    assert not cube.has_session(sid)


def test_delete_whose_answer_is_lost_is_retried_and_counts_as_deleted(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    client = CodeInterpreterClient(**urls, retry=FAST)
    cube.inject_fault("DELETE", DELETE_CI, drop=True, after=True)
    assert client.stop() is StopOutcome.ALREADY_GONE
    assert not cube.has_session(client.session_id)


def test_dropped_connection_on_invoke_is_a_connection_error(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    with AgentRuntimeClient("echo-agent", **urls) as client:
        cube.inject_fault("POST", "*/agent-runtimes/echo-agent/invocations/*", drop=True)
        with pytest.raises(APIConnectionError) as info:
            client.invoke({"x": 1})
        # The library's exception is not chained (it holds the request, token included).
        assert info.value.__cause__ is None
        assert "ConnectionError" in str(info.value)
        assert client.invoke({"x": 2})["echo"] == {"x": 2}


def test_failed_create_leaves_nothing(cube: LocalAgentCube, urls: dict[str, str]) -> None:
    cube.inject_fault("POST", "/v1/code-interpreter", status=500)
    with pytest.raises(ServerError):
        CodeInterpreterClient(**urls)
    assert cube.sessions() == []


def test_wrong_token_is_401(secured_cube: LocalAgentCube) -> None:
    urls = {
        "workload_manager_url": secured_cube.workload_manager_url,
        "router_url": secured_cube.router_url,
    }
    with pytest.raises(AuthenticationError) as info:
        CodeInterpreterClient(**urls, auth_token="wrong-token")
    assert info.value.response.status_code == 401
    assert "wrong-token" not in str(info.value)
    with pytest.raises(AuthenticationError):
        AgentRuntimeClient("echo-agent", **urls, auth_token="wrong-token")
    with CodeInterpreterClient(**urls, auth_token=TOKEN) as ci:
        assert ci.execute_command("echo ok") == "ok\n"
    with AgentRuntimeClient("echo-agent", **urls, auth_token=TOKEN) as agent:
        assert agent.invoke(1) == {"echo": 1, "path": ""}
    assert secured_cube.sessions() == []
