"""The sandboxes a session can have: the built-in PicoD, a real PicoD process, and agents.

None of them isolates anything: commands run as the server's user on this machine.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from ._forward import Unreachable, forward
from ._gin import BodyReadError, GoResponse, Headers, Request, Response, json_response
from ._jwt import Signer
from ._paths import Workspace
from ._picod import BuiltinPicod, SandboxGone
from ._procs import ProcessSupervisor

logger = logging.getLogger(__name__)

_ECHO_BODY_LIMIT = 16 * 1024 * 1024
PICOD_READY_TIMEOUT = 15.0


class SandboxStartError(RuntimeError):
    """The sandbox did not come up (the WorkloadManager answers 500)."""


class Sandbox(Protocol):
    """What the Router forwards to."""

    @property
    def workspace(self) -> str | None: ...

    @property
    def closed(self) -> bool: ...

    def endpoint(self) -> str: ...

    def handle(self, request: Request, session_id: str) -> Response:
        """Answer a forwarded request; raises Unreachable or SandboxGone."""
        ...

    def close(self) -> None: ...


class BuiltinCodeInterpreter:
    """A code-interpreter session served in this process by :class:`BuiltinPicod`."""

    def __init__(
        self,
        workspace: str,
        endpoint: Callable[[], str],
        *,
        max_body_bytes: int,
        max_output_bytes: int,
        staging_dir: str | None,
    ) -> None:
        self._picod = BuiltinPicod(
            workspace,
            max_body_bytes=max_body_bytes,
            max_output_bytes=max_output_bytes,
            staging_dir=staging_dir,
        )
        self._endpoint = endpoint

    @property
    def workspace(self) -> str:
        return self._picod.workspace.root

    @property
    def closed(self) -> bool:
        return self._picod.closed

    def endpoint(self) -> str:
        return self._endpoint()

    def handle(self, request: Request, session_id: str) -> Response:
        return self._picod.handle(request)

    def close(self) -> None:
        self._picod.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PicodProcess:
    """A code-interpreter session served by a real PicoD binary: ``PATH -port N -workspace DIR``.

    It gets the Router's public key in ``PICOD_AUTH_PUBLIC_KEY``; every forwarded request
    carries a JWT signed with the private key, as the real Router sends.
    """

    def __init__(
        self,
        binary: str,
        workspace: str,
        signer: Signer,
        *,
        log_path: str | None = None,
        ready_timeout: float = PICOD_READY_TIMEOUT,
    ) -> None:
        self._workspace = Workspace(workspace)
        self._workspace.create()
        self._signer = signer
        self._port = _free_port()
        self._processes = ProcessSupervisor()
        self._closed = False
        self._log_path = log_path
        env = {
            key.encode("utf-8", "surrogateescape"): value.encode("utf-8", "surrogateescape")
            for key, value in os.environ.items()
        }
        env[b"PICOD_AUTH_PUBLIC_KEY"] = signer.public_pem.encode("ascii")
        log = None
        if log_path:
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            argv = [binary, "-port", str(self._port), "-workspace", self._workspace.root]
            self._proc = self._processes.spawn(
                [arg.encode("utf-8", "surrogateescape") for arg in argv],
                executable=binary.encode("utf-8", "surrogateescape"),
                cwd=self._workspace.root.encode("utf-8", "surrogateescape"),
                env=env,
                stdout=log,
                stderr=log,
            )
            error = self._proc.start_error()
            if error is not None:
                raise error
        except OSError as exc:
            self._processes.close()
            self._workspace.close()
            raise SandboxStartError(f"cannot start PicoD {binary!r}: {exc}") from None
        finally:
            if log is not None:
                os.close(log)
        try:
            self._wait_listening(ready_timeout)
        except BaseException:
            self.close()
            raise

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status = self._proc.poll()
            if status is not None:
                raise SandboxStartError(f"PicoD exited with status {status} before listening")
            try:
                with socket.create_connection(("127.0.0.1", self._port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise SandboxStartError(f"PicoD did not listen on port {self._port} in time")
            time.sleep(0.02)

    @property
    def workspace(self) -> str:
        return self._workspace.root

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def port(self) -> int:
        return self._port

    def endpoint(self) -> str:
        return f"127.0.0.1:{self._port}"

    def handle(self, request: Request, session_id: str) -> Response:
        if self._closed:
            raise Unreachable(502, "sandbox unreachable")
        headers = request.headers.copy()
        headers.set("Authorization", "Bearer " + self._signer.token(session_id))
        return forward("127.0.0.1", self._port, request, headers)

    def close(self) -> None:
        """Stop PicoD (and whatever it started: SIGTERM, 2 s, SIGKILL); remove the workspace."""
        self._closed = True
        self._processes.close(grace=2.0)
        try:
            self._proc.wait(5.0)
        except subprocess.TimeoutExpired:
            logger.warning("PicoD (pid %s) did not exit", self._proc.pid)
        self._processes.finished(self._proc)
        self._workspace.close()
        if self._log_path:
            try:
                os.unlink(self._log_path)
            except OSError:
                pass


class EchoAgent:
    """The built-in agent: POST echoes the body back, GET is 404 like a real agent's."""

    workspace: str | None = None
    closed = False

    def __init__(self, endpoint: Callable[[], str]) -> None:
        self._endpoint = endpoint

    def endpoint(self) -> str:
        return self._endpoint()

    def handle(self, request: Request, session_id: str) -> Response:
        subpath = request.path[1:] if request.path.startswith("/") else request.path
        if request.method != "POST":
            return json_response(404, {"error": "not found"})
        parts: list[bytes] = []
        size = 0
        try:
            while chunk := request.body.read(64 * 1024):
                parts.append(chunk)
                size += len(chunk)
                if size > _ECHO_BODY_LIMIT:
                    return json_response(413, {"error": "request body too large"})
        except BodyReadError as exc:
            return json_response(400, {"error": str(exc)})
        data = b"".join(parts)
        payload: object
        try:
            payload = json.loads(data, parse_constant=_no_constants)
        except (ValueError, RecursionError):
            payload = data.decode("utf-8", "replace")
        try:
            return json_response(200, {"echo": payload, "path": subpath})
        except ValueError:  # a number JSON cannot carry back (1e310)
            text = data.decode("utf-8", "replace")
            return json_response(200, {"echo": text, "path": subpath})

    def close(self) -> None:
        pass


def _no_constants(name: str) -> object:
    raise ValueError(name)


def validate_agent_url(url: str) -> tuple[str, int, str]:
    """``(host, port, base_path)`` of an agent URL; ValueError unless it is http on loopback."""
    if not isinstance(url, str):
        raise ValueError("agent URL must be a string")
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"agent URL {url!r} must start with http://")
    host = parts.hostname
    if not host:
        raise ValueError(f"agent URL {url!r} has no host")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"agent URL {url!r} must point at a loopback address") from None
    if not address.is_loopback:
        raise ValueError(f"agent URL {url!r} must point at a loopback address")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"agent URL {url!r} has an invalid port") from None
    return host, port, parts.path or "/"


class ForwardingAgent:
    """An agent template backed by the user's own agent server on loopback."""

    workspace: str | None = None
    closed = False

    def __init__(self, name: str, url: str, signer: Callable[[], Signer | None]) -> None:
        self._name = name
        self._host, self._port, self._base_path = validate_agent_url(url)
        self._signer = signer

    def endpoint(self) -> str:
        return f"{self._host}:{self._port}"

    def handle(self, request: Request, session_id: str) -> Response:
        headers = request.headers.copy()
        signer = self._signer()
        if signer is not None:
            headers.set("Authorization", "Bearer " + signer.token(session_id))
        base = self._base_path.rstrip("/")
        forwarded = Request(
            method=request.method,
            path=base + request.path if base else request.path,
            raw_query=request.raw_query,
            headers=headers,
            body=request.body,
            content_length=request.content_length,
            remote_addr=request.remote_addr,
        )
        return forward(self._host, self._port, forwarded, headers)

    def close(self) -> None:
        pass


__all__ = [
    "BuiltinCodeInterpreter",
    "EchoAgent",
    "ForwardingAgent",
    "GoResponse",
    "Headers",
    "PicodProcess",
    "Sandbox",
    "SandboxGone",
    "SandboxStartError",
    "Unreachable",
    "validate_agent_url",
]
