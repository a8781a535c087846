"""Bearer-token auth and fault injection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from agentcube.local import Fault, LocalAgentCube

from .helpers import CI, NS, SESSION_HEADER, Api

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def secured() -> Iterator[LocalAgentCube]:
    with LocalAgentCube(quiet=True, token=TOKEN) as cube:
        yield cube


def test_auth_required_on_both_servers(secured: LocalAgentCube) -> None:
    anonymous = Api(secured)
    wrong = Api(secured, token="wrong")
    for client, wm_text, router_text in (
        (anonymous, "Missing authorization header", "missing authorization header"),
        (wrong, "Invalid or expired token", "invalid or expired token"),
    ):
        response = client.http.post(
            f"{client.wm}/v1/code-interpreter", json={"name": CI, "namespace": NS}
        )
        assert (response.status_code, response.json()) == (401, {"message": wm_text})
        assert client.delete("whatever").json() == {"message": wm_text}
        response = client.http.post(client.ci_url("api/execute"), json={"command": ["true"]})
        assert response.status_code == 401
        assert response.json() == {"code": "UNAUTHORIZED", "error": router_text}
        assert SESSION_HEADER not in response.headers
        # unknown routes are gin's 404 before any auth
        assert client.http.get(client.wm + "/nope").status_code == 404
    assert secured.sessions() == []
    # health stays open
    assert anonymous.http.get(anonymous.wm + "/health").status_code == 200
    assert anonymous.http.get(anonymous.router + "/health/live").status_code == 200
    assert anonymous.http.get(anonymous.router + "/health/ready").status_code == 200
    # other schemes and near-misses are refused
    for header, text in (
        (f"Basic {TOKEN}", "invalid authorization header format"),
        (TOKEN, "invalid authorization header format"),
        (f"Bearer {TOKEN}x", "invalid or expired token"),
        ("Bearer ", "invalid authorization header format"),
    ):
        response = requests.get(
            anonymous.ci_url("api/files/x"), headers={"Authorization": header}, timeout=10
        )
        assert (response.status_code, response.json()["error"]) == (401, text)


def test_auth_with_token(secured: LocalAgentCube) -> None:
    client = Api(secured, token=TOKEN)
    sid = client.create()
    assert client.execute(sid, ["echo", "ok"])["stdout"] == "ok\n"
    assert client.delete(sid).status_code == 200


# -- faults ----------------------------------------------------------------------------------------
def test_status_fault_does_not_perform_the_action(api: Api, cube: LocalAgentCube) -> None:
    fault = cube.inject_fault("POST", "/v1/code-interpreter", status=503)
    assert isinstance(fault, Fault)
    before = len(cube.sessions())
    response = api.http.post(f"{api.wm}/v1/code-interpreter", json={"name": CI, "namespace": NS})
    assert response.status_code == 503
    assert response.json() == {"message": "injected fault"}
    assert len(cube.sessions()) == before
    assert fault.hits == 1
    # fired once only
    sid = api.create()
    assert fault.hits == 1
    assert cube.faults_fired()["status:503"] >= 1

    fault = cube.inject_fault("*", "*/invocations/*", status=500, times=2, body={"error": "boom"})
    for _ in range(2):
        response = api.call(sid, "POST", "api/execute", json={"command": ["true"]})
        assert response.status_code == 500
        assert response.json() == {"error": "boom"}
    assert api.call(sid, "POST", "api/execute", json={"command": ["true"]}).status_code == 200
    assert fault.hits == 2
    api.delete(sid)


def test_router_fault_body_and_glob(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    cube.inject_fault("GET", "*/api/files/*", status=429)
    assert api.call(session_id, "POST", "api/execute", json={"command": ["true"]}).ok
    response = api.download(session_id, "x.txt")
    assert response.status_code == 429
    assert response.json() == {"error": "injected fault"}


def test_delete_fault_keeps_the_session(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    cube.inject_fault("DELETE", "/v1/code-interpreter/sessions/*", status=500)
    assert api.delete(session_id).status_code == 500
    assert cube.has_session(session_id)


def test_delay_fault_then_handled(api: Api, cube: LocalAgentCube) -> None:
    cube.inject_fault("POST", "/v1/agent-runtime", delay=0.3)
    started = time.monotonic()
    sid = api.create("agent-runtime", "echo-agent")
    assert time.monotonic() - started >= 0.3
    assert cube.has_session(sid)
    cube.inject_fault("POST", "/v1/agent-runtime", delay=0.1, status=504)
    response = api.http.post(
        f"{api.wm}/v1/agent-runtime", json={"name": "echo-agent", "namespace": NS}
    )
    assert response.status_code == 504
    api.delete(sid)


def test_delay_fault_with_client_gone_is_not_processed(api: Api, cube: LocalAgentCube) -> None:
    cube.reset_counters()
    before = {s.session_id for s in cube.sessions()}
    cube.inject_fault("POST", "/v1/code-interpreter", delay=0.6)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            f"{api.wm}/v1/code-interpreter", json={"name": CI, "namespace": NS}, timeout=0.2
        )
    time.sleep(0.8)
    assert {s.session_id for s in cube.sessions()} == before
    fired = cube.faults_fired()
    assert fired["delay"] == 1
    assert fired["cancelled"] == 1


def test_drop_fault_closes_without_response(api: Api, cube: LocalAgentCube) -> None:
    before = len(cube.sessions())
    fault = cube.inject_fault("POST", "/v1/code-interpreter", drop=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.http.post(f"{api.wm}/v1/code-interpreter", json={"name": CI, "namespace": NS})
    assert len(cube.sessions()) == before
    assert fault.hits == 1
    # the next request works (on a new connection)
    api.delete(api.create())


def test_drop_after_performs_the_action(api: Api, cube: LocalAgentCube) -> None:
    sid = api.create()
    cube.inject_fault("POST", "*/invocations/api/execute", drop=True, after=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.call(sid, "POST", "api/execute", json={"command": ["bash", "-c", "echo x >> ran.txt"]})
    assert api.download(sid, "ran.txt").content == b"x\n"

    before = {s.session_id for s in cube.sessions()}
    cube.inject_fault("DELETE", "/v1/*/sessions/*", drop=True, after=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.delete(sid)
    assert not cube.has_session(sid)
    assert before - {s.session_id for s in cube.sessions()} == {sid}
    fired = cube.faults_fired()
    assert fired["drop"] >= 2 and fired["drop_after"] >= 2


def test_raw_drop_sends_no_bytes(cube: LocalAgentCube) -> None:
    cube.inject_fault("*", "/health", drop=True)
    port = int(cube.workload_manager_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(1024) == b""


def test_method_mismatch_and_clear(api: Api, cube: LocalAgentCube) -> None:
    fault = cube.inject_fault("GET", "/v1/code-interpreter", status=500)
    api.delete(api.create())  # POST does not match a GET fault
    assert fault.hits == 0
    cube.clear_faults()
    assert api.http.get(f"{api.wm}/v1/code-interpreter").status_code == 404


def test_fault_validation(cube: LocalAgentCube) -> None:
    for kwargs in (
        {},
        {"status": 42},
        {"delay": -1.0},
        {"times": 0},
        {"after": True},
        {"drop": True, "status": 500},
    ):
        with pytest.raises(ValueError):
            cube.inject_fault("GET", "/x", **kwargs)  # type: ignore[arg-type]


def test_faults_are_thread_safe(api: Api, cube: LocalAgentCube) -> None:
    fault = cube.inject_fault("GET", "/health/live", status=503, times=25)
    codes: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        with requests.Session() as http:
            for _ in range(10):
                code = http.get(api.router + "/health/live").status_code
                with lock:
                    codes.append(code)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes.count(503) == 25
    assert codes.count(200) == 25
    assert fault.hits == 25


def test_session_header_on_faulted_response_absent(api: Api, cube: LocalAgentCube) -> None:
    cube.inject_fault("GET", "*/agent-runtimes/*", status=502)
    response = api.http.get(api.agent_url())
    assert response.status_code == 502
    assert SESSION_HEADER not in response.headers  # not forwarded: no session was made
