"""Behaviour pinned down after review: wrong-server 404s, payloads, forks, outcomes, closes."""

from __future__ import annotations

import os
import stat

import pytest
import requests

from agentcube import (
    APIConnectionError,
    InvalidArgumentError,
    ManagedSessionClient,
    NotFoundError,
    ResourceKind,
    ServiceAccountAuth,
    StopOutcome,
    _exit_cleanup,
)

WM = "http://wm.test"


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


@pytest.mark.parametrize("payload", [{"x": float("nan")}, {"x": float("inf")}, {"x": object()}])
def test_a_payload_that_is_not_json_is_refused_before_sending(
    cube, make_ar, requests_mock, payload
):
    cube.bootstrap()
    ar = make_ar()
    sent = requests_mock.call_count
    with pytest.raises(InvalidArgumentError):
        ar.invoke(payload)
    assert requests_mock.call_count == sent


def test_bad_create_metadata_is_refused_before_sending(requests_mock, make_ci):
    with pytest.raises(InvalidArgumentError) as info:
        make_ci(metadata={"a": float("nan")})
    assert "may be running" not in str(info.value)
    assert requests_mock.call_count == 0


def test_stop_outcome_prints_its_value_on_every_version() -> None:
    assert str(StopOutcome.DELETED) == "deleted"
    assert f"{StopOutcome.LEFT_RUNNING}" == "left_running"


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


def test_a_forked_child_forgets_the_sessions_of_its_parent(cube, make_ci, monkeypatch):
    cube.create()
    ci = make_ci()
    assert ci._cleanup_key in _exit_cleanup._owned
    monkeypatch.setattr(_exit_cleanup, "_owned", _exit_cleanup._owned)
    monkeypatch.setattr(_exit_cleanup, "_lock", _exit_cleanup._lock)
    _exit_cleanup._forget_in_child()  # what os.register_at_fork runs in a child
    assert _exit_cleanup._owned == {}
    assert _exit_cleanup.cleanup_owned_sessions() == []


def test_download_file_gets_the_mode_of_a_new_file(make_ci, requests_mock, tmp_path):
    ci = make_ci(session_id="ci-1")
    prefix = (
        "http://router.test/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
    )
    requests_mock.get(
        prefix + "api/files/a.bin", content=b"abc", headers={"x-agentcube-session-id": "ci-1"}
    )
    umask = os.umask(0o022)
    try:
        ci.download_file("a.bin", tmp_path / "a.bin")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o644
    with pytest.raises(IsADirectoryError):
        ci.download_file("a.bin", tmp_path)


def test_token_endpoint_failure_does_not_claim_a_sandbox_may_exist(requests_mock, make_ci):
    requests_mock.post("http://idp.test/token", exc=requests.exceptions.ConnectionError("down"))
    auth = ServiceAccountAuth("http://idp.test/token", "client", "s3cret")
    with pytest.raises(APIConnectionError) as info:
        make_ci(auth=auth)
    assert "may be running" not in str(info.value)


def test_a_deadline_bounds_all_attempts_together(requests_mock, monkeypatch):
    import time

    from agentcube import APITimeoutError, RetryPolicy, ServerError
    from agentcube.clients import ControlPlaneClient
    from agentcube.kinds import CODE_INTERPRETER

    delete = requests_mock.delete(WM + "/v1/code-interpreter/sessions/s-1", status_code=503)
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt: 0.1)  # no jitter here
    client = ControlPlaneClient(WM, retry=RetryPolicy(max_attempts=50))
    started = time.monotonic()
    with pytest.raises(ServerError):
        client.delete(CODE_INTERPRETER, "s-1", deadline=started + 0.35)
    assert time.monotonic() - started < 1.0  # without the deadline: 49 pauses of 0.1 s
    assert 1 <= delete.call_count <= 4  # 0.1 s apart, none started within 0.1 s of the deadline
    sent = delete.call_count
    with pytest.raises(APITimeoutError):
        client.delete(CODE_INTERPRETER, "s-1", deadline=time.monotonic() - 1)
    assert delete.call_count == sent  # nothing is sent once the deadline has passed
