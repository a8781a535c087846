"""The built-in code-interpreter sandbox: PicoD's HTTP API, answered as PicoD answers it.

PicoD is a gin server: a 32 MiB body cap, gin-contrib/gzip (BestSpeed), then the routes
``POST api/execute``, ``POST api/files``, ``GET api/files``, ``GET api/files/*path`` and
``GET health``. Everything here follows volcano-sh/agentcube's ``pkg/picod`` as the
conformance corpus recorded it; the differences are deliberate (see the package docs).

The engine is here; the handlers are in :mod:`.execute` and :mod:`.files`, over the session's
state (its workspace and its processes, from :mod:`.._sandbox`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .._go.gin import (
    JSON_TYPE,
    GinRoutes,
    GoResponse,
    Headers,
    MaxBytesReader,
    Request,
    Response,
    not_found,
    trailing_slash_redirect,
)
from .._go.stdlib import ext, format_duration, gin_h, go_json
from .._sandbox import SandboxGone
from .._sandbox.paths import Workspace, WorkspaceGone
from .._sandbox.procs import ProcessSupervisor, Supervisor
from .context import PicodContext
from .execute import Execute
from .files import Files

DEFAULT_MAX_BODY_BYTES = 32 << 20
DEFAULT_MAX_OUTPUT_BYTES = 64 << 20
_NO_GZIP_EXTENSIONS = frozenset({".png", ".gif", ".jpeg", ".jpg"})


class BuiltinPicod:
    """PicoD for one session: a workspace, its processes and the HTTP API."""

    def __init__(
        self,
        workspace: str,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        staging_dir: str | None = None,
        processes: Supervisor | None = None,
    ) -> None:
        self.workspace = Workspace(workspace)
        self.workspace.create()
        self.processes = ProcessSupervisor() if processes is None else processes
        self._max_body = max_body_bytes
        self._started = time.monotonic_ns()
        self._closed = False
        self._lock = threading.Lock()
        files = Files(self.workspace, staging_dir)
        routes = GinRoutes()
        routes.add(
            "POST", "/api/execute", Execute(self.workspace, self.processes, max_output_bytes)
        )
        routes.add("POST", "/api/files", files.upload)
        routes.add("GET", "/api/files", files.list_files)
        routes.add("GET", "/api/files/*path", files.download)
        routes.add("GET", "/health", self._health)
        self._routes = routes

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Kill every process the session started and remove the workspace."""
        with self._lock:
            self._closed = True
        self.processes.close()
        self.workspace.close()

    # -- the engine -------------------------------------------------------------------------------
    def handle(self, request: Request) -> GoResponse:
        """Answer one request as PicoD's gin engine would."""
        if self._closed:
            raise SandboxGone()
        found = self._routes.lookup(request.method, request.path)
        if isinstance(found, str):
            return trailing_slash_redirect(request, found)
        if request.content_length > self._max_body:
            return GoResponse(
                413,
                Headers([("Content-Type", JSON_TYPE)]),
                go_json(
                    gin_h(
                        error="request body too large",
                        detail=f"maximum allowed size is {self._max_body} bytes",
                    )
                ),
            )
        request.body = MaxBytesReader(request.body, self._max_body)
        compress = self._should_compress(request)
        if found is None:
            return not_found(gzip=compress)
        handler, params = found
        headers = Headers()
        if compress:
            headers.set("Content-Encoding", "gzip")
            headers.set("Vary", "Accept-Encoding")
        try:
            response: GoResponse = handler(PicodContext(request, params, headers, compress))
        except WorkspaceGone:
            raise SandboxGone() from None
        if self._closed:
            response.close()
            raise SandboxGone()
        return response

    @staticmethod
    def _should_compress(request: Request) -> bool:
        headers = request.headers
        if "gzip" not in (headers.get("Accept-Encoding") or ""):
            return False
        if "Upgrade" in (headers.get("Connection") or ""):
            return False
        if "text/event-stream" in (headers.get("Accept") or ""):
            return False
        if ext(request.path) in _NO_GZIP_EXTENSIONS:
            return False
        return not request.path.startswith("/health")

    # -- GET health ------------------------------------------------------------------------------
    def _health(self, c: PicodContext) -> GoResponse:
        uptime = format_duration(time.monotonic_ns() - self._started)
        return c.json(200, gin_h(status="ok", service="PicoD", version="0.0.1", uptime=uptime))


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
