"""The hand-written ``requests`` baseline: what a careful user would write without the SDK.

Each function sends the request a user would otherwise send: the same URL and headers, and
upstream's own wire bodies where they differ from the SDK's (``execute_command("true")`` is the
argv ``["true"]``, a small ``write_file`` the JSON body), and parses the answer the same way,
reusing one ``requests.Session`` (keep-alive), as a careful user would. It is also the
benchmarks' one place for the SDK's private names they copy onto the wire.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from typing import Any

import requests

# The SDK's private names whose bytes the baseline sends as well: imported here only.
from agentcube._wire import USER_AGENT as USER_AGENT

SESSION_HEADER = "x-agentcube-session-id"
TRUE_ARGV = ["true"]  # upstream's execute_command("true"): shlex.split, no shell
TIMEOUT = (5.0, 120.0)  # the SDK's default (connect, read) timeouts
CHUNK = 1024 * 1024


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT  # the SDK's User-Agent: same bytes on the wire
    return session


def prefix(kind_segment: str, name: str, namespace: str = "default") -> str:
    return f"/v1/namespaces/{namespace}/{kind_segment}/{name}/invocations/"


def invoke(http: requests.Session, url: str, session_id: str, payload: Any) -> Any:
    response = http.post(url, json=payload, headers={SESSION_HEADER: session_id}, timeout=TIMEOUT)
    if response.status_code >= 400:
        raise requests.HTTPError(response.status_code, response=response)
    try:
        return response.json()
    except ValueError:
        return response.text


def create(http: requests.Session, wm_url: str, segment: str, name: str) -> str:
    body = {"name": name, "namespace": "default", "ttl": 3600, "metadata": {}}
    response = http.post(f"{wm_url}/v1/{segment}", json=body, timeout=TIMEOUT)
    response.raise_for_status()
    session_id: str = response.json()["sessionId"]
    return session_id


def delete(http: requests.Session, wm_url: str, segment: str, session_id: str) -> None:
    response = http.delete(f"{wm_url}/v1/{segment}/sessions/{session_id}", timeout=TIMEOUT)
    if response.status_code not in (200, 404):
        response.raise_for_status()
    response.close()


def bootstrap(http: requests.Session, url: str) -> str:
    response = http.get(url, timeout=TIMEOUT)
    response.close()
    return response.headers[SESSION_HEADER]


class StreamingMultipart:
    """A multipart/form-data body read from the file while it is sent (with a length)."""

    def __init__(self, path: str, remote: str) -> None:
        self._path = path
        boundary = secrets.token_hex(16)
        fields = {"path": remote, "mode": "0644"}
        disposition = "--" + boundary + '\r\nContent-Disposition: form-data; name="{}"'
        parts = [f"{disposition.format(k)}\r\n\r\n{v}\r\n" for k, v in fields.items()]
        parts.append(
            disposition.format("file") + '; filename="upload"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        self._head = "".join(parts).encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self.length = len(self._head) + os.path.getsize(path) + len(self._tail)
        self.content_type = f"multipart/form-data; boundary={boundary}"

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        with open(self._path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
        yield self._tail


def upload(http: requests.Session, base: str, session_id: str, local: str, remote: str) -> None:
    body = StreamingMultipart(local, remote)
    headers = {SESSION_HEADER: session_id, "Content-Type": body.content_type}
    response = http.post(base + "api/files", data=body, headers=headers, timeout=TIMEOUT)
    response.raise_for_status()
    response.json()


def upload_in_memory(
    http: requests.Session, base: str, session_id: str, local: str, remote: str
) -> None:
    """``files=``: what most hand-written code does; requests builds the whole body in memory."""
    with open(local, "rb") as f:
        response = http.post(
            base + "api/files",
            files={"file": ("upload", f, "application/octet-stream")},
            data={"path": remote, "mode": "0644"},
            headers={SESSION_HEADER: session_id},
            timeout=TIMEOUT,
        )
    response.raise_for_status()


def download(http: requests.Session, base: str, session_id: str, remote: str, local: str) -> None:
    with http.get(
        base + "api/files/" + remote,
        headers={SESSION_HEADER: session_id},
        timeout=TIMEOUT,
        stream=True,
    ) as response:
        response.raise_for_status()
        with open(local, "wb") as out:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)


def execute(http: requests.Session, base: str, session_id: str, argv: list[str]) -> str:
    """``POST api/execute`` with the body ``execute_command`` sends; stdout of a zero exit."""
    body = {"command": argv, "timeout": "120s"}
    response = http.post(
        base + "api/execute",
        json=body,
        headers={SESSION_HEADER: session_id},
        timeout=(5.0, 160.0),
    )
    response.raise_for_status()
    answer = response.json()
    if answer["exit_code"] != 0:
        raise RuntimeError(f"exit code {answer['exit_code']}")
    stdout: str = answer["stdout"] or ""
    return stdout


def write(http: requests.Session, base: str, session_id: str, data: bytes, remote: str) -> None:
    """``POST api/files``: upstream's JSON body (the content in base64)."""
    body = {"path": remote, "content": base64.b64encode(data).decode("ascii"), "mode": "0644"}
    response = http.post(
        base + "api/files", json=body, headers={SESSION_HEADER: session_id}, timeout=TIMEOUT
    )
    response.raise_for_status()
    response.json()


def list_files(http: requests.Session, base: str, session_id: str, path: str) -> Any:
    response = http.get(
        base + "api/files?path=" + path, headers={SESSION_HEADER: session_id}, timeout=TIMEOUT
    )
    response.raise_for_status()
    return response.json()["files"]
