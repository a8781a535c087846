"""A code-interpreter session served by a real PicoD binary, one process per session."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time

from .._go.gin import Request, Response
from .._serving.forward import Unreachable, forward
from .._serving.jwt import Signer
from . import SandboxStartError
from .paths import Workspace
from .procs import ProcessSupervisor

logger = logging.getLogger(__name__)

PICOD_READY_TIMEOUT = 15.0


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
