"""ManagedSessionClient lifecycle: owned/attached, stop/delete/detach, ``with``, GC, rollback."""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
import warnings
import weakref

import pytest
import requests

from agentcube import (
    AgentRuntimeClient,
    APIConnectionError,
    CodeInterpreterClient,
    ManagedSessionClient,
    NotFoundError,
    ResourceKind,
    RetryPolicy,
    ServerError,
    SessionError,
    StopOutcome,
    _exit_cleanup,
    enable_exit_cleanup,
)

WM = "http://wm.test"
ROUTER = "http://router.test"
CI_DELETE = f"{WM}/v1/code-interpreter/sessions/ci-1"
AR_DELETE = f"{WM}/v1/agent-runtime/sessions/ar-1"


def _resource_warnings(record: list[warnings.WarningMessage], text: str) -> list[str]:
    return [
        str(w.message)
        for w in record
        if issubclass(w.category, ResourceWarning) and text in str(w.message)
    ]


# -- stop() of owned and attached sessions ------------------------------------------------------


def test_owned_code_interpreter_stop_deletes_session(cube, make_ci):
    cube.create()
    delete = cube.delete()
    ci = make_ci()
    assert ci.owns_session
    assert ci.session_id == "ci-1"

    assert ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 1
    assert delete.last_request.url == CI_DELETE


def test_owned_agent_runtime_stop_deletes_session(cube, make_ar):
    cube.bootstrap("ar-1")
    delete = cube.delete("agent-runtime", "ar-1")
    ar = make_ar()
    assert ar.owns_session
    assert ar.session_id == "ar-1"

    assert ar.stop() is StopOutcome.DELETED
    assert delete.call_count == 1
    assert delete.last_request.url == AR_DELETE


def test_attached_agent_runtime_stop_keeps_session(cube, make_ar, requests_mock):
    cube.delete("agent-runtime", "ar-9")
    ar = make_ar(session_id="ar-9")
    assert not ar.owns_session

    assert ar.stop() is StopOutcome.KEPT
    assert cube.deletes() == []
    assert requests_mock.call_count == 0


def test_attached_code_interpreter_stop_still_deletes(cube, make_ci, requests_mock):
    delete = cube.delete(session_id="ci-7")
    ci = make_ci(session_id="ci-7")
    assert not ci.owns_session
    assert requests_mock.call_count == 0  # attaching sends nothing

    assert ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 1


def test_stop_closes_client_for_further_work(cube, make_ci, requests_mock):
    cube.create()
    cube.delete()
    cube.execute(stdout="x")
    ci = make_ci()
    ci.stop()
    before = requests_mock.call_count

    with pytest.raises(SessionError):
        ci.execute_command("echo hi")
    assert requests_mock.call_count == before


def test_close_only_closes_connections_and_client_stays_usable(cube, make_ci):
    cube.create()
    cube.delete()
    cube.execute(stdout="again\n")
    ci = make_ci()

    ci.close()
    assert cube.deletes() == []
    assert ci.execute_command("echo again") == "again\n"
    assert ci.stop() is StopOutcome.DELETED


# -- the context manager ------------------------------------------------------------------------


def test_with_owned_code_interpreter_deletes_on_exit(cube, make_ci):
    cube.create()
    delete = cube.delete()
    with make_ci() as ci:
        assert delete.call_count == 0
        assert ci.session_id == "ci-1"
    assert delete.call_count == 1


def test_with_owned_agent_runtime_deletes_on_exit(cube, make_ar):
    cube.bootstrap("ar-1")
    delete = cube.delete("agent-runtime", "ar-1")
    with make_ar():
        pass
    assert delete.call_count == 1


def test_with_attached_agent_runtime_keeps_session(cube, make_ar):
    cube.delete("agent-runtime", "ar-9")
    with make_ar(session_id="ar-9") as ar:
        assert ar.session_id == "ar-9"
    assert cube.deletes() == []


def test_with_body_exception_propagates_and_session_is_deleted(cube, make_ci):
    cube.create()
    delete = cube.delete()
    with pytest.raises(KeyError):
        with make_ci():
            raise KeyError("body")
    assert delete.call_count == 1


# -- delete() and detach() ----------------------------------------------------------------------


def test_delete_ends_attached_agent_runtime(cube, make_ar):
    delete = cube.delete("agent-runtime", "ar-9")
    ar = make_ar(session_id="ar-9")
    assert ar.delete() is StopOutcome.DELETED
    assert delete.call_count == 1
    assert delete.last_request.url == f"{WM}/v1/agent-runtime/sessions/ar-9"


def test_delete_owned_code_interpreter(cube, make_ci):
    cube.create()
    delete = cube.delete()
    ci = make_ci()
    assert ci.delete() is StopOutcome.DELETED
    assert delete.call_count == 1


def test_delete_after_detach_still_deletes(cube, make_ar):
    cube.bootstrap("ar-1")
    delete = cube.delete("agent-runtime", "ar-1")
    ar = make_ar()
    ar.detach()
    assert ar.delete() is StopOutcome.DELETED
    assert delete.call_count == 1


@pytest.mark.parametrize("kind", ["code-interpreter", "agent-runtime"])
@pytest.mark.parametrize("attached", [False, True])
def test_stop_after_detach_sends_no_delete(cube, make_ci, make_ar, kind, attached):
    sid = "sess-1"
    cube.delete(kind, sid)
    if kind == "code-interpreter":
        cube.create(session_id=sid)
        client = make_ci(session_id=sid) if attached else make_ci()
    else:
        cube.bootstrap(sid)
        client = make_ar(session_id=sid) if attached else make_ar()

    assert client.detach() == sid
    assert not client.owns_session
    assert client.stop() is StopOutcome.KEPT
    assert cube.deletes() == []
    assert client.session_id == sid


def test_detach_after_delete_raises(cube, make_ci):
    cube.create()
    cube.delete()
    ci = make_ci()
    ci.delete()
    with pytest.raises(SessionError):
        ci.detach()


# -- StopOutcome and idempotence ----------------------------------------------------------------


def test_404_on_delete_counts_as_already_gone(cube, make_ci):
    cube.create()
    delete = cube.delete(status_code=404, json={"message": "session not found, maybe deleted"})
    ci = make_ci()
    assert ci.stop() is StopOutcome.ALREADY_GONE
    assert delete.call_count == 1
    assert ci.stop() is StopOutcome.NOTHING_TO_DO
    assert delete.call_count == 1


def test_404_from_something_else_than_the_workload_manager_keeps_the_session(cube, make_ci):
    # A router or a proxy at the WorkloadManager URL: its 404 must not count as "deleted".
    cube.create()
    delete = cube.delete(status_code=404, json={"error": "no route"})
    ci = make_ci()
    with pytest.raises(NotFoundError) as info:
        ci.stop()
    assert info.value.session_id == "ci-1"
    assert ci.session_id == "ci-1" and ci.owns_session
    cube.delete(status_code=404, text="<html>not found</html>")
    with pytest.raises(NotFoundError):
        ci.stop()
    cube.delete()
    assert ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 1


def test_stop_outcome_prints_its_value_on_every_version() -> None:
    assert str(StopOutcome.DELETED) == "deleted"
    assert f"{StopOutcome.LEFT_RUNNING}" == "left_running"


def test_double_stop_sends_one_delete(cube, make_ci):
    cube.create()
    delete = cube.delete()
    ci = make_ci()
    assert ci.stop() is StopOutcome.DELETED
    assert ci.stop() is StopOutcome.NOTHING_TO_DO
    assert ci.delete() is StopOutcome.NOTHING_TO_DO
    assert delete.call_count == 1


def test_stop_after_kept_is_nothing_to_do(cube, make_ar, requests_mock):
    ar = make_ar(session_id="ar-9")
    assert ar.stop() is StopOutcome.KEPT
    assert ar.stop() is StopOutcome.NOTHING_TO_DO
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("method", ["stop", "delete"])
def test_concurrent_stop_sends_exactly_one_delete(cube, make_ci, method):
    cube.create()
    in_flight = []

    def slow_delete(request, context):
        in_flight.append(1)
        time.sleep(0.2)  # long enough for every other thread to reach stop()
        return {"message": "Sandbox deleted successfully"}

    delete = cube.delete(json=slow_delete)
    ci = make_ci()
    barrier = threading.Barrier(8)
    outcomes: list[StopOutcome] = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            outcomes.append(getattr(ci, method)())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert errors == []
    assert delete.call_count == 1
    assert sorted(outcomes) == sorted([StopOutcome.DELETED] + [StopOutcome.NOTHING_TO_DO] * 7)


# -- failed deletes and retries -----------------------------------------------------------------


def test_failed_delete_raises_and_keeps_state_then_retry_succeeds(cube, make_ci):
    cube.create()
    delete = cube.delete(
        response_list=[
            {"status_code": 500, "json": {"message": "etcd unavailable"}},
            {"status_code": 200, "json": {"message": "Sandbox deleted successfully"}},
        ]
    )
    ci = make_ci()

    with pytest.raises(ServerError) as info:
        ci.stop()
    assert info.value.status_code == 500
    assert info.value.session_id == "ci-1"
    assert delete.call_count == 1  # a 500 is not retried
    assert ci.session_id == "ci-1"
    assert ci.owns_session

    assert ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 2
    assert ci.stop() is StopOutcome.NOTHING_TO_DO
    assert delete.call_count == 2


def test_failed_delete_by_connection_error_can_be_retried(cube, make_ci):
    cube.create()
    delete = cube.delete(
        response_list=[
            {"exc": requests.exceptions.ConnectionError("reset")},
            {"exc": requests.exceptions.ConnectionError("reset")},
            {"exc": requests.exceptions.ConnectionError("reset")},
            {"status_code": 200, "json": {}},
        ]
    )
    ci = make_ci(retry=RetryPolicy(max_attempts=3, backoff=0))
    with pytest.raises(APIConnectionError):
        ci.stop()
    assert delete.call_count == 3
    assert ci.owns_session
    assert ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 4


def test_delete_503_then_200_is_retried_inside_one_stop(cube, make_ci):
    cube.create()
    delete = cube.delete(
        response_list=[
            {"status_code": 503, "json": {"message": "busy"}},
            {"status_code": 200, "json": {"message": "Sandbox deleted successfully"}},
        ]
    )
    ci = make_ci()
    assert ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 2


def test_delete_503_gives_up_after_max_attempts(cube, make_ci):
    cube.create()
    delete = cube.delete(status_code=503, json={"message": "busy"})
    ci = make_ci(retry=RetryPolicy(max_attempts=4, backoff=0))
    with pytest.raises(ServerError) as info:
        ci.stop()
    assert info.value.status_code == 503
    assert delete.call_count == 4
    assert ci.owns_session


def test_delete_500_is_not_retried(cube, make_ci):
    cube.create()
    delete = cube.delete(status_code=500, json={"message": "boom"})
    ci = make_ci(retry=RetryPolicy(max_attempts=5, backoff=0))
    with pytest.raises(ServerError):
        ci.stop()
    assert delete.call_count == 1


class _FailingClose:
    def close(self) -> None:
        raise RuntimeError("data plane close failed")


class _ToyClient(ManagedSessionClient):
    kind = ResourceKind("Toy", "toy", "toys")

    def __init__(self, **kw: object) -> None:
        super().__init__(name="toy", **kw)  # type: ignore[arg-type]

    def _open_data_plane(self, session_id: str) -> _FailingClose:
        return _FailingClose()


def test_a_data_plane_that_fails_to_close_does_not_block_the_delete(requests_mock):
    requests_mock.post(WM + "/v1/toy", json={"sessionId": "toy-1"})
    delete = requests_mock.delete(WM + "/v1/toy/sessions/toy-1", json={"message": "ok"})
    client = _ToyClient(workload_manager_url=WM, router_url="http://router.test")
    assert client.stop() is StopOutcome.DELETED
    assert delete.call_count == 1


# -- rollback of a failed constructor -----------------------------------------------------------


def _fail_open(monkeypatch, cls, exc):
    def boom(self, session_id):
        raise exc

    monkeypatch.setattr(cls, "_open_data_plane", boom)


def test_failed_open_after_create_deletes_new_session(cube, monkeypatch, requests_mock):
    cube.create()
    delete = cube.delete()
    _fail_open(monkeypatch, CodeInterpreterClient, RuntimeError("data plane broke"))

    with pytest.raises(RuntimeError, match="data plane broke"):
        CodeInterpreterClient(workload_manager_url=WM, router_url=ROUTER)
    assert delete.call_count == 1
    assert [r.method for r in requests_mock.request_history] == ["POST", "DELETE"]


def test_failed_open_after_bootstrap_deletes_agent_runtime_session(cube, monkeypatch):
    cube.bootstrap("ar-1")
    delete = cube.delete("agent-runtime", "ar-1")
    _fail_open(monkeypatch, AgentRuntimeClient, RuntimeError("data plane broke"))

    with pytest.raises(RuntimeError):
        AgentRuntimeClient("my-agent", router_url=ROUTER, workload_manager_url=WM)
    assert delete.call_count == 1


def test_failed_rollback_keeps_original_error_and_names_leaked_id(cube, monkeypatch, caplog):
    cube.create()
    delete = cube.delete(status_code=500, json={"message": "etcd unavailable"})
    _fail_open(monkeypatch, CodeInterpreterClient, RuntimeError("data plane broke"))

    with caplog.at_level(logging.ERROR, logger="agentcube"):
        with pytest.raises(RuntimeError, match="data plane broke") as info:
            CodeInterpreterClient(
                workload_manager_url=WM, router_url=ROUTER, retry=RetryPolicy(backoff=0)
            )
    assert delete.call_count >= 1
    assert "ci-1" in caplog.text
    if sys.version_info >= (3, 11):
        notes = getattr(info.value, "__notes__", [])
        assert any("ci-1" in note for note in notes), notes


def test_failed_open_of_attached_session_deletes_nothing(cube, monkeypatch, requests_mock):
    cube.delete(session_id="ci-7")
    _fail_open(monkeypatch, CodeInterpreterClient, RuntimeError("data plane broke"))
    with pytest.raises(RuntimeError):
        CodeInterpreterClient(session_id="ci-7", workload_manager_url=WM, router_url=ROUTER)
    assert requests_mock.call_count == 0


# -- cleanup failures in ``with`` ---------------------------------------------------------------


def test_cleanup_failure_does_not_mask_body_exception(cube, make_ci, caplog):
    cube.create()
    cube.delete(status_code=500, json={"message": "etcd unavailable"})
    with caplog.at_level(logging.ERROR, logger="agentcube"):
        with pytest.raises(KeyError) as info:
            with make_ci():
                raise KeyError("from the body")
    assert info.value.args == ("from the body",)
    assert "ServerError" in caplog.text
    if sys.version_info >= (3, 11):
        notes = getattr(info.value, "__notes__", [])
        assert any("ServerError" in note for note in notes), notes


def test_cleanup_failure_after_successful_body_raises(cube, make_ci):
    cube.create()
    cube.delete(status_code=500, json={"message": "etcd unavailable"})
    ci = make_ci()
    with pytest.raises(ServerError):
        with ci:
            pass
    assert ci.owns_session
    assert ci.session_id == "ci-1"


# -- agent runtime without a WorkloadManager URL ------------------------------------------------


def test_agent_runtime_without_wm_url_works_and_stop_leaves_running(cube, requests_mock):
    cube.bootstrap("ar-1")
    invoke = requests_mock.post(cube.ar_url(), json={"answer": 42})
    ar = AgentRuntimeClient("my-agent", router_url=ROUTER)
    assert ar.owns_session
    assert ar.invoke({"q": 1}) == {"answer": 42}
    assert invoke.call_count == 1

    with pytest.warns(ResourceWarning, match="ar-1"):
        outcome = ar.stop()
    assert outcome is StopOutcome.LEFT_RUNNING
    assert cube.deletes() == []
    with pytest.raises(SessionError):
        ar.invoke({"q": 2})
    assert invoke.call_count == 1


def test_agent_runtime_without_wm_url_with_block_warns_and_does_not_raise(cube):
    cube.bootstrap("ar-1")
    with pytest.warns(ResourceWarning, match="ar-1"):
        with AgentRuntimeClient("my-agent", router_url=ROUTER) as ar:
            assert ar.session_id == "ar-1"
    assert cube.deletes() == []


def test_agent_runtime_without_wm_url_delete_raises_value_error(cube, requests_mock):
    cube.bootstrap("ar-1")
    ar = AgentRuntimeClient("my-agent", router_url=ROUTER)
    before = requests_mock.call_count
    with pytest.raises(ValueError) as info:
        ar.delete()
    assert "workload_manager_url" in str(info.value)
    assert "WORKLOAD_MANAGER_URL" in str(info.value)
    assert requests_mock.call_count == before
    ar.detach()


def test_attached_agent_runtime_without_wm_url_stop_is_quiet(requests_mock):
    ar = AgentRuntimeClient("my-agent", router_url=ROUTER, session_id="ar-9")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert ar.stop() is StopOutcome.KEPT
    assert _resource_warnings(record, "ar-9") == []
    assert requests_mock.call_count == 0


# -- the garbage-collection warning -------------------------------------------------------------


def test_owned_client_garbage_collected_warns_with_id(cube):
    cube.create()
    ci = CodeInterpreterClient(workload_manager_url=WM, router_url=ROUTER)
    ref = weakref.ref(ci)
    with pytest.warns(ResourceWarning, match="ci-1"):
        del ci
        gc.collect()
    assert ref() is None
    assert cube.deletes() == []  # a finalizer only warns, it never sends a request


def test_owned_agent_runtime_garbage_collected_warns_with_id(cube):
    cube.bootstrap("ar-1")
    ar = AgentRuntimeClient("my-agent", router_url=ROUTER, workload_manager_url=WM)
    with pytest.warns(ResourceWarning, match="ar-1"):
        del ar
        gc.collect()


@pytest.mark.parametrize("finish", ["stop", "detach", "delete"])
def test_no_gc_warning_after_stop_detach_or_delete(cube, finish):
    cube.create()
    cube.delete()
    ci = CodeInterpreterClient(workload_manager_url=WM, router_url=ROUTER)
    getattr(ci, finish)()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        del ci
        gc.collect()
    assert _resource_warnings(record, "ci-1") == []


def test_no_gc_warning_after_left_running_was_reported(cube):
    cube.bootstrap("ar-1")
    ar = AgentRuntimeClient("my-agent", router_url=ROUTER)
    with pytest.warns(ResourceWarning):
        ar.stop()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        del ar
        gc.collect()
    assert _resource_warnings(record, "ar-1") == []


@pytest.mark.parametrize("kind", ["code-interpreter", "agent-runtime"])
def test_no_gc_warning_for_attached_clients(requests_mock, kind):
    if kind == "code-interpreter":
        client = CodeInterpreterClient(
            session_id="att-1", workload_manager_url=WM, router_url=ROUTER
        )
    else:
        client = AgentRuntimeClient("my-agent", router_url=ROUTER, session_id="att-1")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        del client
        gc.collect()
    assert _resource_warnings(record, "att-1") == []
    assert requests_mock.call_count == 0


# -- exit cleanup -------------------------------------------------------------------------------


def test_exit_cleanup_deletes_only_owned_sessions(cube, make_ci, make_ar, monkeypatch):
    monkeypatch.setattr(_exit_cleanup, "_owned", {})
    cube.create(session_id="ci-1")
    ci_delete = cube.delete(session_id="ci-1")
    cube.bootstrap("ar-1")
    ar_delete = cube.delete("agent-runtime", "ar-1")
    det_delete = cube.delete(session_id="ci-det")
    att_delete = cube.delete("agent-runtime", "ar-att")

    owned_ci = make_ci()
    owned_ar = make_ar()
    make_ar(session_id="ar-att")
    cube.create(session_id="ci-det")
    detached = make_ci()
    detached.detach()

    assert sorted(e.session_id for e in _exit_cleanup._owned.values()) == ["ar-1", "ci-1"]
    assert _exit_cleanup.cleanup_owned_sessions() == []
    assert ci_delete.call_count == 1
    assert ar_delete.call_count == 1
    assert det_delete.call_count == 0
    assert att_delete.call_count == 0
    assert _exit_cleanup._owned == {}
    # The registry never calls back into a client: a later stop() only repeats the DELETE,
    # which is idempotent.
    assert owned_ci.stop() is StopOutcome.DELETED
    assert owned_ar.stop() is StopOutcome.DELETED


def test_a_forked_child_forgets_the_sessions_of_its_parent(cube, make_ci, monkeypatch):
    cube.create()
    ci = make_ci()
    assert ci._cleanup_key in _exit_cleanup._owned
    monkeypatch.setattr(_exit_cleanup, "_owned", _exit_cleanup._owned)
    monkeypatch.setattr(_exit_cleanup, "_lock", _exit_cleanup._lock)
    _exit_cleanup._forget_in_child()  # what os.register_at_fork runs in a child
    assert _exit_cleanup._owned == {}
    assert _exit_cleanup.cleanup_owned_sessions() == []


def test_enable_exit_cleanup_validates_timeout():
    with pytest.raises(ValueError):
        enable_exit_cleanup(0)
    with pytest.raises(ValueError):
        enable_exit_cleanup(-1.0)


def test_half_built_client_neither_warns_nor_sends(requests_mock):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(ValueError):
            CodeInterpreterClient(name="Bad Name", workload_manager_url=WM, router_url=ROUTER)
        with pytest.raises(ValueError):
            AgentRuntimeClient("my-agent", router_url="ftp://x")
        gc.collect()
    assert [str(w.message) for w in record if issubclass(w.category, ResourceWarning)] == []
    assert requests_mock.call_count == 0


# -- a new kind with no other code --------------------------------------------------------------


class _Page:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class BrowserClient(ManagedSessionClient):
    kind = ResourceKind("Browser", "browser", "browsers")

    def _open_data_plane(self, session_id: str) -> _Page:
        self.page = _Page(session_id)
        return self.page


def test_toy_subclass_creates_and_stops_through_its_kind(requests_mock):
    create = requests_mock.post(f"{WM}/v1/browser", json={"sessionId": "br-1"})
    delete = requests_mock.delete(f"{WM}/v1/browser/sessions/br-1", json={})

    browser = BrowserClient(name="chromium", workload_manager_url=WM, router_url=ROUTER)
    assert browser.session_id == "br-1"
    assert browser.owns_session
    assert browser.page.session_id == "br-1"
    body = create.last_request.json()
    assert body["name"] == "chromium"
    assert body["namespace"] == "default"

    assert browser.stop() is StopOutcome.DELETED
    assert delete.call_count == 1
    assert browser.page.closed >= 1
    assert browser.stop() is StopOutcome.NOTHING_TO_DO
    assert delete.call_count == 1


def test_toy_subclass_delete_and_attached_policy(requests_mock):
    requests_mock.post(f"{WM}/v1/browser", json={"sessionId": "br-2"})
    delete2 = requests_mock.delete(f"{WM}/v1/browser/sessions/br-2", json={})
    delete3 = requests_mock.delete(f"{WM}/v1/browser/sessions/br-3", json={})

    browser = BrowserClient(name="chromium", workload_manager_url=WM, router_url=ROUTER)
    assert browser.delete() is StopOutcome.DELETED
    assert delete2.call_count == 1

    attached = BrowserClient(
        name="chromium", session_id="br-3", workload_manager_url=WM, router_url=ROUTER
    )
    assert attached.stop() is StopOutcome.KEPT  # delete_attached_on_stop defaults to False
    assert delete3.call_count == 0
    assert attached.delete() is StopOutcome.DELETED
    assert delete3.call_count == 1


def test_managed_session_client_is_abstract(requests_mock):
    with pytest.raises(TypeError):
        ManagedSessionClient(name="x", workload_manager_url=WM, router_url=ROUTER)  # type: ignore[abstract]
    assert requests_mock.call_count == 0
