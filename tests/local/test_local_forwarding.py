"""The Router's forwarding to a sandbox (``--picod``, ``--agent NAME=URL``), held to Go's rules.

Upstream daemons here refuse what Go's net/http server refuses (``picod_standin.go_rejection``,
whose cases below were measured against a real PicoD; set ``AGENTCUBE_TEST_PICOD`` to the path
of a PicoD binary to run them against it too), and a scripted agent server answers broken or
malformed things to see what the Router makes of them.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agentcube.local import LocalAgentCube
from agentcube.local._sandbox import SandboxStartError
from agentcube.local._sandbox.picod_process import PicodProcess
from agentcube.local._serving.jwt import Signer

from .helpers import SESSION_HEADER, Api
from .picod_standin import BAD_REQUEST, NOT_IMPLEMENTED, bad_request, go_rejection

STANDIN = Path(__file__).with_name("picod_standin.py")
REAL_PICOD = os.environ.get("AGENTCUBE_TEST_PICOD")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


# -- the stand-in refuses what Go's net/http refuses ------------------------------------------

REFUSED = {
    "duplicate Host": (b"Host: a\r\nHost: a\r\n", BAD_REQUEST),
    "two different Hosts": (b"Host: a\r\nHost: b\r\n", BAD_REQUEST),
    "Host in two spellings": (b"Host: a\r\nhost: a\r\n", BAD_REQUEST),
    "no Host on HTTP/1.1": (b"", bad_request("missing required Host header")),
    "malformed Host": (b"Host: a b\r\n", bad_request("malformed Host header")),
    "differing Content-Lengths": (
        b"Host: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n",
        BAD_REQUEST,
    ),
    "Content-Length list": (b"Host: a\r\nContent-Length: 2, 2\r\n", BAD_REQUEST),
    "Content-Length not a number": (b"Host: a\r\nContent-Length: x\r\n", BAD_REQUEST),
    "negative Content-Length": (b"Host: a\r\nContent-Length: -1\r\n", BAD_REQUEST),
    "signed Content-Length": (b"Host: a\r\nContent-Length: +2\r\n", BAD_REQUEST),
    "gzip transfer coding": (b"Host: a\r\nTransfer-Encoding: gzip\r\n", NOT_IMPLEMENTED),
    "chunked twice": (
        b"Host: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        NOT_IMPLEMENTED,
    ),
    "space in a name": (b"Host: a\r\nBad Name: x\r\n", bad_request("invalid header name")),
    "space before the colon": (b"Host: a\r\nX-A : x\r\n", bad_request("invalid header name")),
    "separator in a name": (b"Host: a\r\nBad(Name): x\r\n", BAD_REQUEST),
    "empty name": (b"Host: a\r\n: x\r\n", BAD_REQUEST),
    "line without colon": (b"Host: a\r\nnocolon\r\n", BAD_REQUEST),
    "first line folded": (b" Host: a\r\n", BAD_REQUEST),
    "control byte in a value": (b"Host: a\r\nX-A: a\x01b\r\n", BAD_REQUEST),
    "NUL in a value": (b"Host: a\r\nX-A: a\x00b\r\n", BAD_REQUEST),
    "DEL in a value": (b"Host: a\r\nX-A: a\x7fb\r\n", BAD_REQUEST),
    "bare CR in a value": (b"Host: a\r\nX-A: a\rb\r\n", BAD_REQUEST),
    "control byte in Host": (b"Host: a\x01\r\n", BAD_REQUEST),
}
ACCEPTED = {
    "plain": b"GET /health HTTP/1.1\r\nHost: a\r\n",
    "identical Content-Lengths": b"GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
    b"Content-Length: 2\r\nConnection: close\r\n\r\nab",
    # Go drops the Content-Length and reads the chunked body (RFC 9112 6.3)
    "Content-Length with chunked": b"GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    "folded value": b"GET /health HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n",
    "no Host on HTTP/1.0": b"GET /health HTTP/1.0\r\n",
    "empty Host": b"GET /health HTTP/1.1\r\nHost: \r\n",
    "tab and latin-1 in a value": b"GET /health HTTP/1.1\r\nHost: a\r\nX-A: a\tb\xe9\r\n",
    "bare LF line ends": b"GET /health HTTP/1.1\nHost: a\n",
}


@pytest.fixture(scope="module", params=["standin", "picod"])
def daemon_port(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """A PicoD on loopback: the stand-in, or the binary AGENTCUBE_TEST_PICOD names."""
    if request.param == "picod":
        if not REAL_PICOD:
            pytest.skip("set AGENTCUBE_TEST_PICOD to a PicoD binary to check it too")
        argv = [REAL_PICOD]
    else:
        argv = [sys.executable, str(STANDIN)]
    port = _free_port()
    workspace = tmp_path_factory.mktemp("workspace")
    env = dict(os.environ, PICOD_AUTH_PUBLIC_KEY=Signer().public_pem)
    proc = subprocess.Popen(
        [*argv, "-port", str(port), "-workspace", str(workspace)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the daemon did not listen"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_daemon_refuses_what_go_refuses(daemon_port: int, case: str) -> None:
    head, answer = REFUSED[case]
    assert _exchange(daemon_port, b"GET /health HTTP/1.1\r\n" + head + b"\r\n") == answer


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_the_daemon_accepts_what_go_accepts(daemon_port: int, case: str) -> None:
    data = ACCEPTED[case]
    if not data.endswith(b"\r\n\r\nab") and not data.endswith(b"0\r\n\r\n"):
        ending = b"\n" if case == "bare LF line ends" else b"\r\n"
        close = b"" if b"HTTP/1.0" in data else b"Connection: close" + ending
        data += close + ending
    answer = _exchange(daemon_port, data)
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK"), answer
    assert b'"service":' in answer.replace(b'": "', b'":"').replace(b'":"', b'":')


def test_go_rejection_reads_the_header_block_as_go_does() -> None:
    assert go_rejection("HTTP/1.1", "GET", [b"Host: a\r\n", b"X: 1\r\n", b"\r\n"]) is None
    assert go_rejection("HTTP/1.1", "CONNECT", [b"\r\n"]) is None
    assert go_rejection("HTTP/1.0", "GET", [b"Transfer-Encoding: gzip\r\n", b"\r\n"]) is None
    too_long = b"Content-Length: 9223372036854775808\r\n"
    assert go_rejection("HTTP/1.1", "GET", [b"Host: a\r\n", too_long, b"\r\n"]) == BAD_REQUEST


# -- --picod: what reaches the sandbox --------------------------------------------------------


def _lines(seen: dict[str, object], name: str) -> list[str]:
    raw = seen["raw_headers"]
    assert isinstance(raw, list)
    return [value for key, value in raw if key.lower() == name.lower()]


def test_one_host_and_one_framing_header_reach_picod(papi: Api) -> None:
    created = papi.http.post(
        f"{papi.wm}/v1/code-interpreter", json={"name": "my-interpreter", "namespace": "default"}
    ).json()
    sid, endpoint = created["sessionId"], created["entryPoints"][0]["endpoint"]
    posted = papi.call(sid, "POST", "api/echo", json={"a": 1}).json()
    assert _lines(posted, "Host") == [endpoint]
    assert _lines(posted, "Content-Length") == [str(len(json.dumps({"a": 1})))]
    assert _lines(posted, "Transfer-Encoding") == []
    streamed = papi.call(sid, "POST", "api/echo", data=iter([b"ab", b"cd"])).json()
    assert _lines(streamed, "Transfer-Encoding") == ["chunked"]
    assert _lines(streamed, "Content-Length") == []
    assert streamed["body_len"] == 4
    fetched = papi.call(sid, "GET", "api/echo").json()
    assert _lines(fetched, "Host") == [endpoint]
    assert _lines(fetched, "Content-Length") + _lines(fetched, "Transfer-Encoding") == []
    empty = papi.call(sid, "POST", "api/echo").json()
    assert _lines(empty, "Content-Length") == ["0"]  # as Go's transport sends a bodiless POST
    papi.delete(sid)


def test_hop_by_hop_headers_stay_behind_and_duplicates_are_go_s(
    papi: Api, picod_cube: LocalAgentCube
) -> None:
    sid = papi.create()
    host, port = papi.router.removeprefix("http://").split(":")
    path = "/v1/namespaces/default/code-interpreters/my-interpreter/invocations/api/echo"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{SESSION_HEADER}: {sid}\r\n"
        "Connection: X-Private, close\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\n"
        "Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nTe: gzip\r\n"
        "Trailer: X-T\r\nUser-Agent: first\r\nUser-Agent: second\r\nX-Dup: 1\r\nX-Dup: 2\r\n"
        "Content-Length: 2\r\nContent-Length: 2\r\nAccept-Encoding: identity\r\n\r\nab"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = http.client.HTTPResponse(sock)
        answer.begin()  # the local server does not read "close" inside a list: no EOF wait
        assert answer.status == 200
        seen = json.loads(answer.read())
    names = {name.lower() for name, _ in seen["raw_headers"]}
    for dropped in ("connection", "x-private", "keep-alive", "proxy-connection", "te", "trailer"):
        assert dropped not in names
    assert "proxy-authorization" not in names
    assert _lines(seen, "User-Agent") == ["first"]
    assert _lines(seen, "X-Dup") == ["1", "2"]
    assert _lines(seen, "Content-Length") == ["2"]
    assert len(_lines(seen, "Host")) == 1
    assert len(_lines(seen, "Authorization")) == 1
    papi.delete(sid)


def test_picod_output_stays_out_of_the_root(papi: Api, picod_cube: LocalAgentCube) -> None:
    sid = papi.create()
    assert papi.call(sid, "GET", "health").status_code == 200
    info = next(s for s in picod_cube.sessions() if s.session_id == sid)
    assert info.workspace is not None
    root = Path(info.workspace).parent
    outside_workspaces = [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if not str(path).startswith(info.workspace) and path.is_file()
    ]
    assert outside_workspaces == []
    papi.delete(sid)


def test_a_picod_that_exits_early_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "picod"
    broken.write_text('#!/bin/sh\necho "flag provided but not defined: -port" >&2\nexit 2\n')
    broken.chmod(0o755)
    with pytest.raises(SandboxStartError, match="flag provided but not defined"):
        PicodProcess(str(broken), str(tmp_path / "ws"), Signer())
    assert not (tmp_path / "ws").exists()


# -- --agent NAME=URL: a scripted agent server --------------------------------------------------


class ScriptedAgent:
    """An agent server on loopback that refuses what Go refuses, records each request's head,
    and answers the raw bytes scripted for its path, then closes."""

    def __init__(self) -> None:
        self.answers: dict[str, bytes] = {}
        self.heads: list[list[bytes]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            reader = conn.makefile("rb")
            request_line = reader.readline().decode("latin-1").split()
            lines = [reader.readline()]
            while lines[-1] not in (b"\r\n", b"\n", b""):
                lines.append(reader.readline())
            self.heads.append(lines)
            method, target, version = request_line
            refused = go_rejection(version, method, lines)
            if refused is not None:
                conn.sendall(refused)
                return
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in lines
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            reader.read(length)
            conn.sendall(self.answers.get(target.split("?")[0], b""))
            conn.shutdown(socket.SHUT_WR)
            time.sleep(0.2)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def agent() -> Iterator[ScriptedAgent]:
    server = ScriptedAgent()
    yield server
    server.close()


@pytest.fixture(scope="module")
def agent_cube(agent: ScriptedAgent) -> Iterator[LocalAgentCube]:
    url = f"http://127.0.0.1:{agent.port}/base"
    with LocalAgentCube(quiet=True, agents={"scripted": url}) as cube:
        yield cube


def _invoke(
    cube: LocalAgentCube, agent: ScriptedAgent, name: str, answer: bytes, close: bool = True
) -> bytes:
    """POST through the Router (a fresh session) and read its raw answer until the Router
    closes (with ``close=False`` it closes only if the answer broke)."""
    agent.answers[f"/base/{name}"] = answer
    host, port = cube.router_url.removeprefix("http://").split(":")
    path = f"/v1/namespaces/default/agent-runtimes/scripted/invocations/{name}"
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 2\r\n"
        f"Accept-Encoding: identity\r\n{'Connection: close' if close else 'X-Keep: alive'}"
        "\r\n\r\n{}"
    )
    return _exchange(int(port), request.encode())


UNREACHABLE = b'{"error":"sandbox unreachable"}'
BROKEN_BEFORE_THE_BODY = {
    "closed before the head": b"",
    "malformed status line": b"HTTP/1.1 abc\r\n\r\n",
    "differing Content-Lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
    ),
    "invalid Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nab",
    "unsupported transfer coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nab",
    "header line without colon": b"HTTP/1.1 200 OK\r\nnocolon\r\nContent-Length: 2\r\n\r\nab",
    "control byte in a header": b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nab",
    "closed after the head": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
    "chunked, closed after the head": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    "chunked, broken chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
}


@pytest.mark.parametrize("case", sorted(BROKEN_BEFORE_THE_BODY))
def test_an_answer_broken_before_its_body_is_the_router_s_503(
    agent_cube: LocalAgentCube, agent: ScriptedAgent, case: str
) -> None:
    answer = _invoke(agent_cube, agent, "x", BROKEN_BEFORE_THE_BODY[case])
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
    assert SESSION_HEADER.encode() not in head.lower()
    assert body == UNREACHABLE


CUT_AFTER_THE_HEAD = {
    # the sandbox's answer, the framing the client gets, what it gets before the Router closes
    "short of its length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789",
        b"\r\nContent-Length: 100000\r\n",
        b"0123456789",
    ),
    "chunked, broken mid-body": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"\r\nTransfer-Encoding: chunked\r\n",
        b"5\r\nhello\r\n",  # no 0-size chunk
    ),
}


@pytest.mark.parametrize("case", sorted(CUT_AFTER_THE_HEAD))
def test_an_answer_cut_after_its_head_is_cut_for_the_client_too(
    agent_cube: LocalAgentCube, agent: ScriptedAgent, case: str
) -> None:
    sandbox_answer, framing, received = CUT_AFTER_THE_HEAD[case]
    answer = _invoke(agent_cube, agent, "x", sandbox_answer, close=False)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert framing in head + b"\r\n"
    assert body == received, "the connection closed without completing the body"


def test_an_answer_read_until_close_is_passed_on_whole(
    agent_cube: LocalAgentCube, agent: ScriptedAgent
) -> None:
    answer = _invoke(agent_cube, agent, "x", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == b"5\r\nhello\r\n0\r\n\r\n"


def test_hop_by_hop_headers_of_the_answer_stay_behind(
    agent_cube: LocalAgentCube, agent: ScriptedAgent
) -> None:
    sandbox_answer = (
        b"HTTP/1.1 200 OK\r\nConnection: X-Private, keep-alive\r\nX-Private: 1\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\n"
        b"Trailer: X-T\r\nX-Kept: yes\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    answer = _invoke(agent_cube, agent, "x", sandbox_answer)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")[1:]
    names = [line.split(":")[0] for line in lines]
    for dropped in ("x-private", "keep-alive", "proxy-authenticate", "upgrade", "trailer"):
        assert dropped not in names
    assert "x-kept: yes" in lines
    assert names.count("transfer-encoding") == 1 and "content-length" not in names
    assert names.count("connection") == 1  # the local server's own "close"
    assert body == b"5\r\nhello\r\n0\r\n\r\n"


def test_identical_content_lengths_of_the_answer_are_one(
    agent_cube: LocalAgentCube, agent: ScriptedAgent
) -> None:
    duplicated = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
    answer = _invoke(agent_cube, agent, "x", duplicated)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.lower().count(b"content-length: 5") == 1
    assert body == b"hello"


def test_the_agent_gets_one_host_one_framing_header_and_the_router_s_token(
    agent_cube: LocalAgentCube, agent: ScriptedAgent
) -> None:
    agent.heads.clear()
    answer = _invoke(agent_cube, agent, "x", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    (head,) = agent.heads
    names = [line.split(b":")[0].lower() for line in head[:-1]]
    assert names.count(b"host") == 1
    assert f"Host: 127.0.0.1:{agent.port}\r\n".encode() in head
    assert names.count(b"content-length") == 1 and b"transfer-encoding" not in names
    assert names.count(b"authorization") == 1


def test_requests_sees_a_cut_answer_as_an_error(
    agent_cube: LocalAgentCube, agent: ScriptedAgent
) -> None:
    agent.answers["/base/cut"] = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    url = f"{agent_cube.router_url}/v1/namespaces/default/agent-runtimes/scripted/invocations/cut"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.post(url, json={}, timeout=10)
