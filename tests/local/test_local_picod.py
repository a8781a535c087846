"""``picod=PATH``: one PicoD process per code-interpreter session, behind the Router.

The PicoD here is ``picod_standin.py``, which checks the Router's JWT as PicoD does.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from pathlib import Path

import psutil
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agentcube.local import LocalAgentCube
from agentcube.local._serving.jwt import Signer

from .helpers import SESSION_HEADER, Api
from .picod_standin import TokenError, verify


def _process_of(cube: LocalAgentCube, session_id: str) -> psutil.Process:
    info = next(s for s in cube.sessions() if s.session_id == session_id)
    for proc in psutil.Process().children(recursive=True):
        try:
            if info.workspace in proc.cmdline():
                return proc
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("no PicoD process for the session")


def test_session_runs_its_own_picod(papi: Api, picod_cube: LocalAgentCube) -> None:
    response = papi.http.post(
        f"{papi.wm}/v1/code-interpreter", json={"name": "my-interpreter", "namespace": "default"}
    )
    assert response.status_code == 200
    sid = response.json()["sessionId"]
    endpoint = response.json()["entryPoints"][0]["endpoint"]
    proc = _process_of(picod_cube, sid)
    cmdline = proc.cmdline()
    port = cmdline[cmdline.index("-port") + 1]
    assert endpoint == f"127.0.0.1:{port}"
    workspace = cmdline[cmdline.index("-workspace") + 1]
    assert os.path.isdir(workspace)
    health = papi.call(sid, "GET", "health")
    assert health.json()["service"] == "PicoD"
    assert health.headers[SESSION_HEADER] == sid
    # deleting the session ends the process and removes its workspace
    assert papi.delete(sid).status_code == 200
    proc.wait(timeout=10)
    assert not os.path.exists(workspace)


def test_requests_are_signed_as_the_router_signs(papi: Api) -> None:
    sid = papi.create()
    before = int(time.time())
    response = papi.call(
        sid,
        "POST",
        "api/echo?x=1&y=%2F",
        json={"a": 1},
        headers={"Authorization": "Bearer the-users-own-token", "X-Custom": "kept"},
    )
    assert response.status_code == 200
    seen = response.json()
    claims = seen["claims"]
    assert claims["iss"] == "agentcube-router"
    assert claims["session_id"] == sid
    assert claims["exp"] - claims["iat"] == 300
    assert before - 1 <= claims["iat"] <= int(time.time()) + 1
    headers = seen["headers"]
    assert headers["authorization"] != "Bearer the-users-own-token"
    assert headers["x-custom"] == "kept"
    assert headers[SESSION_HEADER] == sid
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-for"] == "127.0.0.1, 127.0.0.1"
    assert headers["x-forwarded-host"] == papi.router.removeprefix("http://")
    assert seen["query"] == "x=1&y=%2F"
    assert seen["body_len"] == len(json.dumps({"a": 1}))
    papi.delete(sid)


def test_accept_encoding_passes_through_or_is_asked_for_and_undone(papi: Api) -> None:
    sid = papi.create()
    response = papi.call(sid, "GET", "api/echo", headers={"Accept-Encoding": "gzip"}, stream=True)
    raw = response.raw.read(decode_content=False)
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Length"] == str(len(raw))
    assert json.loads(gzip.decompress(raw))["headers"]["accept-encoding"] == "gzip"
    # no Accept-Encoding at all: the Router's transport asks for gzip and undoes it
    host, port = papi.router.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        path = "/v1/namespaces/default/code-interpreters/my-interpreter/invocations/api/echo"
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\n{SESSION_HEADER}: {sid}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    head_text = head.decode().lower()
    assert "transfer-encoding: chunked" in head_text
    assert "content-length" not in head_text and "content-encoding" not in head_text
    assert b'"accept-encoding": "gzip"' in body
    papi.delete(sid)


def test_files_stream_through(papi: Api, picod_cube: LocalAgentCube) -> None:
    sid = papi.create()
    workspace = next(s.workspace for s in picod_cube.sessions() if s.session_id == sid)
    assert workspace is not None
    data = os.urandom(3 * 1024 * 1024)
    Path(workspace, "blob.bin").write_bytes(data)
    response = papi.download(sid, "blob.bin")
    assert response.content == data
    assert response.headers["Content-Length"] == str(len(data))
    papi.delete(sid)


def test_an_early_answer_is_heard_while_the_body_is_still_sent(papi: Api) -> None:
    sid = papi.create()
    response = papi.call(sid, "POST", "api/limited", data=b"x" * 5_000_000)
    assert (response.status_code, response.json()) == (413, {"error": "request body too large"})
    assert response.headers[SESSION_HEADER] == sid
    papi.delete(sid)


def test_a_dead_picod_is_502(papi: Api, picod_cube: LocalAgentCube) -> None:
    sid = papi.create()
    proc = _process_of(picod_cube, sid)
    proc.kill()
    proc.wait(timeout=10)
    response = papi.call(sid, "GET", "api/echo")
    assert (response.status_code, response.json()) == (502, {"error": "sandbox unreachable"})
    assert SESSION_HEADER not in response.headers
    papi.delete(sid)


def test_picod_must_be_executable(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalAgentCube(picod=tmp_path / "missing")


def test_a_picod_that_never_listens_fails_the_create(tmp_path: Path) -> None:
    broken = tmp_path / "picod"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    with LocalAgentCube(quiet=True, picod=broken, isolation="none") as cube:
        api = Api(cube)
        response = api.http.post(
            f"{api.wm}/v1/code-interpreter", json={"name": "my-interpreter", "namespace": "d"}
        )
        assert (response.status_code, response.json()) == (
            500,
            {"message": "internal server error"},
        )
        response = api.http.post(api.ci_url("api/echo"), json={})
        assert (response.status_code, response.json()) == (500, {"error": "internal server error"})
        assert cube.sessions() == []


def test_the_standin_checks_tokens_as_picod_does() -> None:
    signer = Signer()
    public = serialization.load_pem_public_key(signer.public_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    now = time.time()
    assert verify(signer.token("s-1", now=now), public)["session_id"] == "s-1"
    # a minute of leeway either way, then expired / not yet issued
    assert verify(signer.token("s-1", now=now - 300 - 30), public)
    with pytest.raises(TokenError, match="token is expired"):
        verify(signer.token("s-1", now=now - 300 - 90), public)
    with pytest.raises(TokenError, match="used before issued"):
        verify(signer.token("s-1", now=now + 120), public)
    other = Signer()
    with pytest.raises(TokenError, match="signature is invalid"):
        verify(other.token("s-1"), public)
    header, claims, _ = signer.token("s-1").split(".")
    with pytest.raises(TokenError, match="unexpected signing method"):
        verify(f"eyJhbGciOiJIUzI1NiJ9.{claims}.eHh4eA", public)
    del header
    assert signer.public_pem.startswith("-----BEGIN PUBLIC KEY-----")


def test_standin_refuses_requests_without_a_token(papi: Api, picod_cube: LocalAgentCube) -> None:
    sid = papi.create()
    proc = _process_of(picod_cube, sid)
    cmdline = proc.cmdline()
    port = cmdline[cmdline.index("-port") + 1]
    direct = requests.get(f"http://127.0.0.1:{port}/api/echo", timeout=10)
    assert direct.status_code == 401
    assert direct.json()["error"] == "Missing Authorization header"
    papi.delete(sid)
