"""AgentRuntimeClient and AgentRuntimeDataPlaneClient: bootstrap through the Router, invoke."""

from __future__ import annotations

import pytest
import requests
from requests_mock import ANY

from agentcube import (
    AgentRuntimeClient,
    APIConnectionError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RetryPolicy,
    ServerError,
    SessionError,
    StopOutcome,
)
from agentcube.clients import AgentRuntimeDataPlaneClient

WM = "http://wm.test"
ROUTER = "http://router.test"
HEADER = "x-agentcube-session-id"
PREFIX = f"{ROUTER}/v1/namespaces/default/agent-runtimes/my-agent/invocations/"


# -- bootstrap ----------------------------------------------------------------------------------


def test_bootstrap_is_a_bare_get_to_invocations(cube, make_ar, requests_mock):
    boot = cube.bootstrap("ar-1")
    ar = make_ar()
    assert ar.session_id == "ar-1"
    assert ar.agent_name == "my-agent"
    assert requests_mock.call_count == 1
    request = boot.last_request
    assert request.method == "GET"
    assert request.url == PREFIX
    assert not request.body
    assert HEADER not in request.headers


def test_bootstrap_uses_namespace_in_url(cube, make_ar, requests_mock):
    requests_mock.get(
        f"{ROUTER}/v1/namespaces/team-a/agent-runtimes/helper/invocations/",
        headers={HEADER: "ar-ns"},
    )
    ar = make_ar("helper", namespace="team-a")
    assert ar.session_id == "ar-ns"


@pytest.mark.parametrize("status", [404, 405, 200, 204])
def test_bootstrap_takes_id_from_header_whatever_the_agent_answered(cube, make_ar, status):
    cube.bootstrap("ar-404", status=status)
    ar = make_ar()
    assert ar.session_id == "ar-404"
    assert ar.owns_session


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_bootstrap_5xx_without_session_header_raises_and_is_not_retried(cube, make_ar, status):
    boot = cube.bootstrap("", status=status, json={"error": "router down"})
    with pytest.raises(ServerError) as info:
        make_ar(retry=RetryPolicy(max_attempts=5, backoff=0))
    assert info.value.status_code == status
    assert boot.call_count == 1  # a retried bootstrap could create a second session


@pytest.mark.parametrize("status", [500, 503])
def test_bootstrap_5xx_with_session_header_owns_the_session(cube, make_ar, status):
    # The agent failed its bare GET, but the router opened a session: it must not be lost.
    boot = cube.bootstrap("ar-5xx", status=status, json={"error": "agent crashed"})
    ar = make_ar(retry=RetryPolicy(max_attempts=5, backoff=0))
    assert ar.session_id == "ar-5xx"
    assert ar.owns_session
    assert boot.call_count == 1


def test_bootstrap_connection_error_after_send_is_not_retried(requests_mock, make_ar):
    boot = requests_mock.get(PREFIX, exc=requests.exceptions.ConnectionError("reset"))
    with pytest.raises(APIConnectionError):
        make_ar(retry=RetryPolicy(max_attempts=5, backoff=0))
    assert boot.call_count == 1


def test_bootstrap_is_retried_when_connection_never_opened(requests_mock, make_ar):
    boot = requests_mock.get(
        PREFIX,
        response_list=[
            {"exc": requests.exceptions.ConnectTimeout},
            {"status_code": 200, "headers": {HEADER: "ar-2"}, "text": ""},
        ],
    )
    ar = make_ar()
    assert ar.session_id == "ar-2"
    assert boot.call_count == 2


def test_bootstrap_without_header_raises_session_error(cube, make_ar, requests_mock):
    requests_mock.get(PREFIX, status_code=200, text="hello")
    with pytest.raises(SessionError):
        make_ar()
    assert requests_mock.call_count == 1


def test_bootstrap_refused_by_router_raises_http_error(requests_mock, make_ar):
    # The router itself refused (no session header): a bad token is an AuthenticationError,
    # which old `except requests.HTTPError` code still catches.
    requests_mock.get(PREFIX, status_code=401, json={"error": "unauthorized"})
    with pytest.raises(AuthenticationError) as info:
        make_ar()
    assert isinstance(info.value, requests.HTTPError)
    assert info.value.response.status_code == 401


@pytest.mark.parametrize("bad", ["../x", "a b", "x" * 300, "a/b", "..", "a%2F"])
def test_unsafe_session_id_from_router_raises_before_any_further_request(
    requests_mock, make_ar, bad
):
    requests_mock.get(PREFIX, headers={HEADER: bad})
    requests_mock.delete(ANY, json={})
    with pytest.raises(SessionError):
        make_ar()
    assert requests_mock.call_count == 1
    assert requests_mock.request_history[0].method == "GET"


# -- invoke -------------------------------------------------------------------------------------


def test_invoke_posts_json_with_session_header_and_returns_json(cube, make_ar, requests_mock):
    cube.bootstrap("ar-1")
    invoke = requests_mock.post(PREFIX, json={"reply": "hi", "n": [1, 2]})
    ar = make_ar()
    assert ar.invoke({"prompt": "hello", "k": 3}) == {"reply": "hi", "n": [1, 2]}
    request = invoke.last_request
    assert request.method == "POST"
    assert request.url == PREFIX
    assert request.json() == {"prompt": "hello", "k": 3}
    assert request.headers[HEADER] == "ar-1"
    assert request.headers["Content-Type"] == "application/json"


def test_invoke_returns_text_when_body_is_not_json(cube, make_ar, requests_mock):
    cube.bootstrap("ar-1")
    requests_mock.post(PREFIX, text="plain answer", headers={"Content-Type": "text/plain"})
    ar = make_ar()
    assert ar.invoke({"q": 1}) == "plain answer"


def test_invoke_on_attached_session_sends_its_id(make_ar, requests_mock):
    invoke = requests_mock.post(PREFIX, json=[1, 2, 3])
    ar = make_ar(session_id="ar-attached")
    assert ar.invoke(["x"]) == [1, 2, 3]
    assert invoke.last_request.headers[HEADER] == "ar-attached"
    assert requests_mock.call_count == 1  # attaching sent nothing


@pytest.mark.parametrize(
    ("path", "suffix"),
    [("chat/v1", "chat/v1"), ("/chat/v1", "chat/v1"), ("a b", "a%20b"), ("run?x=1", "run?x=1")],
)
def test_invoke_path_is_appended_to_invocations(make_ar, requests_mock, path, suffix):
    requests_mock.post(PREFIX + suffix.split("?")[0], json={"ok": True})
    ar = make_ar(session_id="ar-1")
    assert ar.invoke({}, path=path) == {"ok": True}
    assert requests_mock.last_request.url == PREFIX + suffix


@pytest.mark.parametrize("path", ["../x", "..", "a/../b", "./x", "a/./b"])
def test_invoke_refuses_dot_segments(make_ar, requests_mock, path):
    ar = make_ar(session_id="ar-1")
    with pytest.raises(ValueError):
        ar.invoke({}, path=path)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("status", [502, 503, 504])
def test_invoke_is_not_retried_on_5xx(make_ar, requests_mock, status):
    invoke = requests_mock.post(PREFIX, status_code=status, json={"error": "busy"})
    ar = make_ar(session_id="ar-1", retry=RetryPolicy(max_attempts=5, backoff=0))
    with pytest.raises(ServerError) as info:
        ar.invoke({"q": 1})
    assert invoke.call_count == 1
    assert info.value.session_id == "ar-1"


def test_invoke_is_not_retried_after_connection_error(make_ar, requests_mock):
    invoke = requests_mock.post(PREFIX, exc=requests.exceptions.ConnectionError("reset"))
    ar = make_ar(session_id="ar-1", retry=RetryPolicy(max_attempts=5, backoff=0))
    with pytest.raises(APIConnectionError):
        ar.invoke({"q": 1})
    assert invoke.call_count == 1


def test_invoke_timeout_is_the_read_timeout(make_ar, requests_mock):
    requests_mock.post(PREFIX, json={})
    ar = make_ar(session_id="ar-1", timeout=33, connect_timeout=2.5)
    ar.invoke({})
    assert requests_mock.last_request.timeout == (2.5, 33)
    ar.invoke({}, timeout=7)
    assert requests_mock.last_request.timeout == (2.5, 7)


def test_invoke_errors_carry_router_message(make_ar, requests_mock):
    requests_mock.post(PREFIX, status_code=403, json={"error": "not the owner of this sandbox"})
    ar = make_ar(session_id="ar-1")
    with pytest.raises(PermissionDeniedError) as info:
        ar.invoke({})
    assert info.value.message == "not the owner of this sandbox"
    assert info.value.session_id == "ar-1"


def test_invoke_404_is_not_found(make_ar, requests_mock):
    requests_mock.post(PREFIX + "nope", status_code=404, json={"error": "no route"})
    ar = make_ar(session_id="ar-1")
    with pytest.raises(NotFoundError) as info:
        ar.invoke({}, path="nope")
    assert info.value.status_code == 404


# -- close() and the data-plane client ----------------------------------------------------------


def test_close_deletes_nothing_and_client_keeps_working(cube, make_ar, requests_mock):
    cube.bootstrap("ar-1")
    cube.delete("agent-runtime", "ar-1")
    requests_mock.post(PREFIX, json={"ok": 1})
    ar = make_ar()
    ar.close()
    assert cube.deletes() == []
    assert ar.invoke({}) == {"ok": 1}
    assert ar.stop() is StopOutcome.DELETED


def test_data_plane_client_bootstrap_and_invoke_in_upstream_shape(requests_mock):
    # AgentRuntimeDataPlaneClient(router_url, namespace, agent_name): bootstrap_session_id()
    # returns the id; invoke(session_id, payload, timeout, path) returns the Response itself.
    requests_mock.get(PREFIX, headers={HEADER: "ar-5"})
    invoke = requests_mock.post(PREFIX + "x", json={"ok": True})
    failing = requests_mock.post(PREFIX + "bad", status_code=500, json={"error": "boom"})
    with AgentRuntimeDataPlaneClient(ROUTER, "default", "my-agent") as dp:
        assert dp.SESSION_HEADER == HEADER
        assert dp.base_url == PREFIX
        session_id = dp.bootstrap_session_id()
        assert session_id == "ar-5"
        response = dp.invoke(session_id, {"q": 1}, path="x")
        assert isinstance(response, requests.Response)
        assert response.json() == {"ok": True}
        bad = dp.invoke(session_id=session_id, payload={}, timeout=3, path="/bad")
        assert bad.status_code == 500
        with pytest.raises(requests.HTTPError):
            bad.raise_for_status()
    assert invoke.last_request.headers[HEADER] == "ar-5"
    assert invoke.last_request.json() == {"q": 1}
    assert failing.last_request.timeout == (5.0, 3)
    assert all(r.method != "DELETE" for r in requests_mock.request_history)


def test_data_plane_client_reads_router_url_from_env(monkeypatch, requests_mock):
    monkeypatch.setenv("ROUTER_URL", ROUTER)
    invoke = requests_mock.post(PREFIX, json={"ok": True})
    dp = AgentRuntimeDataPlaneClient(None, "default", "my-agent")
    assert dp.invoke("ar-1", {}).json() == {"ok": True}
    assert invoke.call_count == 1


def test_agent_runtime_client_keeps_historic_positional_order(requests_mock):
    # AgentRuntimeClient(agent_name, namespace, router_url, verbose, session_id, ...)
    invoke = requests_mock.post(
        f"{ROUTER}/v1/namespaces/ns1/agent-runtimes/agent-x/invocations/", json={}
    )
    ar = AgentRuntimeClient("agent-x", "ns1", ROUTER, False, "ar-pos")
    ar.invoke({})
    assert invoke.last_request.headers[HEADER] == "ar-pos"
    assert ar.stop() is StopOutcome.KEPT
