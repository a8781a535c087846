"""Raw ``requests`` helpers for talking to a LocalAgentCube over loopback."""

from __future__ import annotations

import base64
from typing import Any

import requests

from agentcube.local import LocalAgentCube

NS = "default"
CI = "my-interpreter"
SESSION_HEADER = "x-agentcube-session-id"
MAX_UPLOAD = 4 * 1024 * 1024
#: the workspace inside an isolated sandbox for these tests: three levels deep, as a host
#: temporary directory would be, so answers that count levels ("../..") read alike in both modes
INNER_WORKSPACE = "/home/agent/workspace"
#: the Python a command in a session runs (the sandbox has the system's, not this venv's)
PYTHON = "python3"


def host_workspace(cube: LocalAgentCube, session_id: str) -> str:
    """Where this process reaches the session's workspace (into the sandbox when isolated)."""
    workspace = next(s.workspace for s in cube.sessions() if s.session_id == session_id)
    assert workspace is not None
    return workspace


def host_pid(cube: LocalAgentCube, session_id: str, pid: int) -> int:
    """The pid this machine knows a session's process by (``pid`` as the session sees it)."""
    if cube.isolation != "namespaces":
        return pid
    import psutil

    outside = int(host_workspace(cube, session_id).split("/")[2])  # /proc/PID/root/...
    for proc in psutil.Process(outside).children(recursive=True):
        try:
            with open(f"/proc/{proc.pid}/status") as handle:
                nspid = next(line for line in handle if line.startswith("NSpid:"))
        except (OSError, StopIteration):
            continue
        if int(nspid.split()[-1]) == pid:
            return proc.pid
    raise AssertionError(f"no process {pid} in the session's sandbox")


def host_view(cube: LocalAgentCube, session_id: str, path: str) -> str:
    """Where this process reaches ``path`` as the session names it (absolute)."""
    if cube.isolation != "namespaces":
        return path
    outside = host_workspace(cube, session_id).split("/")[2]
    return f"/proc/{outside}/root{path}"


def inner_workspace(cube: LocalAgentCube, session_id: str) -> str:
    """The workspace as the session's commands and PicoD's answers name it."""
    if cube.isolation == "namespaces":
        return INNER_WORKSPACE
    return host_workspace(cube, session_id)


class Api:
    """Raw HTTP helpers against a running LocalAgentCube."""

    def __init__(self, cube: LocalAgentCube, token: str | None = None) -> None:
        self.cube = cube
        self.wm = cube.workload_manager_url
        self.router = cube.router_url
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def create(self, kind: str = "code-interpreter", name: str = CI, namespace: str = NS) -> str:
        response = self.http.post(
            f"{self.wm}/v1/{kind}", json={"name": name, "namespace": namespace}, timeout=10
        )
        assert response.status_code == 200, response.text
        return str(response.json()["sessionId"])

    def delete(self, session_id: str, kind: str = "code-interpreter") -> requests.Response:
        return self.http.delete(f"{self.wm}/v1/{kind}/sessions/{session_id}", timeout=10)

    def ci_url(self, subpath: str = "", name: str = CI, namespace: str = NS) -> str:
        base = f"{self.router}/v1/namespaces/{namespace}/code-interpreters/{name}"
        return f"{base}/invocations/{subpath}"

    def agent_url(self, name: str = "echo-agent", subpath: str = "", namespace: str = NS) -> str:
        return (
            f"{self.router}/v1/namespaces/{namespace}/agent-runtimes/{name}/invocations/{subpath}"
        )

    def call(self, session_id: str, method: str, subpath: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        headers[SESSION_HEADER] = session_id
        kwargs.setdefault("timeout", 30)
        return self.http.request(method, self.ci_url(subpath), headers=headers, **kwargs)

    def execute(self, session_id: str, command: list[str], **extra: Any) -> dict[str, Any]:
        response = self.call(session_id, "POST", "api/execute", json={"command": command, **extra})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def upload(
        self, session_id: str, path: str, data: bytes, mode: str = "0644"
    ) -> requests.Response:
        body = {"path": path, "content": base64.b64encode(data).decode(), "mode": mode}
        return self.call(session_id, "POST", "api/files", json=body)

    def download(self, session_id: str, path: str) -> requests.Response:
        return self.call(session_id, "GET", f"api/files/{path}")
