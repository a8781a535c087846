"""Typed errors, before anything is created: deeply nested answers become the SDK's errors, and
out-of-range timeouts, impossible URLs and bad values are InvalidArgumentError before any
request is sent.

Every test here talks over real sockets on loopback (a guard refuses any other address) or
runs a child process, and each failed on the SDK as it was before the fix it covers (issue 10).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import agentcube
from agentcube import (
    AgentCubeError,
    AgentRuntimeClient,
    AuthenticationError,
    CodeInterpreterClient,
    DataPlaneError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    RetryPolicy,
    ServerError,
    ServiceAccountAuth,
)
from agentcube.clients import ControlPlaneClient

from .loopback import Answer, RecordingServer, Seen

pytestmark = pytest.mark.usefixtures("loopback_only")

SECRET = "R2-planted-client-secret-4e1b"
ONCE = RetryPolicy(max_attempts=1)


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def deep() -> Iterator[RecordingServer]:
    def answer(seen: Seen) -> Answer:
        if seen.method == "DELETE":
            return Answer(404, DEEP, {"Content-Type": "application/json"})
        if seen.target.endswith("/agent-runtimes/a/invocations/"):
            return Answer(500, DEEP, {"Content-Type": "application/json"})
        return Answer(200, DEEP, {"Content-Type": "application/json"})

    server = RecordingServer(answer)
    yield server
    server.close()


def test_deeply_nested_answers_are_typed_errors(deep: RecordingServer) -> None:
    url = deep.url
    with pytest.raises(InvalidResponseError, match="may be running"):
        CodeInterpreterClient(workload_manager_url=url, router_url=url, retry=ONCE)
    ci = CodeInterpreterClient(
        session_id="s-1", workload_manager_url=url, router_url=url, retry=ONCE
    )
    with pytest.raises(DataPlaneError):
        ci.list_files()
    with pytest.raises(DataPlaneError):
        ci.execute_command("true")
    with pytest.raises(NotFoundError):
        ci.stop()  # a 404 that is not the WorkloadManager's own: the id is kept
    assert ci.session_id == "s-1"
    ci.detach()
    with pytest.raises(ServerError):
        AgentRuntimeClient("a", router_url=url, retry=ONCE)
    with pytest.raises(AuthenticationError):
        ServiceAccountAuth(url + "/token", "c", SECRET).get_token()


@pytest.mark.parametrize("value", [1e10, 10**400, float("inf"), -1, 0])
def test_out_of_range_timeouts_are_refused_before_sending(
    echo: RecordingServer, value: object
) -> None:
    url = echo.url
    with pytest.raises(InvalidArgumentError):
        CodeInterpreterClient(workload_manager_url=url, router_url=url, timeout=value)
    with pytest.raises(InvalidArgumentError):
        AgentRuntimeClient("a", router_url=url, session_id="s", connect_timeout=value)
    with pytest.raises(InvalidArgumentError):
        ServiceAccountAuth(url, "c", SECRET, timeout=value)
    with pytest.raises(InvalidArgumentError):
        agentcube.enable_exit_cleanup(value)  # type: ignore[arg-type]
    ci = CodeInterpreterClient(session_id="s", workload_manager_url=url, router_url=url)
    if value not in (0,):  # 0 means the default command timeout, as it always has
        with pytest.raises(InvalidArgumentError):
            ci.execute_command("true", timeout=value)  # type: ignore[arg-type]
    ci.detach()
    assert echo.requests() == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999",
        "http://127.0.0.1:abc",
        "http://127.0.0.1:0",
        "http://127.0.0.1 x",
        "http://[::1",
        "http://127.0.0.1:-1",
    ],
)
def test_impossible_urls_are_refused_before_anything_is_created(
    echo: RecordingServer, url: str
) -> None:
    good = echo.url
    for build in (
        lambda: CodeInterpreterClient(workload_manager_url=good, router_url=url),
        lambda: CodeInterpreterClient(workload_manager_url=url, router_url=good),
        lambda: AgentRuntimeClient("a", router_url=url),
        lambda: ControlPlaneClient(url),
        lambda: ServiceAccountAuth(url, "c", SECRET),
    ):
        with pytest.raises(InvalidArgumentError):
            build()
    assert echo.requests() == [], "nothing was created with a bad URL on the other plane"


def test_bad_values_anywhere_are_invalid_argument_errors(echo: RecordingServer) -> None:
    url = echo.url
    ar = AgentRuntimeClient("a", router_url=url, session_id="s")
    with pytest.raises(InvalidArgumentError):
        ar.invoke({}, path="a\ud800b")
    with pytest.raises(InvalidArgumentError):
        CodeInterpreterClient(
            workload_manager_url=url,
            router_url=url,
            metadata={1: "x"},  # type: ignore[dict-item]
        )
    for bad in (None, {600}, {"502"}, [True], 502):
        with pytest.raises(InvalidArgumentError):
            RetryPolicy(statuses=bad)  # type: ignore[arg-type]
    for margin in (float("nan"), float("inf"), -1, "30"):
        with pytest.raises(InvalidArgumentError):
            ServiceAccountAuth(url, "c", SECRET, refresh_margin=margin)  # type: ignore[arg-type]
    assert echo.requests() == []
    assert isinstance(InvalidArgumentError("x"), (AgentCubeError, ValueError))
