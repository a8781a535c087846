"""What an error may carry: no credential in its text, notes, attributes, pickle, cause chain
or frame locals (what ``--showlocals`` prints), whatever failed: an error answer that echoes
the token, a token endpoint, a connection, an auth provider, a proxy that echoes its
credentials.

Every test here talks over real sockets on loopback (a guard refuses any other address) or
runs a child process, and each failed on the SDK as it was before the fix it covers (issue 10).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest

import agentcube
from agentcube import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    CodeInterpreterClient,
    RetryPolicy,
    ServerError,
    ServiceAccountAuth,
    TokenAuth,
)
from agentcube.clients import AgentRuntimeDataPlaneClient

from .loopback import Answer, RecordingServer, Seen, closed_port_url, json_answer

pytestmark = pytest.mark.usefixtures("loopback_only")

TOKEN = "R2-planted-bearer-token-7f3a9c"
SECRET = "R2-planted-client-secret-4e1b"
ONCE = RetryPolicy(max_attempts=1)


def _frames(exc: BaseException) -> Iterator[Any]:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        tb = error.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename != __file__:  # not the test's own locals
                yield tb.tb_frame
            tb = tb.tb_next
        stack += [error.__cause__, error.__context__]


def _assert_carries_nothing(exc: BaseException, *secrets: str) -> None:
    """No secret in the error's text, notes, attributes, pickle, chain or frame locals."""
    texts = [str(exc), repr(exc), repr(exc.args), *getattr(exc, "__notes__", [])]
    response = getattr(exc, "response", None)
    if response is not None:
        request = response.request
        texts += [response.text, repr(dict(response.headers))]
        if request is not None:
            assert "Authorization" not in request.headers
            texts += [repr(dict(request.headers)), repr(request.body)]
    request = getattr(exc, "request", None)
    if request is not None:
        assert "Authorization" not in request.headers
        assert request.body is None
    pickled = pickle.dumps(exc)
    for frame in _frames(exc):  # what --showlocals would print
        texts += [repr(value) for value in frame.f_locals.values()]
    for secret in secrets:
        assert secret.encode() not in pickled, "the pickled error holds a secret"
        for text in texts:
            assert secret not in text


def test_an_error_answer_carries_no_credential_pickled_or_not(echo: RecordingServer) -> None:
    ci = CodeInterpreterClient(
        session_id="s-1",
        workload_manager_url=echo.url,
        router_url=echo.url,
        auth_token=TOKEN,
        retry=ONCE,
    )
    with pytest.raises(APIError) as info:
        ci.execute_command("true")
    error = info.value
    assert echo.requests()[-1].header("Authorization") == [f"Bearer {TOKEN}"]
    assert error.response.status_code == 401  # the body and status still work
    assert "rejected" in error.response.json()["message"]
    assert "[secure]" in error.response.json()["message"]
    _assert_carries_nothing(error, TOKEN)
    ci.detach()


def test_a_token_echoed_across_the_500_character_cut_shows_none_of_it(
    echo: RecordingServer,
) -> None:
    dp = AgentRuntimeDataPlaneClient(echo.url, "default", "a", auth=TokenAuth(TOKEN), retry=ONCE)
    with pytest.raises(ServerError) as info:
        agentcube._drivers._sync.run(
            agentcube._flows.agent_runtime.invoke(dp.target("s-1"), {}, None, "text"), dp._transport
        )
    assert TOKEN[:4] not in str(info.value)  # scrubbed first, then cut
    _assert_carries_nothing(info.value, TOKEN)


def test_a_token_endpoint_failure_carries_no_client_secret(echo: RecordingServer) -> None:
    auth = ServiceAccountAuth(echo.url + "/token", "client-a", SECRET)
    with pytest.raises(AuthenticationError) as info:
        auth.get_token()
    assert SECRET in echo.requests()[-1].body.decode()
    assert info.value.response is not None and info.value.response.request.body is None
    _assert_carries_nothing(info.value, SECRET)


@pytest.mark.parametrize("failure", ["refused", "timeout", "dropped"])
def test_a_connection_failure_carries_no_credential(failure: str) -> None:
    if failure == "refused":
        url = closed_port_url()
        server = None
    else:
        server = RecordingServer(
            lambda seen: (
                Answer(200, b"{}", delay=3.0)
                if failure == "timeout"
                else Answer(200, b"x", declared_length=10)
            )
        )
        url = server.url
    try:
        ci = CodeInterpreterClient(
            session_id="s-1",
            workload_manager_url=url,
            router_url=url,
            auth_token=TOKEN,
            retry=ONCE,
            timeout=0.5,
        )
        with pytest.raises(APIConnectionError) as info:
            ci.list_files()
        # Only the operating system's error may be chained, as a copy with nothing behind it.
        cause = info.value.__cause__
        assert info.value.__context__ is None
        assert cause is None or (
            type(cause).__module__ in ("builtins", "ssl", "socket")
            and cause.__traceback__ is None
            and cause.__context__ is None
        )
        _assert_carries_nothing(info.value, TOKEN)
        ci.detach()
    finally:
        if server is not None:
            server.close()


def test_a_failing_auth_provider_reaches_the_caller_with_no_secret_in_frames(
    echo: RecordingServer,
) -> None:
    auth = ServiceAccountAuth(echo.url + "/token", "client-a", SECRET)
    ci = CodeInterpreterClient(
        session_id="s-1",
        workload_manager_url=echo.url,
        router_url=echo.url,
        auth=auth,
        retry=ONCE,
    )
    with pytest.raises(AuthenticationError) as info:
        ci.list_files()
    _assert_carries_nothing(info.value, SECRET)
    ci.detach()


def test_proxy_credentials_echoed_back_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    # The Router is reached through a proxy taken from the environment, with credentials in
    # its URL; the proxy fails and echoes what it got, Proxy-Authorization included.
    def proxy_answer(seen: Seen) -> Answer:
        echoed = {k: v for k, v in seen.headers}
        return json_answer({"error": f"upstream failed for {seen.target}: {echoed}"}, status=502)

    proxy = RecordingServer(proxy_answer)
    password = "pa55-R2-proxy-word"
    port = proxy.url.rsplit(":", 1)[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://agent:{password}@127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "")
    try:
        ci = CodeInterpreterClient(
            session_id="s-1",
            workload_manager_url="http://wm.invalid",
            router_url="http://router.invalid",
            retry=ONCE,
        )
        with pytest.raises(ServerError) as info:
            ci.list_files()
        assert proxy.requests()[-1].header("Proxy-Authorization")
        import base64

        basic = base64.b64encode(f"agent:{password}".encode()).decode()
        _assert_carries_nothing(info.value, password, basic)
        ci.detach()
    finally:
        proxy.close()
