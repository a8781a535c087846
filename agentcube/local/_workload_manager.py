"""The WorkloadManager (control plane): creates and deletes sessions.

As volcano-sh/agentcube's WorkloadManager: the create body is read as ``{name, namespace}``
(anything else is ignored), every error body is ``{"message": ...}``, and the two DELETE
routes share one handler (the session id alone decides). One route is this server's own, not
AgentCube's: :data:`SESSIONS_PATH`, the live sessions for ``agentcube-local sessions``.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._go.binding import CREATE_SANDBOX_REQUEST, BindError, bind
from ._go.gin import (
    BodyReadError,
    GinRoutes,
    GoResponse,
    MaxBytesReader,
    Request,
    json_response,
    not_found,
    read_all,
    trailing_slash_redirect,
)
from ._kinds import LocalKind
from ._sandbox import SandboxStartError
from ._serving.wsgi import CLOSE_CONNECTION, BadRequestLine, build_request, plain_response, respond
from ._store import SessionStore, StoreClosed, UnknownTemplate

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

_MAX_BODY = 32 << 20  # the real one reads any size; this is a safety cap


# Not part of AgentCube's API: what `agentcube-local sessions` reads, answered to loopback only.
SESSIONS_PATH = "/agentcube-local/v1/sessions"


def _error(status: int, message: str) -> GoResponse:
    return json_response(status, {"message": message})


class WorkloadManagerApp:
    """WSGI app speaking the WorkloadManager part of the wire contract."""

    def __init__(self, store: SessionStore, *, token: str | None) -> None:
        self._store = store
        self._token = token
        self._kinds: dict[str, LocalKind] = {
            kind.control_plane_segment: kind for kind in store.templates.kinds
        }
        routes = GinRoutes()
        routes.add("GET", "/health", self._health)
        routes.add("GET", SESSIONS_PATH, self._sessions)
        for segment in self._kinds:
            routes.add("POST", f"/v1/{segment}", self._create)
            routes.add("DELETE", f"/v1/{segment}/sessions/:sessionId", self._delete)
        self._routes = routes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            request = build_request(environ)
        except BadRequestLine:
            environ[CLOSE_CONNECTION] = True
            response = plain_response(400, b"400 Bad Request", "text/plain; charset=utf-8")
            return respond(response, start_response)
        found = self._routes.lookup(request.method, request.path)
        if isinstance(found, str):
            return respond(trailing_slash_redirect(request, found), start_response)
        if found is None:
            return respond(not_found(), start_response)
        handler, params = found
        if handler != self._health:
            denied = self._authenticate(request)
            if denied is not None:
                return respond(denied, start_response)
        try:
            response = handler(request, params)
        except Exception:
            logger.exception("WorkloadManager failed on %s %s", request.method, request.path)
            response = _error(500, "internal server error")
        return respond(response, start_response)

    def _authenticate(self, request: Request) -> GoResponse | None:
        if self._token is None:
            return None
        header = request.headers.get("Authorization") or ""
        if not header:
            return _error(401, "Missing authorization header")
        parts = header.split()
        if len(parts) != 2 or parts[0] != "Bearer":
            return _error(401, "Invalid authorization header format")
        import hmac

        if not hmac.compare_digest(
            parts[1].encode("utf-8", "surrogateescape"), self._token.encode("utf-8")
        ):
            return _error(401, "Invalid or expired token")
        return None

    @staticmethod
    def _health(request: Request, params: dict[str, str]) -> GoResponse:
        return json_response(200, {"status": "healthy"})

    def _sessions(self, request: Request, params: dict[str, str]) -> GoResponse:
        """The live sessions, oldest first (local only; see :data:`SESSIONS_PATH`)."""
        host = request.remote_addr.rsplit(":", 1)[0].strip("[]")
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return _error(403, "the session list is served to loopback clients only")
        now = time.time()
        sessions = [
            {
                "sessionId": info.session_id,
                "kind": info.kind,
                "template": info.name,
                "namespace": info.namespace,
                "ageSeconds": round(now - info.created_at, 3),
                "idleSeconds": round(now - info.last_used, 3),
            }
            for info in self._store.infos()
        ]
        return json_response(200, {"sessions": sessions})

    def _create(self, request: Request, params: dict[str, str]) -> GoResponse:
        kind = self._kinds[request.path.split("/")[2]]
        try:
            body = bind(read_all(MaxBytesReader(request.body, _MAX_BODY)), CREATE_SANDBOX_REQUEST)
        except (BindError, BodyReadError):
            return _error(400, "Invalid request body")
        namespace: str = body["namespace"] or ""
        name: str = body["name"] or ""
        if not namespace:
            return _error(400, "namespace is required")
        if not name:
            return _error(400, "name is required")
        try:
            session = self._store.create(kind, name, namespace)
        except UnknownTemplate:
            return _error(404, kind.not_found)
        except (StoreClosed, SandboxStartError, OSError):
            logger.exception("could not create a %s session", kind.name)
            return _error(500, "internal server error")
        answer: dict[str, Any] = {
            "kind": "Sandbox",
            "sessionId": session.session_id,
            "sandboxId": session.sandbox_id,
            "sandboxName": session.sandbox_name,
            "entryPoints": [
                {"path": "/", "protocol": "HTTP", "endpoint": session.sandbox.endpoint()}
            ],
        }
        return json_response(200, answer)

    def _delete(self, request: Request, params: dict[str, str]) -> GoResponse:
        session_id = params["sessionId"]
        if self._store.delete(session_id):
            return json_response(200, {"message": "Sandbox deleted successfully"})
        return _error(404, f"Session ID {session_id} not found, maybe already deleted")
