"""The WorkloadManager (control plane): creates and deletes sessions."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from ._store import (
    CONTROL_SEGMENTS,
    KIND_TO_ROUTER_SEGMENT,
    SessionStore,
    StoreClosed,
    UnknownTemplate,
)
from ._wsgi import BadBody, bearer_ok, json_response, read_json_object

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

_MAX_BODY = 8 * 1024 * 1024
_OWNER_ID = "local"
_SEGMENT_PATTERN = "any(" + ", ".join(f"'{s}'" for s in sorted(CONTROL_SEGMENTS)) + ")"


def _error(status: int, message: str) -> Response:
    return json_response(status, {"message": message})


class WorkloadManagerApp:
    """WSGI app speaking the WorkloadManager part of the wire contract."""

    def __init__(
        self,
        store: SessionStore,
        *,
        token: str | None,
        router_endpoint: Callable[[], str],
    ) -> None:
        self._store = store
        self._token = token
        self._router_endpoint = router_endpoint
        self._map = Map(
            [
                Rule("/health", endpoint="health", methods=["GET"]),
                Rule(f"/v1/<{_SEGMENT_PATTERN}:segment>", endpoint="create", methods=["POST"]),
                Rule(
                    f"/v1/<{_SEGMENT_PATTERN}:segment>/sessions/<session_id>",
                    endpoint="delete",
                    methods=["DELETE"],
                ),
            ],
            strict_slashes=False,
            merge_slashes=False,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except Exception:
            logger.exception("WorkloadManager failed on %s %s", request.method, request.path)
            response = _error(500, "internal error")
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        if request.path != "/health" and not bearer_ok(request, self._token):
            return _error(401, "unauthorized")
        adapter = self._map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except RequestRedirect:
            return _error(404, "not found")
        except HTTPException as exc:
            if exc.code == 405:
                return _error(405, "method not allowed")
            return _error(exc.code or 404, "not found")
        if endpoint == "health":
            return json_response(200, {"status": "healthy"})
        if endpoint == "create":
            return self._create(request, CONTROL_SEGMENTS[args["segment"]])
        return self._delete(str(args["session_id"]))

    def _create(self, request: Request, kind: str) -> Response:
        try:
            body = read_json_object(request, _MAX_BODY, too_large_status=400)
        except BadBody as exc:
            return _error(exc.status, exc.message)
        name = body.get("name")
        namespace = body.get("namespace")
        if not isinstance(name, str) or not name:
            return _error(400, "name is required and must be a non-empty string")
        if not isinstance(namespace, str) or not namespace:
            return _error(400, "namespace is required and must be a non-empty string")
        try:
            ttl = _parse_ttl(body.get("ttl"))
        except ValueError as exc:
            return _error(400, str(exc))
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            return _error(400, "metadata must be an object")
        try:
            session = self._store.create(kind, name, namespace, ttl)
        except UnknownTemplate:
            return _error(404, f"{kind} template {name!r} not found in namespace {namespace!r}")
        except StoreClosed:
            return _error(503, "server is shutting down")
        segment = KIND_TO_ROUTER_SEGMENT[kind]
        return json_response(
            200,
            {
                "kind": kind,
                "sessionId": session.session_id,
                "sandboxId": session.sandbox_id,
                "sandboxName": session.sandbox_name,
                "entryPoints": [
                    {
                        "path": f"/v1/namespaces/{namespace}/{segment}/{name}/invocations/",
                        "protocol": "HTTP",
                        "endpoint": self._router_endpoint(),
                    }
                ],
                "ownerId": _OWNER_ID,
            },
        )

    def _delete(self, session_id: str) -> Response:
        if self._store.delete(session_id):
            return json_response(200, {"message": "Sandbox deleted successfully"})
        return _error(404, f"session {session_id} not found, maybe already deleted")


def _parse_ttl(value: Any) -> float | None:
    """``ttl`` in seconds; missing, null or 0 means the server default."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("ttl must be a number of seconds")
    try:
        ttl = float(value)
    except OverflowError:
        raise ValueError("ttl is too large") from None
    if not math.isfinite(ttl) or ttl < 0:
        raise ValueError("ttl must be a non-negative finite number of seconds")
    return ttl or None
