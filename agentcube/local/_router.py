"""The Router (data plane): forwards invocations to the sandbox a session id names."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, PathConverter, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import ClosingIterator

from ._store import ROUTER_SEGMENTS, Session, SessionStore, StoreClosed, UnknownTemplate
from ._wsgi import SESSION_HEADER, bearer_ok, json_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

_HEALTH_PATHS = frozenset({"/health/live", "/health/ready"})
_PLURAL_PATTERN = "any(" + ", ".join(f"'{s}'" for s in sorted(ROUTER_SEGMENTS)) + ")"
_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


class _RestConverter(PathConverter):
    """Everything after ``invocations/``: may be empty, may start with or contain ``//``."""

    regex = "(?s:.*)"
    part_isolating = False


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


class RouterApp:
    """WSGI app speaking the Router part of the wire contract."""

    def __init__(self, store: SessionStore, *, token: str | None) -> None:
        self._store = store
        self._token = token
        self._map = Map(
            [
                Rule("/health/live", endpoint="health", methods=["GET"]),
                Rule("/health/ready", endpoint="health", methods=["GET"]),
                Rule(
                    f"/v1/namespaces/<namespace>/<{_PLURAL_PATTERN}:plural>/<name>/invocations",
                    endpoint="invoke_bare",
                    methods=_METHODS,
                ),
                Rule(
                    f"/v1/namespaces/<namespace>/<{_PLURAL_PATTERN}:plural>/<name>"
                    "/invocations/<rest:subpath>",
                    endpoint="invoke",
                    methods=_METHODS,
                ),
            ],
            strict_slashes=False,
            merge_slashes=False,
            converters={"rest": _RestConverter},
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        session: Session | None = None
        try:
            response, session = self._dispatch(request)
        except Exception:
            logger.exception("Router failed on %s %s", request.method, request.path)
            response = _error(500, "internal error")
        if session is None:
            return response(environ, start_response)
        acquired = session
        try:
            body = response(environ, start_response)
        except BaseException:
            self._store.release(acquired)
            raise
        return ClosingIterator(body, [lambda: self._store.release(acquired)])

    def _dispatch(self, request: Request) -> tuple[Response, Session | None]:
        if request.path not in _HEALTH_PATHS and not bearer_ok(request, self._token):
            return _error(401, "unauthorized"), None
        adapter = self._map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except RequestRedirect:
            return _error(404, "not found"), None
        except HTTPException as exc:
            if exc.code == 405:
                return _error(405, "method not allowed"), None
            return _error(exc.code or 404, "not found"), None
        if endpoint == "health":
            return json_response(200, {"status": "ok"}), None
        return self._invoke(
            request,
            namespace=str(args["namespace"]),
            kind=ROUTER_SEGMENTS[args["plural"]],
            name=str(args["name"]),
            subpath=str(args.get("subpath", "")),
        )

    def _invoke(
        self, request: Request, *, namespace: str, kind: str, name: str, subpath: str
    ) -> tuple[Response, Session | None]:
        session_id = request.headers.get(SESSION_HEADER, "").strip()
        if not session_id:
            try:
                created = self._store.create(kind, name, namespace)
            except UnknownTemplate:
                return _error(404, f"{kind} {name!r} not found in namespace {namespace!r}"), None
            except StoreClosed:
                return _error(503, "server is shutting down"), None
            session_id = created.session_id
        session = self._store.acquire(session_id, kind, name, namespace)
        if session is None:
            return _error(404, "session not found"), None
        try:
            response = session.sandbox.handle(request, subpath, session_id)
        except HTTPException as exc:
            response = _error(exc.code or 500, exc.description or "error")
        except Exception:
            logger.exception("sandbox of session %s failed on %s", session_id, subpath)
            response = _error(500, "internal error")
        response.headers[SESSION_HEADER] = session_id
        return response, session
