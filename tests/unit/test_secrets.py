"""Planted credentials never show: not in logs, repr(), str(), or error messages."""

from __future__ import annotations

import logging

import pytest
import requests

from agentcube import (
    AgentCubeError,
    AgentRuntimeClient,
    AuthenticationError,
    CodeInterpreterClient,
    RetryPolicy,
    ServiceAccountAuth,
    TokenAuth,
)
from agentcube.clients import ControlPlaneClient
from agentcube.kinds import CODE_INTERPRETER

WM = "http://wm.test"
ROUTER = "http://router.test"
TOKEN_URL = "http://idp.test/oauth2/token"
CI_PREFIX = f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
AR_PREFIX = f"{ROUTER}/v1/namespaces/default/agent-runtimes/my-agent/invocations/"
HEADER = "x-agentcube-session-id"

TOKEN = "tok-SECRET-1234"
CLIENT_SECRET = "cs-SECRET-5678"
ACCESS_TOKEN = "at-SECRET-9012"
SECRETS = (TOKEN, CLIENT_SECRET, ACCESS_TOKEN, "SECRET")


@pytest.fixture
def debug_logs(caplog):
    caplog.set_level(logging.DEBUG)  # the root logger: every logger's records reach caplog
    caplog.set_level(logging.DEBUG, logger="agentcube")
    return caplog


def _assert_hidden(*things: object) -> None:
    for thing in things:
        texts = [repr(thing), str(thing)]
        if isinstance(thing, BaseException):
            texts += [repr(a) for a in thing.args]
            texts += list(getattr(thing, "__notes__", []))
            cause = thing.__cause__ or thing.__context__
            if cause is not None:
                texts += [str(cause), repr(cause)]
        for text in texts:
            for secret in SECRETS:
                assert secret not in text, f"{secret!r} leaked in {text!r}"


def _failures(requests_mock, ci, ar=None) -> list[BaseException]:
    """Run failing calls (401, 500, connection error) and return what they raised."""
    errors: list[BaseException] = []
    cases = [
        ("post", CI_PREFIX + "api/execute", {"status_code": 401, "json": {"error": "bad token"}}),
        ("post", CI_PREFIX + "api/execute", {"status_code": 500, "json": {"error": "boom"}}),
        ("post", CI_PREFIX + "api/execute", {"exc": requests.exceptions.ConnectionError("reset")}),
        ("post", AR_PREFIX, {"status_code": 401, "json": {"error": "bad token"}}),
        ("post", AR_PREFIX, {"exc": requests.exceptions.ReadTimeout("slow")}),
        ("get", CI_PREFIX + "api/files", {"status_code": 500, "text": "internal error"}),
    ]
    for method, url, kw in cases:
        if ar is None and url.startswith(AR_PREFIX):
            continue
        getattr(requests_mock, method)(url, **kw)
        with pytest.raises(AgentCubeError) as info:
            if url.endswith("api/execute"):
                ci.execute_command("true")
            elif url.endswith("api/files"):
                ci.list_files()
            else:
                ar.invoke({"q": 1})
        errors.append(info.value)
    return errors


@pytest.mark.parametrize("how", ["auth_token", "TokenAuth"])
def test_bearer_token_is_sent_but_never_shown(requests_mock, debug_logs, capsys, how):
    creds = {"auth_token": TOKEN} if how == "auth_token" else {"auth": TokenAuth(TOKEN)}
    create = requests_mock.post(f"{WM}/v1/code-interpreter", json={"sessionId": "ci-1"})
    requests_mock.get(AR_PREFIX, headers={HEADER: "ar-1"})
    execute = requests_mock.post(CI_PREFIX + "api/execute", json={"stdout": "", "exit_code": 0})
    requests_mock.post(AR_PREFIX, json={"ok": True})

    retry = RetryPolicy(max_attempts=1)
    ci = CodeInterpreterClient(
        workload_manager_url=WM, router_url=ROUTER, verbose=True, retry=retry, **creds
    )
    ar = AgentRuntimeClient(
        "my-agent", router_url=ROUTER, workload_manager_url=WM, verbose=True, retry=retry, **creds
    )
    ci.execute_command("true")
    ar.invoke({"q": 1})
    data_plane = ci.data_plane
    assert create.last_request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert execute.last_request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {TOKEN}"

    errors = _failures(requests_mock, ci, ar)

    requests_mock.delete(f"{WM}/v1/code-interpreter/sessions/ci-1", status_code=500, json={})
    with pytest.raises(AgentCubeError) as failed_stop:
        ci.stop()
    errors.append(failed_stop.value)

    assert debug_logs.records, "verbose=True should log the requests"
    assert any("api/execute" in r.getMessage() for r in debug_logs.records)
    for secret in SECRETS:
        assert secret not in debug_logs.text
    assert TOKEN not in capsys.readouterr().err
    _assert_hidden(ci, ar, data_plane, *errors)
    if how == "TokenAuth":
        _assert_hidden(creds["auth"])
    ci.detach()
    ar.detach()


def test_control_plane_client_hides_token(requests_mock, debug_logs):
    requests_mock.delete(
        f"{WM}/v1/code-interpreter/sessions/s-1", status_code=401, json={"message": "no"}
    )
    cp = ControlPlaneClient(WM, auth_token=TOKEN, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(AuthenticationError) as info:
        cp.delete(CODE_INTERPRETER, "s-1")
    assert requests_mock.last_request.headers["Authorization"] == f"Bearer {TOKEN}"
    _assert_hidden(cp, info.value)
    assert TOKEN not in debug_logs.text


def test_token_echoed_by_server_is_not_shown(requests_mock, debug_logs):
    # A proxy that repeats the rejected credential in its error body must not leak it further.
    requests_mock.post(
        CI_PREFIX + "api/execute",
        status_code=401,
        json={"error": f"invalid bearer token {TOKEN}"},
    )
    ci = CodeInterpreterClient(
        session_id="ci-1", workload_manager_url=WM, router_url=ROUTER, auth_token=TOKEN
    )
    with pytest.raises(AuthenticationError) as info:
        ci.execute_command("true")
    ci.detach()
    _assert_hidden(info.value)
    assert TOKEN not in debug_logs.text


def test_service_account_secret_and_token_never_shown(requests_mock, debug_logs, capsys):
    token_endpoint = requests_mock.post(
        TOKEN_URL, json={"access_token": ACCESS_TOKEN, "expires_in": 3600}
    )
    execute = requests_mock.post(CI_PREFIX + "api/execute", json={"stdout": "", "exit_code": 0})
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", CLIENT_SECRET)
    ci = CodeInterpreterClient(
        session_id="ci-1",
        workload_manager_url=WM,
        router_url=ROUTER,
        auth=auth,
        verbose=True,
        retry=RetryPolicy(max_attempts=1),
    )
    ci.execute_command("true")
    assert execute.last_request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert f"client_secret={CLIENT_SECRET}" in token_endpoint.last_request.text

    errors = _failures(requests_mock, ci)
    for secret in SECRETS:
        assert secret not in debug_logs.text
    assert CLIENT_SECRET not in capsys.readouterr().err
    _assert_hidden(auth, ci, *errors)
    ci.detach()


@pytest.mark.parametrize("status", [400, 401])
def test_token_endpoint_echoing_the_secret_is_scrubbed(requests_mock, debug_logs, status):
    requests_mock.post(
        TOKEN_URL,
        status_code=status,
        json={
            "error": "invalid_client",
            "error_description": f"client_secret {CLIENT_SECRET} is wrong",
        },
    )
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", CLIENT_SECRET)
    ci = CodeInterpreterClient(
        session_id="ci-1", workload_manager_url=WM, router_url=ROUTER, auth=auth, verbose=True
    )
    requests_mock.post(CI_PREFIX + "api/execute", json={"stdout": "", "exit_code": 0})
    with pytest.raises(AuthenticationError) as info:
        ci.execute_command("true")
    err = info.value
    assert err.status_code == status
    assert "invalid_client" in str(err)
    assert CLIENT_SECRET not in (err.message or "")
    _assert_hidden(auth, ci, err)
    assert CLIENT_SECRET not in debug_logs.text
    ci.detach()


def test_token_endpoint_echoing_the_secret_in_error_code_is_scrubbed(requests_mock):
    requests_mock.post(TOKEN_URL, status_code=401, json={"error": f"bad-{CLIENT_SECRET}"})
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", CLIENT_SECRET)
    with pytest.raises(AuthenticationError) as info:
        auth.get_token()
    _assert_hidden(info.value)


@pytest.mark.parametrize(
    "exc", [requests.exceptions.ConnectionError("refused"), requests.exceptions.Timeout("slow")]
)
def test_token_endpoint_transport_errors_hide_the_secret(requests_mock, exc):
    requests_mock.post(TOKEN_URL, exc=exc)
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", CLIENT_SECRET)
    with pytest.raises(AgentCubeError) as info:
        auth.get_token()
    _assert_hidden(info.value, auth)
