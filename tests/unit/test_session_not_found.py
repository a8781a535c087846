"""A session the Router (or the WorkloadManager) says it does not know has ended: the client
forgets it, as upstream's SDK does since volcano-sh/agentcube#460 (issue 17).

The error still reaches the caller; then ``session_id`` is None, ``stop()`` / ``delete()``
send nothing (the first says ``ALREADY_GONE``), exit cleanup and the garbage-collection warning
forget the session, and later calls raise ``SessionError`` without sending. A sandbox's own 404
(forwarded with the session header) is about a file or a path and changes nothing. The async
twin is ``tests/async/test_async_answers_and_lost_sessions.py``.
"""

from __future__ import annotations

import gc
import warnings
from typing import Any

import pytest

from agentcube import (
    CodeInterpreterClient,
    NotFoundError,
    SessionError,
    SessionNotFoundError,
    StopOutcome,
    _exit_cleanup,
)

HEADER = "x-agentcube-session-id"
ROUTER_939ABB5 = {"error": 'sessions.agentcube.volcano.sh "ci-1" not found'}
# The exact body of #460 is in no stored copy: any top-level field carrying the code counts.
WITH_CODE = [
    ({"error": "session not found", "code": "SESSION_NOT_FOUND"}, {}),
    ({"error": "SESSION_NOT_FOUND"}, {}),
    ({"code": "SESSION_NOT_FOUND"}, {HEADER: "ci-1"}),  # the code wins over the header
    ({"reason": "SESSION_NOT_FOUND", "detail": "x"}, {HEADER: "ci-1"}),
]


def _sent(requests_mock: Any) -> int:
    return len(requests_mock.request_history)


def _assert_forgotten(client: Any, session_id: str, requests_mock: Any) -> None:
    assert client.session_id is None
    assert not _exit_cleanup.is_registered(client._cleanup_key)
    sent = _sent(requests_mock)
    with pytest.raises(SessionError, match=f"session {session_id} was not found") as info:
        client._target()
    assert not isinstance(info.value, NotFoundError)  # nothing was asked: no HTTP error
    assert client.stop() is StopOutcome.ALREADY_GONE
    assert client.stop() is StopOutcome.NOTHING_TO_DO
    assert client.delete() is StopOutcome.NOTHING_TO_DO
    with pytest.raises(SessionError):
        client.detach()
    assert _sent(requests_mock) == sent  # no DELETE, no request at all


@pytest.mark.parametrize(("body", "headers"), [(ROUTER_939ABB5, {}), *WITH_CODE], ids=repr)
def test_an_owned_session_the_router_does_not_know_is_forgotten(
    cube, make_ci, body, headers
) -> None:
    cube.create()
    delete = cube.delete()
    cube.execute(status_code=404, json=body, headers=headers)
    ci = make_ci()
    assert _exit_cleanup.is_registered(ci._cleanup_key)
    with pytest.raises(SessionNotFoundError) as info:  # the caller still sees the error
        ci.execute_command("true")
    assert info.value.session_id == "ci-1"
    _assert_forgotten(ci, "ci-1", cube.mock)
    assert delete.call_count == 0


def test_an_attached_agent_runtime_session_is_forgotten_and_stop_says_already_gone(
    make_ar, requests_mock
) -> None:
    requests_mock.post(
        "http://router.test/v1/namespaces/default/agent-runtimes/my-agent/invocations/",
        status_code=404,
        json={"error": 'sessions.agentcube.volcano.sh "ar-1" not found'},
    )
    ar = make_ar(session_id="ar-1")
    with pytest.raises(SessionNotFoundError):
        ar.invoke({"q": 1})
    _assert_forgotten(ar, "ar-1", requests_mock)  # stop() would have KEPT it otherwise


def test_delete_first_says_already_gone(cube, make_ci) -> None:
    cube.execute(status_code=404, json=ROUTER_939ABB5)
    ci = make_ci(session_id="ci-1")
    with pytest.raises(SessionNotFoundError):
        ci.execute_command("true")
    assert ci.delete() is StopOutcome.ALREADY_GONE
    assert ci.stop() is StopOutcome.NOTHING_TO_DO
    assert cube.deletes() == []


def test_a_with_block_ends_without_a_delete_and_the_error_propagates(cube, make_ci) -> None:
    cube.create()
    delete = cube.delete()
    cube.execute(status_code=404, json=ROUTER_939ABB5)
    with pytest.raises(SessionNotFoundError):
        with make_ci() as ci:
            ci.execute_command("true")
    assert ci.session_id is None
    assert delete.call_count == 0


def test_no_garbage_collection_warning_for_a_lost_session(cube) -> None:
    cube.create()
    cube.execute(status_code=404, json=ROUTER_939ABB5)
    ci = CodeInterpreterClient(workload_manager_url=cube.wm, router_url=cube.router)
    with pytest.raises(SessionNotFoundError):
        ci.execute_command("true")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        del ci
        gc.collect()
    assert [w for w in record if issubclass(w.category, ResourceWarning)] == []


def test_a_sandbox_404_keeps_the_session(cube, make_ci, requests_mock, tmp_path) -> None:
    cube.create()
    delete = cube.delete()
    requests_mock.get(
        cube.ci_url("api/files/nope.txt"),
        status_code=404,
        json={"error": "File not found", "code": 404},
        headers={HEADER: "ci-1"},
    )
    ci = make_ci()
    with pytest.raises(NotFoundError) as info:
        ci.download_file("nope.txt", tmp_path / "x")
    assert not isinstance(info.value, SessionNotFoundError)
    assert ci.session_id == "ci-1"
    assert _exit_cleanup.is_registered(ci._cleanup_key)
    assert ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 1


def test_another_sessions_error_changes_nothing(cube, make_ci) -> None:
    cube.create()
    delete = cube.delete()
    ci = make_ci()
    ci._forget_if_lost(SessionNotFoundError("x", status_code=404, session_id="other"))
    assert ci.session_id == "ci-1"
    assert ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 1


def test_the_low_level_data_plane_client_keeps_its_session_id(requests_mock) -> None:
    # Stateless shells (upstream's clients/): they raise, and keep what they were given.
    from agentcube.clients import CodeInterpreterDataPlaneClient

    requests_mock.post(
        "http://router.test/v1/namespaces/default/code-interpreters/ci/invocations/api/execute",
        status_code=404,
        json={"code": "SESSION_NOT_FOUND"},
    )
    dp = CodeInterpreterDataPlaneClient(
        "ci-1", router_url="http://router.test", namespace="default", cr_name="ci"
    )
    with pytest.raises(SessionNotFoundError):
        dp.execute(["true"])
    assert dp.session_id == "ci-1"
