"""ControlPlaneClient: create and delete sessions of any kind through the WorkloadManager."""

from __future__ import annotations

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from agentcube import (
    AGENT_RUNTIME,
    CODE_INTERPRETER,
    APIConnectionError,
    APITimeoutError,
    ResourceKind,
    RetryPolicy,
    ServerError,
)
from agentcube.clients import ControlPlaneClient

WM = "http://wm.test"
CREATED = {
    "kind": "CodeInterpreter",
    "sessionId": "ci-1",
    "sandboxId": "sb-1",
    "sandboxName": "sandbox-1",
    "entryPoints": [{"path": "/", "protocol": "http", "endpoint": "10.0.0.1:8080"}],
    "ownerId": "user-1",
}


@pytest.fixture
def cp():
    client = ControlPlaneClient(WM, retry=RetryPolicy(backoff=0))
    yield client
    client.close()


def test_create_returns_parsed_answer(cp, requests_mock):
    create = requests_mock.post(f"{WM}/v1/code-interpreter", json=CREATED)
    created = cp.create(CODE_INTERPRETER, "my-interpreter", "default", ttl=120)
    assert created.session_id == "ci-1"
    assert created.sandbox_id == "sb-1"
    assert created.sandbox_name == "sandbox-1"
    assert created.owner_id == "user-1"
    assert created.entry_points[0].endpoint == "10.0.0.1:8080"
    assert create.last_request.json() == {
        "name": "my-interpreter",
        "namespace": "default",
        "ttl": 120,
        "metadata": {},
    }


def test_create_agent_runtime_uses_its_segment(cp, requests_mock):
    create = requests_mock.post(f"{WM}/v1/agent-runtime", json={"sessionId": "ar-1"})
    assert cp.create(AGENT_RUNTIME, "my-agent").session_id == "ar-1"
    assert create.call_count == 1


def test_create_new_kind_uses_its_segment(cp, requests_mock):
    browser = ResourceKind("Browser", "browser", "browsers")
    create = requests_mock.post(f"{WM}/v1/browser", json={"sessionId": "br-1"})
    requests_mock.delete(f"{WM}/v1/browser/sessions/br-1", json={})
    assert cp.create(browser, "chromium").session_id == "br-1"
    assert cp.delete(browser, "br-1") is True
    assert create.call_count == 1


@pytest.mark.parametrize("kind", [CODE_INTERPRETER, AGENT_RUNTIME])
def test_delete_uses_kind_path_and_returns_true(cp, requests_mock, kind):
    delete = requests_mock.delete(
        f"{WM}/v1/{kind.control_plane_segment}/sessions/s-1",
        json={"message": "Sandbox deleted successfully"},
    )
    assert cp.delete(kind, "s-1") is True
    assert delete.call_count == 1


def test_delete_404_returns_false(cp, requests_mock):
    requests_mock.delete(
        f"{WM}/v1/code-interpreter/sessions/s-1", status_code=404, json={"message": "gone"}
    )
    assert cp.delete(CODE_INTERPRETER, "s-1") is False


def test_delete_session_deletes_a_code_interpreter_session(cp, requests_mock):
    delete = requests_mock.delete(f"{WM}/v1/code-interpreter/sessions/ci-9", json={})
    assert cp.delete_session("ci-9") is True
    assert delete.call_count == 1
    assert delete.last_request.method == "DELETE"


def test_delete_session_404_still_counts_as_deleted(cp, requests_mock):
    delete = requests_mock.delete(
        f"{WM}/v1/code-interpreter/sessions/ci-9", status_code=404, json={"message": "gone"}
    )
    assert cp.delete_session("ci-9") is True
    assert delete.call_count == 1


def test_delete_session_failure_returns_false_and_logs_it(cp, requests_mock, caplog):
    # delete_session() keeps its historic contract: False on failure, never an exception;
    # delete(), the lifecycle's path, raises.
    requests_mock.delete(
        f"{WM}/v1/code-interpreter/sessions/ci-9", status_code=500, json={"message": "boom"}
    )
    with caplog.at_level("ERROR", logger="agentcube.clients.control_plane"):
        assert cp.delete_session("ci-9") is False
    assert "Failed to delete session ci-9" in caplog.text
    assert "boom" in caplog.text
    with pytest.raises(ServerError) as info:
        cp.delete(CODE_INTERPRETER, "ci-9")
    assert info.value.session_id == "ci-9"


def test_delete_session_refuses_a_bad_id_before_sending(cp, requests_mock):
    with pytest.raises(ValueError):
        cp.delete_session("a/b")
    assert requests_mock.call_count == 0


def test_create_session_historic_api(cp, requests_mock):
    create = requests_mock.post(f"{WM}/v1/code-interpreter", json=CREATED)
    assert cp.create_session() == "ci-1"
    body = create.last_request.json()
    assert (body["name"], body["namespace"], body["ttl"]) == ("my-interpreter", "default", 3600)


# -- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
def test_create_is_never_retried_on_gateway_errors(cp, requests_mock, status):
    create = requests_mock.post(f"{WM}/v1/code-interpreter", status_code=status, json={})
    with pytest.raises(ServerError):
        cp.create(CODE_INTERPRETER, "my-interpreter")
    assert create.call_count == 1


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError("connection reset after send"),
        requests.exceptions.ReadTimeout("read timed out"),
    ],
)
def test_create_is_never_retried_after_the_request_may_have_been_sent(cp, requests_mock, exc):
    create = requests_mock.post(f"{WM}/v1/code-interpreter", exc=exc)
    with pytest.raises(APIConnectionError):
        cp.create(CODE_INTERPRETER, "my-interpreter")
    assert create.call_count == 1


def test_create_is_retried_when_the_connection_could_not_be_opened(cp, requests_mock):
    create = requests_mock.post(
        f"{WM}/v1/code-interpreter",
        response_list=[
            {"exc": requests.exceptions.ConnectTimeout},
            {"exc": requests.exceptions.ConnectTimeout},
            {"json": CREATED},
        ],
    )
    assert cp.create(CODE_INTERPRETER, "my-interpreter").session_id == "ci-1"
    assert create.call_count == 3


def _refused() -> requests.exceptions.ConnectionError:
    """What requests raises when nothing listens: the request never left this machine."""
    reason = NewConnectionError(None, "Failed to establish a new connection: refused")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(
        MaxRetryError(None, "/v1/code-interpreter", reason)  # type: ignore[arg-type]
    )


def test_create_is_retried_when_the_connection_was_refused(cp, requests_mock):
    create = requests_mock.post(
        f"{WM}/v1/code-interpreter", response_list=[{"exc": _refused()}, {"json": CREATED}]
    )
    assert cp.create(CODE_INTERPRETER, "my-interpreter").session_id == "ci-1"
    assert create.call_count == 2


def test_create_waits_longer_than_the_servers_two_minutes(cp, requests_mock):
    # The WorkloadManager answers 504 after 2 minutes when the sandbox is not ready.
    create = requests_mock.post(f"{WM}/v1/code-interpreter", json=CREATED)
    cp.create(CODE_INTERPRETER, "my-interpreter")
    _connect, read = create.last_request.timeout
    assert read > 120


def test_create_connect_timeout_gives_up_after_max_attempts(requests_mock):
    cp = ControlPlaneClient(WM, retry=RetryPolicy(max_attempts=2, backoff=0))
    create = requests_mock.post(f"{WM}/v1/code-interpreter", exc=requests.exceptions.ConnectTimeout)
    with pytest.raises(APITimeoutError):
        cp.create(CODE_INTERPRETER, "my-interpreter")
    assert create.call_count == 2


@pytest.mark.parametrize("status", [502, 503, 504])
def test_delete_is_retried_on_gateway_errors(cp, requests_mock, status):
    delete = requests_mock.delete(
        f"{WM}/v1/code-interpreter/sessions/s-1",
        response_list=[{"status_code": status, "json": {}}, {"json": {}}],
    )
    assert cp.delete(CODE_INTERPRETER, "s-1") is True
    assert delete.call_count == 2


def test_delete_is_retried_on_connection_error(cp, requests_mock):
    delete = requests_mock.delete(
        f"{WM}/v1/code-interpreter/sessions/s-1",
        response_list=[
            {"exc": requests.exceptions.ConnectionError("reset")},
            {"exc": requests.exceptions.ReadTimeout("slow")},
            {"json": {}},
        ],
    )
    assert cp.delete(CODE_INTERPRETER, "s-1") is True
    assert delete.call_count == 3


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [0, -5, 1.5, "60", True])
def test_create_rejects_bad_ttl_before_sending(cp, requests_mock, ttl):
    with pytest.raises(ValueError):
        cp.create(CODE_INTERPRETER, "my-interpreter", ttl=ttl)
    assert requests_mock.call_count == 0


def test_create_rejects_bad_metadata_before_sending(cp, requests_mock):
    with pytest.raises(ValueError):
        cp.create(CODE_INTERPRETER, "my-interpreter", metadata=["not", "a", "dict"])  # type: ignore[arg-type]
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("bad", ["", "..", "a/b", "a b", "x" * 257])
def test_delete_rejects_unsafe_ids_before_sending(cp, requests_mock, bad):
    with pytest.raises(ValueError):
        cp.delete(CODE_INTERPRETER, bad)
    with pytest.raises(ValueError):
        cp.delete_session(bad)
    assert requests_mock.call_count == 0


def test_missing_url_names_argument_and_env_var(requests_mock):
    with pytest.raises(ValueError) as info:
        ControlPlaneClient()
    assert "workload_manager_url" in str(info.value)
    assert "WORKLOAD_MANAGER_URL" in str(info.value)


def test_url_from_env(monkeypatch, requests_mock):
    monkeypatch.setenv("WORKLOAD_MANAGER_URL", "http://env-wm.test/")
    delete = requests_mock.delete("http://env-wm.test/v1/code-interpreter/sessions/s-1", json={})
    cp = ControlPlaneClient()
    assert cp.base_url == "http://env-wm.test"
    cp.delete_session("s-1")
    assert delete.call_count == 1


def test_repr_and_context_manager(requests_mock):
    with ControlPlaneClient(WM) as cp:
        assert "wm.test" in repr(cp)
    assert requests_mock.call_count == 0
