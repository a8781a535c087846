"""The Router's limits: requests in flight (429) and the time to receive a request (504)."""

from __future__ import annotations

import socket
import threading
import time

import psutil
import pytest
import requests

from agentcube.local import LocalAgentCube
from agentcube.local.__main__ import _parse_lifetime

from .helpers import SESSION_HEADER, Api

PREFIX = "/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"


def _wait_for_child(cmdline: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.cmdline() == cmdline:
                    return
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.02)
    raise AssertionError(f"{cmdline} never started")


def test_more_requests_in_flight_than_allowed_are_429() -> None:
    with LocalAgentCube(quiet=True, max_in_flight=1) as cube:
        api = Api(cube)
        sid = api.create()
        results: list[int] = []
        worker = threading.Thread(
            target=lambda: results.append(
                api.call(sid, "POST", "api/execute", json={"command": ["sleep", "1.5"]}).status_code
            )
        )
        worker.start()
        _wait_for_child(["sleep", "1.5"])
        with requests.Session() as other:
            response = other.post(
                api.ci_url("api/execute"), json={"command": ["true"]}, headers={SESSION_HEADER: sid}
            )
            assert response.status_code == 429
            assert response.json() == {
                "code": "SERVER_OVERLOADED",
                "error": "server overloaded, please try again later",
            }
            assert SESSION_HEADER not in response.headers
            # health checks are not counted
            assert other.get(api.router + "/health/live").status_code == 200
        worker.join(10)
        assert results == [200]
        assert api.execute(sid, ["true"])["exit_code"] == 0  # the slot was given back
    with pytest.raises(ValueError):
        LocalAgentCube(max_in_flight=0)


def test_a_request_must_arrive_within_the_read_timeout() -> None:
    with LocalAgentCube(quiet=True, read_timeout=0.5) as cube:
        api = Api(cube)
        sid = api.create()
        host, port = cube.router_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                (
                    f"POST {PREFIX}api/execute HTTP/1.1\r\nHost: x\r\n{SESSION_HEADER}: {sid}\r\n"
                    'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"comm'
                ).encode()
            )
            started = time.monotonic()
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert time.monotonic() - started < 5
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 504")
        assert body == b'{"error":"sandbox timeout"}'
        assert SESSION_HEADER.encode() not in head.lower()
        # a request whose body arrived in time may run longer than the limit
        result = api.execute(sid, ["sleep", "1"])
        assert result["exit_code"] == 0


def test_lifetimes_from_the_command_line() -> None:
    import argparse

    assert _parse_lifetime("900") == (None, 900.0)
    assert _parse_lifetime("15m") == (None, 900.0)
    assert _parse_lifetime("short=1.5s") == ("short", 1.5)
    assert _parse_lifetime("0") == (None, None)
    for bad in ("=5", "x=soon", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            _parse_lifetime(bad)
