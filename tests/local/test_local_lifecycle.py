"""Server life cycle: reaping, stop, connection reuse, loopback-only, the pytest plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from agentcube.local import Lifetime, LocalAgentCube, SessionInfo, configured_or_local

from .helpers import SESSION_HEADER, Api


def _wait_until(condition: object, timeout: float = 5.0) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def test_max_session_duration_deletes_like_delete() -> None:
    with LocalAgentCube(
        quiet=True, max_session_duration=0.4, session_timeout=None, gc_interval=0.05
    ) as cube:
        api = Api(cube)
        sid = api.create()
        workspace = cube.sessions()[0].workspace
        assert workspace is not None and os.path.isdir(workspace)
        # traffic does not extend the maximum duration
        for _ in range(3):
            api.execute(sid, ["true"])
        assert _wait_until(lambda: not cube.has_session(sid))
        # the collector forgets the session first, then removes its sandbox
        assert _wait_until(lambda: not os.path.exists(workspace))
        assert api.delete(sid).status_code == 404


def test_session_timeout_counts_request_starts_and_ends() -> None:
    with LocalAgentCube(
        quiet=True, max_session_duration=None, session_timeout=0.5, gc_interval=0.05
    ) as cube:
        api = Api(cube)
        busy = api.create()
        idle = api.create("agent-runtime", "echo-agent")
        deadline = time.monotonic() + 0.8  # keep `busy` active longer than the timeout
        while time.monotonic() < deadline:
            api.execute(busy, ["true"])
        assert _wait_until(lambda: not cube.has_session(idle))
        assert cube.has_session(busy)
        # a request running past the timeout does not keep its session: as in AgentCube, the
        # garbage collector deletes it under the request, which then fails
        response = api.call(busy, "POST", "api/execute", json={"command": ["sleep", "3"]})
        assert (response.status_code, response.json()) == (503, {"error": "sandbox unreachable"})
        assert not cube.has_session(busy)


def test_per_template_lifetimes() -> None:
    with LocalAgentCube(
        quiet=True,
        code_interpreters=("my-interpreter", "short"),
        lifetimes={"short": Lifetime(session_timeout=0.3)},
        gc_interval=0.05,
    ) as cube:
        cube.register_code_interpreter("capped", lifetime=Lifetime(max_session_duration=0.3))
        api = Api(cube)
        long_lived = api.create()
        short = api.create(name="short")
        capped = api.create(name="capped")
        assert _wait_until(lambda: not cube.has_session(short) and not cube.has_session(capped))
        assert cube.has_session(long_lived)
    with pytest.raises(ValueError):
        Lifetime(session_timeout=0)
    with pytest.raises(ValueError):
        LocalAgentCube(session_timeout=-1)


def test_stop_deletes_everything_and_is_idempotent(tmp_path: os.PathLike[str]) -> None:
    cube = LocalAgentCube(quiet=True)
    cube.start()
    api = Api(cube)
    root = cube.root_dir
    assert root is not None and os.path.isdir(root)
    sid = api.create()
    results: list[object] = []

    def long_command() -> None:
        try:
            results.append(api.execute(sid, ["sleep", "30"]))
        except Exception as exc:
            results.append(exc)

    worker = threading.Thread(target=long_command)
    worker.start()
    time.sleep(0.3)
    started = time.monotonic()
    cube.stop()
    cube.stop()
    worker.join(timeout=10)
    assert time.monotonic() - started < 5
    assert not worker.is_alive()
    assert not os.path.exists(root)
    assert cube.sessions() == []
    with pytest.raises(RuntimeError):
        _ = cube.workload_manager_url
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(api.wm + "/health", timeout=2)


def test_explicit_root_dir_is_kept(tmp_path: os.PathLike[str]) -> None:
    root = os.path.join(os.fspath(tmp_path), "workspaces")
    with LocalAgentCube(quiet=True, root_dir=root) as cube:
        api = Api(cube)
        sid = api.create()
        assert sorted(os.listdir(root)) == sorted([sid, ".agentcube-staging"])
    assert os.listdir(root) == []


def test_connection_reuse(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    cube.reset_counters()
    with requests.Session() as http:
        headers = {SESSION_HEADER: session_id}
        for i in range(100):
            if i % 4 == 0:
                response = http.post(
                    api.ci_url("api/execute"), json={"command": ["true"]}, headers=headers
                )
            elif i % 4 == 1:
                response = http.get(api.ci_url("api/files?path=."), headers=headers)
            elif i % 4 == 2:  # a body the app does not read must not break the next request
                response = http.post(api.router + "/nope", data=b"x" * 100_000)
            else:
                response = http.get(api.agent_url(), headers=headers)  # 404 session not found
            assert response.status_code in (200, 404)
    assert cube.connections_accepted()["router"] == 1
    assert len(cube.requests_seen()) == 100


def test_chunked_request_bodies(api: Api, session_id: str) -> None:
    def body() -> object:
        yield b'{"command": ["echo",'
        yield b' "chunked"]}'

    with requests.Session() as http:
        for _ in range(3):
            response = http.post(
                api.ci_url("api/execute"), data=body(), headers={SESSION_HEADER: session_id}
            )
            assert response.status_code == 200
            assert response.json()["stdout"] == "chunked\n"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_refuses_non_loopback_host(host: str) -> None:
    with pytest.raises(ValueError):
        LocalAgentCube(host=host)


def test_fixed_ports_and_urls() -> None:
    with LocalAgentCube(quiet=True) as first:
        wm_port = int(first.workload_manager_url.rsplit(":", 1)[1])
        router_port = int(first.router_url.rsplit(":", 1)[1])
        assert first.workload_manager_url == f"http://127.0.0.1:{wm_port}"
        with pytest.raises(OSError):
            LocalAgentCube(quiet=True, port=wm_port).start()
    with LocalAgentCube(quiet=True, port=wm_port, router_port=router_port) as second:
        assert second.workload_manager_url.endswith(f":{wm_port}")
        assert second.router_url.endswith(f":{router_port}")


def test_startup_banner_says_whether_sessions_are_isolated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with LocalAgentCube(isolation="none"):
        pass
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "NOT isolated" in err
    with LocalAgentCube() as cube:
        isolated = cube.isolation == "namespaces"
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert ("run isolated" in err) is isolated
    assert ("NOT isolated" in err) is not isolated
    with LocalAgentCube(quiet=True):
        pass
    assert capsys.readouterr().err == ""


def test_introspection(api: Api, cube: LocalAgentCube) -> None:
    sid = api.create()
    info = next(s for s in cube.sessions() if s.session_id == sid)
    assert isinstance(info, SessionInfo)
    with pytest.raises(AttributeError):
        info.name = "x"  # type: ignore[misc]
    assert info.created_at <= info.last_used <= time.time()
    assert cube.delete_all_sessions() >= 1
    assert cube.sessions() == []


def test_plugin_fixture(agentcube_env: LocalAgentCube) -> None:
    assert os.environ["WORKLOAD_MANAGER_URL"] == agentcube_env.workload_manager_url
    assert os.environ["ROUTER_URL"] == agentcube_env.router_url
    response = requests.get(os.environ["WORKLOAD_MANAGER_URL"] + "/health", timeout=5)
    assert response.status_code == 200
    agentcube_env.inject_fault("GET", "/never-requested", status=500)


def test_plugin_fixture_cleared_faults(agentcube_env: LocalAgentCube) -> None:
    response = requests.get(agentcube_env.workload_manager_url + "/never-requested", timeout=5)
    assert response.status_code == 404


def test_imports_without_werkzeug() -> None:
    code = """
import sys
sys.modules["werkzeug"] = None
import agentcube.local.pytest_plugin
import agentcube.local
try:
    from agentcube.local import LocalAgentCube
except ImportError as exc:
    assert 'pip install "agentcube-sdk[local]"' in str(exc), exc
    print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "ok"


def test_delete_session(api: Api, cube: LocalAgentCube) -> None:
    sid = api.create()
    assert cube.delete_session(sid) is True
    assert cube.delete_session(sid) is False
    assert api.delete(sid).status_code == 404


def test_configured_or_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKLOAD_MANAGER_URL", raising=False)
    monkeypatch.delenv("ROUTER_URL", raising=False)
    with configured_or_local(quiet=True) as cube:
        assert cube is not None
        assert os.environ["WORKLOAD_MANAGER_URL"] == cube.workload_manager_url
        assert os.environ["ROUTER_URL"] == cube.router_url
        Api(cube).create()
    assert "WORKLOAD_MANAGER_URL" not in os.environ
    assert not cube.running
    monkeypatch.setenv("WORKLOAD_MANAGER_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("ROUTER_URL", "http://127.0.0.1:2")
    with configured_or_local(quiet=True) as nothing:
        assert nothing is None
        assert os.environ["ROUTER_URL"] == "http://127.0.0.1:2"
