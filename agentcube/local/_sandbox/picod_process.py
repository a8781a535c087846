"""A code-interpreter session served by a real PicoD binary, one process per session.

PicoD's own output (its request log) goes to an anonymous temporary file outside the
AgentCube root: nothing a session can see, nothing left behind (it goes with the
descriptor); its tail is told when PicoD exits before listening.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import tempfile
import time

from .._go.gin import Request, Response
from .._serving.forward import Unreachable, forward
from .._serving.jwt import Signer
from . import SandboxStartError
from .paths import Workspace
from .procs import ProcessSupervisor

logger = logging.getLogger(__name__)

PICOD_READY_TIMEOUT = 15.0
_LOG_TAIL = 2048


def to_picod(
    closed: bool,
    port: int,
    request: Request,
    session_id: str,
    signer: Signer | None,
    unix_path: str | None = None,
) -> Response:
    """Forward ``request`` to a session's PicoD on ``port`` (through ``unix_path`` when the
    sandbox has no network of its own), signed as the real Router signs it when ``signer`` is
    given (a real PicoD checks the signature; the built-in one has none to check)."""
    if closed:
        raise Unreachable(502, "sandbox unreachable")
    authorization = None if signer is None else "Bearer " + signer.token(session_id)
    return forward("127.0.0.1", port, request, authorization=authorization, unix_path=unix_path)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now."""
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
        ready_timeout: float = PICOD_READY_TIMEOUT,
    ) -> None:
        self._workspace = Workspace(workspace)
        self._workspace.create()
        self._signer = signer
        self._port = free_port()
        self._processes = ProcessSupervisor()
        self._closed = False
        self._log = tempfile.TemporaryFile(prefix="agentcube-picod-")
        env = {
            key.encode("utf-8", "surrogateescape"): value.encode("utf-8", "surrogateescape")
            for key, value in os.environ.items()
        }
        env[b"PICOD_AUTH_PUBLIC_KEY"] = signer.public_pem.encode("ascii")
        try:
            argv = [binary, "-port", str(self._port), "-workspace", self._workspace.root]
            self._proc = self._processes.spawn(
                [arg.encode("utf-8", "surrogateescape") for arg in argv],
                executable=binary.encode("utf-8", "surrogateescape"),
                cwd=self._workspace.root.encode("utf-8", "surrogateescape"),
                env=env,
                stdout=self._log.fileno(),
                stderr=self._log.fileno(),
            )
            error = self._proc.start_error()
            if error is not None:
                raise error
        except OSError as exc:
            self._processes.close()
            self._workspace.close()
            self._log.close()
            raise SandboxStartError(f"cannot start PicoD {binary!r}: {exc}") from None
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
                raise SandboxStartError(
                    f"PicoD exited with status {status} before listening: {self._log_tail()!r}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self._port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise SandboxStartError(f"PicoD did not listen on port {self._port} in time")
            time.sleep(0.02)

    def _log_tail(self) -> str:
        size = os.fstat(self._log.fileno()).st_size
        tail = os.pread(self._log.fileno(), _LOG_TAIL, max(0, size - _LOG_TAIL))
        return tail.decode("utf-8", "replace").strip()

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
        return to_picod(self._closed, self._port, request, session_id, self._signer)

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
        self._log.close()
