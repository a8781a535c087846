"""A constructor that fails half way (after the create) leaves nothing on the server.

The clients open no connection to the data plane while they are built (``_open_data_plane``
only builds objects), so "data plane down" surfaces at the first call, with the session owned
and deleted by ``stop()``/``with`` as usual. A subclass whose ``_open_data_plane`` does reach
out and fails is rolled back: the session it created is deleted before the error propagates;
if even that delete fails, the error and a ResourceWarning name the session.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import pytest

from agentcube import (
    AgentRuntimeClient,
    APIConnectionError,
    CodeInterpreterClient,
    RetryPolicy,
    ServerError,
    StopOutcome,
)
from agentcube.clients import CodeInterpreterDataPlaneClient
from agentcube.local import LocalAgentCube

from .loopback import closed_port_url

FAST = RetryPolicy(max_attempts=2, backoff=0.01, max_backoff=0.01)


class ProbingInterpreter(CodeInterpreterClient):
    """Checks that its sandbox answers before handing the client out."""

    def _open_data_plane(self, session_id: str) -> CodeInterpreterDataPlaneClient:
        data_plane = super()._open_data_plane(session_id)
        data_plane.list_files(".")  # raises when the router is down
        return data_plane


class InterruptedInterpreter(CodeInterpreterClient):
    def _open_data_plane(self, session_id: str) -> Any:
        raise KeyboardInterrupt


class BrokenAgent(AgentRuntimeClient):
    def _open_data_plane(self, session_id: str) -> Any:
        raise RuntimeError("data plane down")


def _new_ids(cube: LocalAgentCube, before: set[str]) -> set[str]:
    return {s.session_id for s in cube.sessions()} - before


def _deleted_ids(cube: LocalAgentCube, start: int) -> list[str]:
    """Ids of sessions deleted since request number ``start`` (the rollback's DELETEs)."""
    return [
        r.path.rsplit("/", 1)[1]
        for r in cube.requests_seen()[start:]
        if r.method == "DELETE" and r.server == "workload_manager"
    ]


def test_data_plane_down_after_the_create_rolls_back(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    before = {s.session_id for s in cube.sessions()}
    start = len(cube.requests_seen())
    with pytest.raises(APIConnectionError):
        ProbingInterpreter(
            workload_manager_url=urls["workload_manager_url"],
            router_url=closed_port_url(),
            retry=FAST,
        )
    assert _new_ids(cube, before) == set()
    # The session was created, then deleted by the rollback (not never created).
    creates = [r for r in cube.requests_seen()[start:] if r.method == "POST"]
    assert len(creates) == 1 and len(_deleted_ids(cube, start)) == 1


@pytest.mark.parametrize("cls", [InterruptedInterpreter, BrokenAgent])
def test_any_failure_while_opening_the_data_plane_rolls_back(
    cube: LocalAgentCube, urls: dict[str, str], cls: type[Any]
) -> None:
    before = {s.session_id for s in cube.sessions()}
    start = len(cube.requests_seen())
    args = ("echo-agent",) if cls is BrokenAgent else ()
    with pytest.raises((KeyboardInterrupt, RuntimeError)):
        cls(*args, **urls, retry=FAST)
    assert _new_ids(cube, before) == set()
    assert len(_deleted_ids(cube, start)) == 1


def test_rollback_that_cannot_delete_names_the_session(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    before = {s.session_id for s in cube.sessions()}
    cube.inject_fault("DELETE", "/v1/*/sessions/*", status=500)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(APIConnectionError) as info:
            ProbingInterpreter(
                workload_manager_url=urls["workload_manager_url"],
                router_url=closed_port_url(),
                retry=FAST,
            )
    (sid,) = _new_ids(cube, before)
    named = [w for w in caught if issubclass(w.category, ResourceWarning) and sid in str(w.message)]
    assert named, [str(w.message) for w in caught]
    if sys.version_info >= (3, 11):
        assert any(sid in note for note in info.value.__notes__)
    # The id is enough to end it from another client.
    assert CodeInterpreterClient(session_id=sid, **urls).delete() is StopOutcome.DELETED
    assert _new_ids(cube, before) == set()


def test_rollback_without_a_workload_manager_names_the_session(cube: LocalAgentCube) -> None:
    before = {s.session_id for s in cube.sessions()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError):
            BrokenAgent("echo-agent", router_url=cube.router_url)
    (sid,) = _new_ids(cube, before)
    assert any(issubclass(w.category, ResourceWarning) and sid in str(w.message) for w in caught)
    cube.delete_session(sid)


def test_router_down_is_found_at_the_first_call_and_with_still_deletes(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    before = {s.session_id for s in cube.sessions()}
    with pytest.raises(APIConnectionError):
        with CodeInterpreterClient(
            workload_manager_url=urls["workload_manager_url"],
            router_url=closed_port_url(),
            retry=FAST,
        ) as ci:
            assert cube.has_session(ci.session_id)  # built without touching the data plane
            ci.execute_command("true")
    assert _new_ids(cube, before) == set()


def test_failed_create_leaves_nothing(cube: LocalAgentCube, urls: dict[str, str]) -> None:
    before = {s.session_id for s in cube.sessions()}
    for fault in ({"status": 503}, {"drop": True}):
        cube.inject_fault("POST", "/v1/code-interpreter", **fault)  # type: ignore[arg-type]
        with pytest.raises((ServerError, APIConnectionError)):
            CodeInterpreterClient(**urls, retry=FAST)
    cube.inject_fault("GET", "/v1/namespaces/*/agent-runtimes/*/invocations/", status=500)
    with pytest.raises(ServerError):
        AgentRuntimeClient("echo-agent", **urls, retry=FAST)
    assert _new_ids(cube, before) == set()


def test_a_lost_create_answer_is_the_one_case_no_client_can_name(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    # The server creates the sandbox, then the answer is lost: the wire contract gives no way
    # to find it again. The SDK does not retry the create (that could make a second one) and
    # says a sandbox may be running; the server's TTL or idle timeout ends it.
    before = {s.session_id for s in cube.sessions()}
    cube.inject_fault("POST", "/v1/code-interpreter", drop=True, after=True)
    with pytest.raises(APIConnectionError) as info:
        CodeInterpreterClient(**urls, retry=FAST)
    assert "a sandbox may be running" in str(info.value)
    orphans = _new_ids(cube, before)
    assert len(orphans) == 1, "exactly one sandbox: the create was not retried"
    for sid in orphans:
        cube.delete_session(sid)


def test_create_refused_before_sending_says_nothing_may_be_running(
    urls: dict[str, str],
) -> None:
    with pytest.raises(APIConnectionError) as info:
        CodeInterpreterClient(
            workload_manager_url=closed_port_url(), router_url=urls["router_url"], retry=FAST
        )
    assert "may be running" not in str(info.value)
