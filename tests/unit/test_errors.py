"""The error tree: status mapping, requests compatibility, transport errors, retries."""

from __future__ import annotations

import types

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from agentcube import (
    CODE_INTERPRETER,
    AgentCubeError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CommandExecutionError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RetryPolicy,
    ServerError,
    SessionError,
    SessionNotFoundError,
)
from agentcube._drivers import _sync as agentcube_http
from agentcube.clients import CodeInterpreterDataPlaneClient, ControlPlaneClient

WM = "http://wm.test"
ROUTER = "http://router.test"
PREFIX = f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"

STATUS_CLASSES = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (413, PayloadTooLargeError),
    (500, ServerError),
    (502, ServerError),
    (503, ServerError),
    (504, ServerError),
]


@pytest.fixture
def cp():
    return ControlPlaneClient(WM, retry=RetryPolicy(max_attempts=1))


@pytest.fixture
def dp():
    return CodeInterpreterDataPlaneClient(
        "ci-1", ROUTER, "default", "my-interpreter", retry=RetryPolicy(max_attempts=1)
    )


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
@pytest.mark.parametrize("key", ["message", "error"])
def test_status_maps_to_class_and_keeps_requests_compatibility(cp, requests_mock, status, cls, key):
    requests_mock.post(
        f"{WM}/v1/code-interpreter", status_code=status, json={key: f"server says {status}"}
    )
    with pytest.raises(cls) as info:
        cp.create(CODE_INTERPRETER, "my-interpreter")
    err = info.value
    assert type(err) is cls
    assert isinstance(err, APIError)
    assert isinstance(err, AgentCubeError)
    assert isinstance(err, requests.HTTPError)
    assert err.response is not None
    assert err.response.status_code == status
    assert err.status_code == status
    assert err.message == f"server says {status}"
    assert str(status) in str(err)
    assert f"server says {status}" in str(err)


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
def test_old_style_except_http_error_still_catches(dp, requests_mock, status, cls):
    requests_mock.get(PREFIX + "api/files", status_code=status, json={"error": "e"})
    try:
        dp.list_files(".")
    except requests.HTTPError as e:  # how callers of the old SDK wrote it
        assert e.response.status_code == status
        assert isinstance(e, cls)
    else:  # pragma: no cover
        pytest.fail("no HTTPError raised")


def test_session_scoped_404_is_session_not_found_with_session_id(dp, requests_mock):
    requests_mock.post(PREFIX + "api/execute", status_code=404, json={"error": "unknown session"})
    with pytest.raises(SessionNotFoundError) as info:
        dp.execute(["true"])
    err = info.value
    assert isinstance(err, NotFoundError)
    assert isinstance(err, SessionError)
    assert isinstance(err, requests.HTTPError)
    assert err.session_id == "ci-1"
    assert err.message == "unknown session"
    assert "ci-1" in str(err)


def test_non_json_error_body_becomes_the_message(dp, requests_mock):
    requests_mock.post(PREFIX + "api/execute", status_code=502, text="Bad Gateway\n")
    with pytest.raises(ServerError) as info:
        dp.execute(["true"])
    assert info.value.message == "Bad Gateway"
    assert info.value.session_id == "ci-1"


def test_unknown_4xx_is_plain_api_error(cp, requests_mock):
    requests_mock.post(f"{WM}/v1/code-interpreter", status_code=409, json={"message": "conflict"})
    with pytest.raises(APIError) as info:
        cp.create(CODE_INTERPRETER, "my-interpreter")
    assert info.value.status_code == 409
    assert info.value.message == "conflict"


# -- transport errors ---------------------------------------------------------------------------


def test_connection_error_is_wrapped_from_the_original(dp, requests_mock):
    original = requests.exceptions.ConnectionError("connection refused")
    requests_mock.post(PREFIX + "api/execute", exc=original)
    with pytest.raises(APIConnectionError) as info:
        dp.execute(["true"])
    err = info.value
    assert isinstance(err, requests.ConnectionError)
    assert isinstance(err, AgentCubeError)
    assert not isinstance(err, APITimeoutError)
    # The library's exception is not chained: it holds the request, credentials included.
    assert err.__cause__ is None and err.__context__ is None
    assert "ConnectionError" in str(err)
    assert "ci-1" in str(err)


@pytest.mark.parametrize(
    "original",
    [requests.exceptions.ReadTimeout("slow"), requests.exceptions.ConnectTimeout("slow")],
)
def test_timeout_is_api_timeout_error(requests_mock, original):
    dp = CodeInterpreterDataPlaneClient(
        "ci-1", ROUTER, "default", "my-interpreter", retry=RetryPolicy(max_attempts=1)
    )
    requests_mock.post(PREFIX + "api/execute", exc=original)
    with pytest.raises(APITimeoutError) as info:
        dp.execute(["true"])
    err = info.value
    assert isinstance(err, requests.Timeout)
    assert isinstance(err, APIConnectionError)
    assert isinstance(err, requests.ConnectionError)
    assert err.__cause__ is None and err.__context__ is None
    assert type(original).__name__ in str(err)


# -- retries of idempotent requests -------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
def test_get_is_retried_on_gateway_errors_then_succeeds(requests_mock, status):
    dp = CodeInterpreterDataPlaneClient(
        "ci-1", ROUTER, "default", "my-interpreter", retry=RetryPolicy(backoff=0)
    )
    listing = requests_mock.get(
        PREFIX + "api/files",
        response_list=[
            {"status_code": status, "json": {}},
            {"status_code": status, "json": {}},
            {"json": {"files": []}},
        ],
    )
    assert dp.list_files() == []
    assert listing.call_count == 3


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_get_gives_up_after_max_attempts(requests_mock, attempts):
    dp = CodeInterpreterDataPlaneClient(
        "ci-1",
        ROUTER,
        "default",
        "my-interpreter",
        retry=RetryPolicy(max_attempts=attempts, backoff=0),
    )
    listing = requests_mock.get(PREFIX + "api/files", status_code=503, json={"error": "busy"})
    with pytest.raises(ServerError):
        dp.list_files()
    assert listing.call_count == attempts


@pytest.mark.parametrize("attempts", [1, 3])
def test_get_is_retried_on_connection_error(requests_mock, attempts):
    dp = CodeInterpreterDataPlaneClient(
        "ci-1",
        ROUTER,
        "default",
        "my-interpreter",
        retry=RetryPolicy(max_attempts=attempts, backoff=0),
    )
    listing = requests_mock.get(PREFIX + "api/files", exc=requests.exceptions.ConnectionError)
    with pytest.raises(APIConnectionError):
        dp.list_files()
    assert listing.call_count == attempts


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500])
def test_other_statuses_are_not_retried(requests_mock, status):
    dp = CodeInterpreterDataPlaneClient(
        "ci-1", ROUTER, "default", "my-interpreter", retry=RetryPolicy(backoff=0)
    )
    listing = requests_mock.get(PREFIX + "api/files", status_code=status, json={})
    with pytest.raises(APIError):
        dp.list_files()
    assert listing.call_count == 1


def test_retry_sleeps_within_the_policy_bounds(requests_mock, monkeypatch):
    slept: list[float] = []
    fake_time = types.SimpleNamespace(
        sleep=slept.append,
        perf_counter=agentcube_http.time.perf_counter,
        monotonic=agentcube_http.time.monotonic,
    )
    monkeypatch.setattr(agentcube_http, "time", fake_time)
    policy = RetryPolicy(max_attempts=4, backoff=0.5, max_backoff=0.8)
    dp = CodeInterpreterDataPlaneClient("ci-1", ROUTER, "default", "my-interpreter", retry=policy)
    requests_mock.get(PREFIX + "api/files", status_code=503, json={})
    with pytest.raises(ServerError):
        dp.list_files()
    assert len(slept) == 3
    for attempt, seconds in enumerate(slept, start=1):
        assert 0 <= seconds <= min(0.8, 0.5 * 2 ** (attempt - 1))


@given(
    backoff=st.floats(min_value=0, max_value=100, allow_nan=False),
    max_backoff=st.floats(min_value=0, max_value=100, allow_nan=False),
    attempt=st.integers(min_value=1, max_value=30),
)
def test_retry_delay_is_full_jitter_within_bounds(backoff, max_backoff, attempt):
    policy = RetryPolicy(backoff=backoff, max_backoff=max_backoff)
    assert 0 <= policy.delay(attempt) <= min(max_backoff, backoff * 2 ** (attempt - 1))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", -1),
        ("max_attempts", 1.5),
        ("max_attempts", True),
        ("backoff", -1),
        ("max_backoff", -0.1),
        ("backoff", float("nan")),
        ("max_backoff", float("nan")),
    ],
)
def test_retry_policy_rejects_bad_values(field, value):
    with pytest.raises(ValueError):
        RetryPolicy(**{field: value})


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


# -- the tree itself ----------------------------------------------------------------------------


def test_hierarchy():
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(InvalidArgumentError, AgentCubeError)
    assert issubclass(SessionNotFoundError, NotFoundError)
    assert issubclass(SessionNotFoundError, SessionError)
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(APITimeoutError, requests.Timeout)
    assert issubclass(APIConnectionError, requests.ConnectionError)
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        PayloadTooLargeError,
        ServerError,
    ):
        assert issubclass(cls, APIError)
        assert issubclass(cls, requests.HTTPError)
    assert issubclass(CommandExecutionError, AgentCubeError)


def test_command_execution_error_fields_and_message():
    err = CommandExecutionError(3, "bad things\n", ["ls", "x"], "out")
    assert err.exit_code == 3
    assert err.stderr == "bad things\n"
    assert err.command == ["ls", "x"]
    assert err.stdout == "out"
    # The historic message, with the whole stderr: a model reading str(error) must see the
    # last line of a traceback.
    assert str(err) == "Command failed (exit 3): bad things\n"
    assert err.args == (str(err),)
    long = CommandExecutionError(1, "e" * 5000 + "\nValueError: the last line")
    assert str(long).endswith("ValueError: the last line")
    assert str(CommandExecutionError(2, "")) == "Command failed (exit 2): "
