"""The Router's limits: requests in flight (429) and the time to receive a request (504)."""

from __future__ import annotations

import http.client
import json
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


def _slow_post(sid: str, port: int, framing: str, parts: list[bytes], gap: float) -> float:
    """Send a request's head, then ``parts`` every ``gap`` seconds, never finishing the
    body; the seconds from the head to the end of the answer, which must be a 504."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        started = time.monotonic()
        sock.sendall(
            (
                f"POST {PREFIX}api/execute HTTP/1.1\r\nHost: x\r\n{SESSION_HEADER}: {sid}\r\n"
                f"Content-Type: application/json\r\n{framing}\r\n\r\n"
            ).encode()
        )
        answer = b""
        for part in parts:
            time.sleep(gap)
            try:
                sock.sendall(part)
            except OSError:
                break
        while chunk := sock.recv(65536):
            answer += chunk
        elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504"), answer
    assert body == b'{"error":"sandbox timeout"}'
    return elapsed


def test_the_read_limit_counts_from_the_request_start_not_per_read() -> None:
    # Go's ReadTimeout: the whole request by start + limit. Measured per read, a body
    # sending a part now and then got its 504 one whole limit after its last part.
    with LocalAgentCube(quiet=True, read_timeout=2.0) as cube:
        sid = Api(cube).create()
        port = int(cube.router_url.rsplit(":", 1)[1])
        parts = [b'{"comm', b'and": ']
        length = _slow_post(sid, port, "Content-Length: 100", parts, 0.7)
        chunked = _slow_post(
            sid,
            port,
            "Transfer-Encoding: chunked",
            [b"20\r\n" + b'{"command": [', b'"true"], "timeout"'],  # one chunk, in two parts
            0.7,
        )
        for elapsed in (length, chunked):
            assert 1.9 <= elapsed < 2.9, (length, chunked)


def test_the_read_limit_is_per_request_on_a_kept_alive_connection() -> None:
    with LocalAgentCube(quiet=True, read_timeout=1.0) as cube:
        sid = Api(cube).create()
        port = int(cube.router_url.rsplit(":", 1)[1])
        body = b'{"command": ["true"]}'
        request = (
            f"POST {PREFIX}api/execute HTTP/1.1\r\nHost: x\r\n{SESSION_HEADER}: {sid}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            for _ in range(2):  # idle past the first request's limit, then a second one
                sock.sendall(request)
                response = http.client.HTTPResponse(sock)
                response.begin()
                assert response.status == 200
                assert json.loads(response.read())["exit_code"] == 0
                time.sleep(1.5)


def test_lifetimes_from_the_command_line() -> None:
    import argparse

    assert _parse_lifetime("900") == (None, 900.0)
    assert _parse_lifetime("15m") == (None, 900.0)
    assert _parse_lifetime("short=1.5s") == ("short", 1.5)
    assert _parse_lifetime("0") == (None, None)
    for bad in ("=5", "x=soon", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            _parse_lifetime(bad)
