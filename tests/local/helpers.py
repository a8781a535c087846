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
