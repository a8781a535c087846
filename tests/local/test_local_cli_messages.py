"""What the CLI tells a user: the sessions a running server holds (`agentcube-local sessions`,
over a local-only route that is not AgentCube's), a port conflict that names the port, what
Ctrl-C deletes, its program name, and a `--help` example that works as written."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys

import requests

from agentcube.local._workload_manager import SESSIONS_PATH

from .helpers import CI, NS
from .test_local_cli import CliServer


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentcube.local", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sessions_lists_what_a_running_server_holds() -> None:
    server = CliServer()
    try:
        port = server.wm.rsplit(":", 1)[1]
        empty = _cli("sessions", "--port", port)
        assert empty.returncode == 0, empty.stderr
        assert empty.stdout.strip() == "no sessions"
        created = requests.post(
            server.wm + "/v1/code-interpreter", json={"name": CI, "namespace": NS}, timeout=10
        ).json()["sessionId"]
        listed = _cli("sessions", "--port", port)
        assert listed.returncode == 0, listed.stderr
        (line,) = listed.stdout.splitlines()
        assert re.fullmatch(rf"{created}  CodeInterpreter  {CI}  age \d+s  idle \d+s", line), line
    finally:
        code, err = server.stop()
    assert code == 0
    # Ctrl-C says what it deletes.
    assert "stopping: deleting 1 session(s)" in err, err


def test_sessions_route_is_the_local_workload_managers_own() -> None:
    server = CliServer()
    try:
        answer = requests.get(server.wm + SESSIONS_PATH, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"sessions": []}
        # The Router does not serve it: it is the local WorkloadManager's own.
        assert requests.get(server.router + SESSIONS_PATH, timeout=10).status_code == 404
    finally:
        server.stop()


def test_sessions_refuses_a_peer_that_is_not_loopback() -> None:
    from agentcube.local import LocalAgentCube
    from agentcube.local._workload_manager import WorkloadManagerApp

    with LocalAgentCube(quiet=True) as cube:
        app = WorkloadManagerApp(cube._store, token=None)
        seen: list[str] = []

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            seen.append(status)

        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": SESSIONS_PATH,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "192.0.2.7",
            "REMOTE_PORT": "40000",
            "wsgi.input": io.BytesIO(b""),
        }
        body = b"".join(app(environ, start_response))
        assert seen[0].startswith("403"), (seen, body)
        environ["REMOTE_ADDR"] = "127.0.0.1"
        environ["wsgi.input"] = io.BytesIO(b"")
        b"".join(app(environ, start_response))
        assert seen[1].startswith("200")


def test_sessions_without_a_server_says_which_port_to_pass() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    done = _cli("sessions", "--port", str(free))
    assert done.returncode == 1
    assert f"no agentcube-local at 127.0.0.1:{free}" in done.stderr
    assert "--port" in done.stderr


def test_a_taken_router_port_is_named_with_a_way_out() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        router = taken.getsockname()[1]
        done = _cli("--port", str(router - 1), "--quiet")
    assert done.returncode == 1
    assert f"port {router}, the Router's (--port + 1, or --router-port), is in use" in done.stderr
    assert "--port 0" in done.stderr


def _two_free_ports() -> int:
    """A port that is free, and the next one too (the Router's, as the example has it)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two consecutive free ports")


def test_help_names_the_program_and_its_example_works() -> None:
    shown = _cli("--help").stdout
    assert shown.startswith("usage: agentcube-local")
    lines = [line.split("#")[0].strip() for line in shown.splitlines()]
    start = next(line for line in lines if line.startswith("agentcube-local --port"))
    export = next(line for line in lines if line.startswith("export WORKLOAD_MANAGER_URL="))
    port = int(re.search(r"--port (\d+)", start).group(1))  # type: ignore[union-attr]
    # What the example exports is exactly what the server it starts prints (on free ports).
    free = _two_free_ports()
    server = CliServer.__new__(CliServer)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentcube.local", "--port", str(free), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server.proc = proc
    try:
        assert proc.stdout is not None
        printed = proc.stdout.readline() + proc.stdout.readline()
    finally:
        server.stop()
    shown_urls = dict(re.findall(r"(\w+_URL)=(\S+)", export.replace(str(port + 1), "{R}")))
    printed_urls = dict(re.findall(r"(\w+_URL)=(\S+)", printed.replace(str(free + 1), "{R}")))
    assert {k: v.replace(str(port), "{W}") for k, v in shown_urls.items()} == {
        k: v.replace(str(free), "{W}") for k, v in printed_urls.items()
    }
    assert "kill %1" in shown and "python -m agentcube.local" in shown


def test_an_unknown_template_is_answered_as_the_real_service_and_logged_with_a_fix() -> None:
    server = CliServer()
    try:
        answer = requests.post(
            server.wm + "/v1/agent-runtime", json={"name": "my-agent", "namespace": NS}, timeout=10
        )
        assert answer.status_code == 404
        assert answer.json() == {"message": "agent runtime not found"}  # the contract's words
    finally:
        _, err = server.stop()
    assert "no AgentRuntime template 'my-agent' (there are: echo-agent)" in err, err
    assert "--agent my-agent" in err
