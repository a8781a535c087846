"""Configuration: argument > env var > nothing; input validation before any request."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentcube import (
    AgentRuntimeClient,
    CodeInterpreterClient,
    InvalidArgumentError,
    RetryPolicy,
    StopOutcome,
    TokenAuth,
)
from agentcube._config import check_session_id
from agentcube.clients import (
    AgentRuntimeDataPlaneClient,
    CodeInterpreterDataPlaneClient,
    ControlPlaneClient,
)
from agentcube.kinds import CODE_INTERPRETER

WM = "http://wm.test"
ROUTER = "http://router.test"
HEADER = "x-agentcube-session-id"
CI_EXECUTE = (
    f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/api/execute"
)
EXEC_OK = {"stdout": "ok", "stderr": "", "exit_code": 0}

UNSAFE_IDS = [".", "..", "a/b", "a b", "x" * 257, "é", "a\n", "a%2F", "../x", "a?b", "a#b"]
SAFE_IDS = ["abc", "A-b_c.d:e", "x" * 256, "0", "..a", "a..", "...", "-", ":"]


# -- URLs: argument, env var, nothing -----------------------------------------------------------


def test_argument_wins_over_env(monkeypatch, requests_mock):
    monkeypatch.setenv("WORKLOAD_MANAGER_URL", "http://env-wm.test")
    monkeypatch.setenv("ROUTER_URL", "http://env-router.test")
    create = requests_mock.post(f"{WM}/v1/code-interpreter", json={"sessionId": "ci-1"})
    execute = requests_mock.post(CI_EXECUTE, json=EXEC_OK)
    delete = requests_mock.delete(f"{WM}/v1/code-interpreter/sessions/ci-1", json={})

    ci = CodeInterpreterClient(workload_manager_url=WM, router_url=ROUTER)
    ci.execute_command("true")
    ci.stop()
    assert (create.call_count, execute.call_count, delete.call_count) == (1, 1, 1)
    assert all("env-" not in r.url for r in requests_mock.request_history)


def test_env_used_when_no_argument(monkeypatch, requests_mock):
    monkeypatch.setenv("WORKLOAD_MANAGER_URL", "http://env-wm.test/")
    monkeypatch.setenv("ROUTER_URL", "https://env-router.test/base/")
    create = requests_mock.post("http://env-wm.test/v1/code-interpreter", json={"sessionId": "c"})
    execute = requests_mock.post(
        "https://env-router.test/base/v1/namespaces/default/code-interpreters/my-interpreter"
        "/invocations/api/execute",
        json=EXEC_OK,
    )
    delete = requests_mock.delete("http://env-wm.test/v1/code-interpreter/sessions/c", json={})

    ci = CodeInterpreterClient()
    ci.execute_command("true")
    assert ci.stop() is StopOutcome.DELETED
    assert (create.call_count, execute.call_count, delete.call_count) == (1, 1, 1)


def test_agent_runtime_reads_both_urls_from_env(monkeypatch, requests_mock):
    monkeypatch.setenv("WORKLOAD_MANAGER_URL", "http://env-wm.test")
    monkeypatch.setenv("ROUTER_URL", "http://env-router.test")
    requests_mock.get(
        "http://env-router.test/v1/namespaces/default/agent-runtimes/a/invocations/",
        headers={HEADER: "ar-1"},
    )
    delete = requests_mock.delete("http://env-wm.test/v1/agent-runtime/sessions/ar-1", json={})
    ar = AgentRuntimeClient("a")
    assert ar.stop() is StopOutcome.DELETED
    assert delete.call_count == 1


def test_missing_router_url_names_argument_and_env_var(requests_mock):
    for build in (
        lambda: CodeInterpreterClient(workload_manager_url=WM),
        lambda: AgentRuntimeClient("my-agent"),
        lambda: CodeInterpreterDataPlaneClient("ci-1", namespace="default", cr_name="ci"),
        lambda: AgentRuntimeDataPlaneClient(None, "default", "my-agent"),
    ):
        with pytest.raises(ValueError) as info:
            build()
        assert "router_url" in str(info.value)
        assert "ROUTER_URL" in str(info.value)
    assert requests_mock.call_count == 0


def test_no_workload_manager_url_is_ever_defaulted(requests_mock):
    with pytest.raises(ValueError) as info:
        CodeInterpreterClient(router_url=ROUTER)
    assert isinstance(info.value, InvalidArgumentError)
    assert "workload_manager_url" in str(info.value)
    assert "WORKLOAD_MANAGER_URL" in str(info.value)
    assert requests_mock.call_count == 0


def test_attached_code_interpreter_needs_wm_url_to_honour_its_delete_policy(requests_mock):
    # Its stop() deletes attached sessions: without a WorkloadManager it could not.
    with pytest.raises(ValueError, match=r"workload_manager_url.*WORKLOAD_MANAGER_URL"):
        CodeInterpreterClient(router_url=ROUTER, session_id="ci-7")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "localhost:8080",
        "wm.test",
        "http://",
        "file:///etc/passwd",
        "http://user:pw@wm.test",
        "http://wm.test/?q=1",
        "http://wm.test/#frag",
    ],
)
def test_urls_must_be_plain_http_or_https(requests_mock, url):
    with pytest.raises(ValueError):
        ControlPlaneClient(url)
    with pytest.raises(ValueError):
        CodeInterpreterClient(workload_manager_url=WM, router_url=url)
    with pytest.raises(ValueError):
        AgentRuntimeClient("my-agent", router_url=url)
    assert requests_mock.call_count == 0


def test_empty_url_is_refused(requests_mock):
    with pytest.raises(ValueError):
        ControlPlaneClient("")
    with pytest.raises(ValueError):
        AgentRuntimeClient("my-agent", router_url="")
    assert requests_mock.call_count == 0


def test_bad_url_in_env_is_refused_and_names_env_var(monkeypatch, requests_mock):
    monkeypatch.setenv("ROUTER_URL", "localhost:8080")
    with pytest.raises(ValueError) as info:
        AgentRuntimeClient("my-agent")
    assert "ROUTER_URL" in str(info.value)
    assert requests_mock.call_count == 0


def test_trailing_slash_is_stripped(requests_mock):
    create = requests_mock.post(f"{WM}/v1/code-interpreter", json={"sessionId": "ci-1"})
    ci = CodeInterpreterClient(workload_manager_url=WM + "/", router_url=ROUTER + "/")
    assert create.last_request.url == f"{WM}/v1/code-interpreter"
    ci.detach()


# -- session ids from the caller ----------------------------------------------------------------


@pytest.mark.parametrize("bad", UNSAFE_IDS)
def test_unsafe_session_ids_are_refused_before_any_request(requests_mock, bad):
    with pytest.raises(ValueError):
        CodeInterpreterClient(session_id=bad, workload_manager_url=WM, router_url=ROUTER)
    with pytest.raises(ValueError):
        AgentRuntimeClient("my-agent", router_url=ROUTER, session_id=bad)
    with pytest.raises(ValueError):
        CodeInterpreterDataPlaneClient(bad, ROUTER, "default", "my-interpreter")
    with pytest.raises(ValueError):
        AgentRuntimeDataPlaneClient(ROUTER, "default", "my-agent").invoke(bad, {})
    assert requests_mock.call_count == 0


def test_an_empty_session_id_means_create_one(requests_mock):
    # As the historic clients: session_id="" is falsy, so a new session is made.
    create = requests_mock.post(f"{WM}/v1/code-interpreter", json={"sessionId": "ci-new"})
    requests_mock.get(
        f"{ROUTER}/v1/namespaces/default/agent-runtimes/my-agent/invocations/",
        headers={HEADER: "ar-new"},
    )
    ci = CodeInterpreterClient(session_id="", workload_manager_url=WM, router_url=ROUTER)
    ar = AgentRuntimeClient("my-agent", router_url=ROUTER, session_id="")
    assert (ci.session_id, ci.owns_session) == ("ci-new", True)
    assert (ar.session_id, ar.owns_session) == ("ar-new", True)
    assert create.call_count == 1
    ci.detach()
    ar.detach()
    with pytest.raises(ValueError):
        CodeInterpreterDataPlaneClient("", ROUTER, "default", "my-interpreter")


@pytest.mark.parametrize("good", SAFE_IDS)
def test_safe_session_ids_are_accepted_and_sent_verbatim(requests_mock, good):
    execute = requests_mock.post(CI_EXECUTE, json=EXEC_OK)
    delete = requests_mock.delete(f"{WM}/v1/code-interpreter/sessions/{good}", json={})
    ci = CodeInterpreterClient(session_id=good, workload_manager_url=WM, router_url=ROUTER)
    assert ci.session_id == good
    ci.execute_command("true")
    assert execute.last_request.headers[HEADER] == good
    assert ci.stop() is StopOutcome.DELETED
    assert delete.call_count == 1


_ALLOWED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:")


@given(st.text(max_size=300))
def test_session_id_rule_property(value):
    expected = 1 <= len(value) <= 256 and set(value) <= _ALLOWED and value not in (".", "..")
    if expected:
        assert check_session_id(value) == value
    else:
        with pytest.raises(ValueError):
            check_session_id(value)


# -- names and namespaces -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "My-Interpreter", "bad_name", "-x", "x-", "a b", "a/b", "é", "a" * 254, None]
)
def test_bad_names_are_refused(requests_mock, name):
    with pytest.raises(ValueError):
        CodeInterpreterClient(name=name, workload_manager_url=WM, router_url=ROUTER)
    with pytest.raises(ValueError):
        AgentRuntimeClient(name, router_url=ROUTER, session_id="s")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    "namespace", ["", "Default", "a.b", "a_b", "-ns", "ns-", "a" * 64, "a/b", None]
)
def test_bad_namespaces_are_refused(requests_mock, namespace):
    with pytest.raises(ValueError):
        CodeInterpreterClient(namespace=namespace, workload_manager_url=WM, router_url=ROUTER)
    with pytest.raises(ValueError):
        AgentRuntimeClient("my-agent", namespace=namespace, router_url=ROUTER, session_id="s")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("name", ["a", "my-interpreter", "a.b-c", "x1", "a" * 253])
def test_good_names_are_accepted(requests_mock, name):
    client = AgentRuntimeClient(name, namespace="a" * 63, router_url=ROUTER, session_id="s")
    assert client.name == name
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("value", [0, -1, "5", True, float("inf"), float("nan")])
def test_bad_timeouts_are_refused(requests_mock, value):
    with pytest.raises(ValueError):
        AgentRuntimeClient("my-agent", router_url=ROUTER, session_id="s", timeout=value)
    with pytest.raises(ValueError):
        AgentRuntimeClient("my-agent", router_url=ROUTER, session_id="s", connect_timeout=value)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("ttl", [0, -1, "3600"])
def test_bad_ttl_is_refused_before_create(requests_mock, ttl):
    with pytest.raises(ValueError):
        CodeInterpreterClient(ttl=ttl, workload_manager_url=WM, router_url=ROUTER)
    assert requests_mock.call_count == 0


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


# -- the token: auth > auth_token > service-account file ----------------------------------------


def _auth_header(requests_mock, **kw):
    execute = requests_mock.post(CI_EXECUTE, json=EXEC_OK)
    ci = CodeInterpreterClient(session_id="ci-1", workload_manager_url=WM, router_url=ROUTER, **kw)
    ci.execute_command("true")
    ci.detach()
    return execute.last_request.headers.get("Authorization")


def test_auth_wins_over_auth_token_and_service_account(requests_mock, service_account_token_path):
    service_account_token_path.write_text("from-sa\n")
    assert (
        _auth_header(requests_mock, auth=TokenAuth("from-auth"), auth_token="from-token")
        == "Bearer from-auth"
    )


def test_auth_token_wins_over_service_account(requests_mock, service_account_token_path):
    service_account_token_path.write_text("from-sa\n")
    assert _auth_header(requests_mock, auth_token="from-token") == "Bearer from-token"


def test_service_account_token_goes_to_the_workload_manager_only(
    requests_mock, service_account_token_path
):
    # The Kubernetes token is the WorkloadManager's credential; the Router wants another kind.
    service_account_token_path.write_text("from-sa\n")
    delete = requests_mock.delete(f"{WM}/v1/code-interpreter/sessions/ci-1", json={})
    execute = requests_mock.post(CI_EXECUTE, json=EXEC_OK)
    ci = CodeInterpreterClient(session_id="ci-1", workload_manager_url=WM, router_url=ROUTER)
    ci.execute_command("true")
    ci.stop()
    assert "Authorization" not in execute.last_request.headers
    assert delete.last_request.headers["Authorization"] == "Bearer from-sa"


def test_no_token_sends_no_authorization(requests_mock):
    assert _auth_header(requests_mock) is None


def test_service_account_token_is_reread_when_rotated(requests_mock, service_account_token_path):
    service_account_token_path.write_text("first")
    delete = requests_mock.delete(
        f"{WM}/v1/code-interpreter/sessions/ci-1", json={"message": "not found"}, status_code=404
    )
    cp = ControlPlaneClient(WM)
    cp.delete(CODE_INTERPRETER, "ci-1")
    assert delete.last_request.headers["Authorization"] == "Bearer first"
    service_account_token_path.write_text("second")
    stat = os.stat(service_account_token_path)
    os.utime(service_account_token_path, (stat.st_atime + 10, stat.st_mtime + 10))
    cp.delete(CODE_INTERPRETER, "ci-1")
    assert delete.last_request.headers["Authorization"] == "Bearer second"


def test_service_account_token_used_by_control_plane(requests_mock, service_account_token_path):
    service_account_token_path.write_text("sa-token")
    delete = requests_mock.delete(f"{WM}/v1/code-interpreter/sessions/s-1", json={})
    ControlPlaneClient(WM, retry=RetryPolicy(max_attempts=1)).delete_session("s-1")
    assert delete.last_request.headers["Authorization"] == "Bearer sa-token"


def test_service_account_path_is_the_kubernetes_one():
    from agentcube import _config

    expected = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert expected == _config.SERVICE_ACCOUNT_TOKEN_PATH


def test_max_connections_defaults_to_100_and_refuses_a_bad_value_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentcube._config import max_connections

    monkeypatch.delenv("AGENTCUBE_MAX_CONNECTIONS", raising=False)
    assert max_connections() == 100
    for bad in ("-1", "ten", "1.5", "\u0663"):
        monkeypatch.setenv("AGENTCUBE_MAX_CONNECTIONS", bad)
        with pytest.raises(InvalidArgumentError, match="AGENTCUBE_MAX_CONNECTIONS"):
            max_connections()
    for text, limit in ((" 7 ", 7), ("0", 0), ("", 100)):
        monkeypatch.setenv("AGENTCUBE_MAX_CONNECTIONS", text)
        assert max_connections() == limit
