"""What a connection error says: the cause in words, the operating system's error chained (a
fresh copy, holding nothing of the request), the "a sandbox may be running" notice only where
the request may have reached a server, and which URL looks wrong for a 404 of the wrong service.

Sync (requests) and async (aiohttp) alike; every address is loopback."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from agentcube import (
    AgentRuntimeClient,
    APIConnectionError,
    CodeInterpreterClient,
    NotFoundError,
    RetryPolicy,
)
from agentcube.aio import AsyncCodeInterpreterClient
from agentcube.local import LocalAgentCube

ONCE = RetryPolicy(max_attempts=1)
TOKEN = "words-token-Qx71"


@pytest.fixture
def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def plain_http() -> Iterator[int]:
    """A plain HTTP server (its answer to a TLS hello is a 400 in clear text)."""

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _create(url: str, asynchronous: bool) -> APIConnectionError:
    urls = {"workload_manager_url": url, "router_url": url, "auth_token": TOKEN, "retry": ONCE}
    with pytest.raises(APIConnectionError) as info:
        if asynchronous:

            async def go() -> None:
                async with AsyncCodeInterpreterClient(**urls):
                    pass

            asyncio.run(go())
        else:
            CodeInterpreterClient(**urls)
    return info.value


def _assert_clean_cause(error: BaseException, kind: type[OSError]) -> None:
    cause = error.__cause__
    assert isinstance(cause, kind), repr(cause)
    # A copy: no traceback (whose frames hold the request), no library exception behind it.
    assert cause.__traceback__ is None and cause.__context__ is None and cause.__cause__ is None
    assert TOKEN not in repr(cause)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_refused_says_so_and_chains_the_system_error(closed_port: int, asynchronous: bool) -> None:
    error = _create(f"http://127.0.0.1:{closed_port}", asynchronous)
    assert f"connection refused: nothing listens at 127.0.0.1:{closed_port}" in str(error)
    _assert_clean_cause(error, ConnectionRefusedError)
    assert error.reached_server is False
    assert "may be running" not in str(error)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_https_against_plain_http_asks_whether_it_is_http(
    plain_http: int, asynchronous: bool
) -> None:
    error = _create(f"https://127.0.0.1:{plain_http}", asynchronous)
    assert "TLS handshake failed" in str(error) and "is it http://?" in str(error)
    _assert_clean_cause(error, OSError)
    # No HTTP request was sent, so no sandbox can have been made.
    assert error.reached_server is False
    assert "may be running" not in str(error)


def test_an_unresolvable_name_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_name(host: Any, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    error = _create("http://wm.invalid:8080", False)
    assert "name not resolved: wm.invalid" in str(error)
    _assert_clean_cause(error, socket.gaierror)
    assert error.reached_server is False


def test_a_dropped_create_may_have_made_a_sandbox(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    cube.inject_fault("POST", "/v1/code-interpreter", drop=True, after=True)
    with pytest.raises(APIConnectionError) as info:
        CodeInterpreterClient(**urls, retry=ONCE)
    assert info.value.reached_server is True
    assert "may be running" in str(info.value)
    for session in cube.sessions():  # the one the dropped answer named
        cube.delete_session(session.session_id)


def test_swapped_urls_say_which_url_looks_wrong(cube: LocalAgentCube) -> None:
    swapped = {"workload_manager_url": cube.router_url, "router_url": cube.workload_manager_url}
    with pytest.raises(NotFoundError) as info:
        CodeInterpreterClient(**swapped)
    text = str(info.value)
    assert "does not look like AgentCube's WorkloadManager" in text
    assert "Router's URL" in text and "WORKLOAD_MANAGER_URL" in text
    with pytest.raises(NotFoundError) as info:
        AgentRuntimeClient("echo-agent", **swapped)
    text = str(info.value)
    assert "does not look like AgentCube's Router" in text and "ROUTER_URL" in text


def test_an_unknown_template_is_named_with_how_to_add_one(urls: dict[str, str]) -> None:
    with pytest.raises(NotFoundError) as info:
        AgentRuntimeClient("my-agent", **urls)
    text = str(info.value)
    assert "'my-agent'" in text and "`--agent my-agent`" in text and "'echo-agent'" in text
    with pytest.raises(NotFoundError) as info:
        CodeInterpreterClient(name="nope", **urls)
    text = str(info.value)
    assert "code interpreter not found" in text  # the server's own words, as the real one's
    assert "'nope'" in text and "`--code-interpreter nope`" in text
