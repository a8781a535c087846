"""Credentials: AuthProvider, TokenAuth, ServiceAccountAuth (OAuth2 client credentials)."""

from __future__ import annotations

import threading
import time
import types
import urllib.parse

import pytest
import requests

from agentcube import (
    CODE_INTERPRETER,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    AuthProvider,
    CodeInterpreterClient,
    RetryPolicy,
    ServiceAccountAuth,
    TokenAuth,
)
from agentcube import auth as auth_module
from agentcube.clients import ControlPlaneClient

WM = "http://wm.test"
ROUTER = "http://router.test"
TOKEN_URL = "http://idp.test/oauth2/token"
CI_EXECUTE = (
    f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/api/execute"
)
EXEC_OK = {"stdout": "ok", "stderr": "", "exit_code": 0}


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(auth_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def _form(request) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(request.text)


# -- TokenAuth ----------------------------------------------------------------------------------


def test_token_auth_returns_stripped_token_and_is_an_auth_provider():
    auth = TokenAuth("  abc.def  ")
    assert auth.get_token() == "abc.def"
    assert isinstance(auth, AuthProvider)


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "a\rb", "a\0b", None, 42])
def test_token_auth_rejects_bad_tokens(bad):
    with pytest.raises(ValueError):
        TokenAuth(bad)


def test_auth_token_with_line_break_is_refused_before_sending(requests_mock):
    with pytest.raises(ValueError):
        CodeInterpreterClient(
            session_id="ci-1", workload_manager_url=WM, router_url=ROUTER, auth_token="a\r\nX: y"
        )
    assert requests_mock.call_count == 0


def test_auth_without_get_token_is_refused(requests_mock):
    with pytest.raises(ValueError):
        CodeInterpreterClient(
            session_id="ci-1", workload_manager_url=WM, router_url=ROUTER, auth=object()
        )
    assert requests_mock.call_count == 0


def test_custom_provider_is_asked_before_every_request(requests_mock):
    class Rotating:
        def __init__(self) -> None:
            self.calls = 0

        def get_token(self) -> str:
            self.calls += 1
            return f"tok-{self.calls}"

    provider = Rotating()
    assert isinstance(provider, AuthProvider)
    execute = requests_mock.post(CI_EXECUTE, json=EXEC_OK)
    ci = CodeInterpreterClient(
        session_id="ci-1", workload_manager_url=WM, router_url=ROUTER, auth=provider
    )
    ci.execute_command("true")
    ci.execute_command("true")
    assert [r.headers["Authorization"] for r in execute.request_history] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]
    ci.detach()


def test_provider_returning_none_sends_no_authorization(requests_mock):
    class Anonymous:
        def get_token(self) -> None:
            return None

    execute = requests_mock.post(CI_EXECUTE, json=EXEC_OK)
    ci = CodeInterpreterClient(
        session_id="ci-1", workload_manager_url=WM, router_url=ROUTER, auth=Anonymous()
    )
    ci.execute_command("true")
    assert "Authorization" not in execute.last_request.headers
    ci.detach()


def test_retried_requests_carry_the_token_each_time(requests_mock):
    delete = requests_mock.delete(
        f"{WM}/v1/code-interpreter/sessions/s-1",
        response_list=[{"status_code": 503, "json": {}}, {"json": {}}],
    )
    cp = ControlPlaneClient(WM, auth_token="tok", retry=RetryPolicy(backoff=0))
    cp.delete(CODE_INTERPRETER, "s-1")
    assert [r.headers.get("Authorization") for r in delete.request_history] == [
        "Bearer tok",
        "Bearer tok",
    ]


# -- ServiceAccountAuth -------------------------------------------------------------------------


def test_service_account_auth_posts_client_credentials(requests_mock, clock):
    endpoint = requests_mock.post(TOKEN_URL, json={"access_token": "at-1", "expires_in": 600})
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", "secret-a", scope="sandbox")
    assert auth.get_token() == "at-1"
    form = _form(endpoint.last_request)
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["client-a"],
        "client_secret": ["secret-a"],
        "scope": ["sandbox"],
    }


def test_service_account_auth_caches_the_token(requests_mock, clock):
    endpoint = requests_mock.post(TOKEN_URL, json={"access_token": "at-1", "expires_in": 600})
    execute = requests_mock.post(CI_EXECUTE, json=EXEC_OK)
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", "secret-a")
    ci = CodeInterpreterClient(
        session_id="ci-1", workload_manager_url=WM, router_url=ROUTER, auth=auth
    )
    for _ in range(4):
        ci.execute_command("true")
    assert endpoint.call_count == 1
    assert {r.headers["Authorization"] for r in execute.request_history} == {"Bearer at-1"}
    ci.detach()


def test_service_account_auth_refreshes_after_expiry(requests_mock, clock):
    endpoint = requests_mock.post(
        TOKEN_URL,
        response_list=[
            {"json": {"access_token": "at-1", "expires_in": 600}},
            {"json": {"access_token": "at-2", "expires_in": 600}},
        ],
    )
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", "secret-a", refresh_margin=60)
    assert auth.get_token() == "at-1"
    clock.now += 539  # still more than refresh_margin before expiry
    assert auth.get_token() == "at-1"
    assert endpoint.call_count == 1
    clock.now += 2  # within the margin: refresh
    assert auth.get_token() == "at-2"
    assert endpoint.call_count == 2
    assert auth.get_token() == "at-2"
    assert endpoint.call_count == 2


def test_service_account_auth_default_lifetime_is_one_hour(requests_mock, clock):
    endpoint = requests_mock.post(
        TOKEN_URL,
        response_list=[{"json": {"access_token": "at-1"}}, {"json": {"access_token": "at-2"}}],
    )
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", "secret-a", refresh_margin=60)
    assert auth.get_token() == "at-1"
    clock.now += 3500
    assert auth.get_token() == "at-1"
    clock.now += 100
    assert auth.get_token() == "at-2"
    assert endpoint.call_count == 2


def test_service_account_auth_invalidate_forces_a_new_token(requests_mock, clock):
    endpoint = requests_mock.post(
        TOKEN_URL,
        response_list=[
            {"json": {"access_token": "at-1", "expires_in": 600}},
            {"json": {"access_token": "at-2", "expires_in": 600}},
        ],
    )
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", "secret-a")
    assert auth.get_token() == "at-1"
    auth.invalidate()
    assert auth.get_token() == "at-2"
    assert endpoint.call_count == 2


def test_service_account_auth_is_thread_safe(requests_mock):
    def slow_token(request, context):
        time.sleep(0.2)
        return {"access_token": "at-shared", "expires_in": 600}

    endpoint = requests_mock.post(TOKEN_URL, json=slow_token)
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", "secret-a")
    barrier = threading.Barrier(8)
    tokens: list[str] = []

    def worker() -> None:
        barrier.wait()
        tokens.append(auth.get_token())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert tokens == ["at-shared"] * 8
    assert endpoint.call_count == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "invalid_client"}),
        (400, {"error": "invalid_request", "error_description": "missing scope"}),
        (200, {"token_type": "bearer"}),
        (200, ["not", "an", "object"]),
        (500, None),
    ],
)
def test_service_account_auth_refusal_is_authentication_error(requests_mock, clock, status, body):
    if body is None:
        requests_mock.post(TOKEN_URL, status_code=status, text="<html>oops</html>")
    else:
        requests_mock.post(TOKEN_URL, status_code=status, json=body)
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", "secret-a")
    with pytest.raises(AuthenticationError) as info:
        auth.get_token()
    assert info.value.status_code == status
    assert isinstance(info.value, requests.HTTPError)


def test_service_account_auth_failure_stops_the_request(requests_mock, clock):
    requests_mock.post(TOKEN_URL, status_code=401, json={"error": "invalid_client"})
    execute = requests_mock.post(CI_EXECUTE, json=EXEC_OK)
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", "secret-a")
    ci = CodeInterpreterClient(
        session_id="ci-1", workload_manager_url=WM, router_url=ROUTER, auth=auth
    )
    with pytest.raises(AuthenticationError):
        ci.execute_command("true")
    assert execute.call_count == 0
    ci.detach()


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (requests.exceptions.ConnectionError("refused"), APIConnectionError),
        (requests.exceptions.ReadTimeout("slow"), APITimeoutError),
    ],
)
def test_service_account_auth_transport_errors(requests_mock, clock, exc, cls):
    requests_mock.post(TOKEN_URL, exc=exc)
    auth = ServiceAccountAuth(TOKEN_URL, "client-a", "secret-a")
    with pytest.raises(cls):
        auth.get_token()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token_url": "ftp://idp.test/token"},
        {"token_url": "idp.test/token"},
        {"client_id": ""},
        {"client_secret": ""},
        {"timeout": 0},
    ],
)
def test_service_account_auth_validates_arguments(requests_mock, kwargs):
    args = {"token_url": TOKEN_URL, "client_id": "c", "client_secret": "s", **kwargs}
    with pytest.raises(ValueError):
        ServiceAccountAuth(**args)
    assert requests_mock.call_count == 0


def test_token_endpoint_failure_does_not_claim_a_sandbox_may_exist(requests_mock, make_ci):
    requests_mock.post("http://idp.test/token", exc=requests.exceptions.ConnectionError("down"))
    auth = ServiceAccountAuth("http://idp.test/token", "client", "s3cret")
    with pytest.raises(APIConnectionError) as info:
        make_ci(auth=auth)
    assert "may be running" not in str(info.value)
