"""The Router (data plane): forwards invocations to the sandbox a session id names.

Like volcano-sh/agentcube's Router: gin routes GET and POST only; with no session header it
creates a session first; the session id alone decides where a request goes; the answer of a
sandbox carries ``x-agentcube-session-id``, the Router's own answers never do.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ._go.gin import (
    GinRoutes,
    GoResponse,
    Headers,
    Request,
    json_response,
    not_found,
    trailing_slash_redirect,
)
from ._go.stdlib import gin_h, go_quote
from ._kinds import LocalKind
from ._sandbox import SandboxGone, SandboxStartError
from ._serving.forward import ReadDeadline, Unreachable, refused_by_transport, remove_hop_by_hop
from ._serving.wsgi import (
    CLOSE_CONNECTION,
    REQUEST_START,
    SESSION_HEADER,
    BadRequestLine,
    DeadlineBody,
    build_request,
    plain_response,
    respond,
)
from ._store import Session, SessionStore, StoreClosed, UnknownTemplate

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 1000
DEFAULT_READ_TIMEOUT = 30.0


def _router_error(status: int, message: str, **extra: str) -> GoResponse:
    return json_response(status, gin_h(error=message, **extra))


class RouterApp:
    """WSGI app speaking the Router part of the wire contract."""

    def __init__(
        self,
        store: SessionStore,
        *,
        token: str | None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self._store = store
        self._token = token
        self._read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._kinds: dict[str, LocalKind] = {
            kind.router_segment: kind for kind in store.templates.kinds
        }
        routes = GinRoutes()
        routes.add("GET", "/health/live", self._live)
        routes.add("GET", "/health/ready", self._ready)
        for segment in self._kinds:
            pattern = f"/v1/namespaces/:namespace/{segment}/:name/invocations/*path"
            routes.add("GET", pattern, self._invoke)
            routes.add("POST", pattern, self._invoke)
        self._routes = routes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            request = build_request(environ)
        except BadRequestLine:
            environ[CLOSE_CONNECTION] = True
            return respond(
                plain_response(400, b"400 Bad Request", "text/plain; charset=utf-8"), start_response
            )
        started = float(environ.get(REQUEST_START) or time.monotonic())
        request.body = DeadlineBody(request.body, started + self._read_timeout, environ)
        found = self._routes.lookup(request.method, request.path)
        if isinstance(found, str):
            return respond(trailing_slash_redirect(request, found), start_response)
        if found is None:
            return respond(not_found(), start_response)
        handler, params = found
        if handler in (self._live, self._ready):
            return respond(handler(), start_response)
        denied = self._authenticate(request)
        if denied is not None:
            return respond(denied, start_response)
        if not self._slots.acquire(blocking=False):
            return respond(
                _router_error(
                    429, "server overloaded, please try again later", code="SERVER_OVERLOADED"
                ),
                start_response,
            )
        release = _Once(self._slots.release)
        try:
            return self._invoke(request, params, start_response, environ, release)
        except BaseException:
            release()
            raise

    # -- health ----------------------------------------------------------------------------------
    @staticmethod
    def _live() -> GoResponse:
        return json_response(200, {"status": "alive"})

    @staticmethod
    def _ready() -> GoResponse:
        return json_response(200, {"status": "ready"})

    # -- auth -------------------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> GoResponse | None:
        if self._token is None:
            return None
        header = request.headers.get("Authorization") or ""
        if not header:
            return _router_error(401, "missing authorization header", code="UNAUTHORIZED")
        scheme, sep, token = header.partition(" ")
        if not sep or scheme.lower() != "bearer":
            return _router_error(401, "invalid authorization header format", code="UNAUTHORIZED")
        token = token.strip(" \t")
        if not token:
            return _router_error(401, "empty bearer token", code="UNAUTHORIZED")
        import hmac

        if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), self._token.encode()):
            return _router_error(401, "invalid or expired token", code="UNAUTHORIZED")
        return None

    # -- invocations ------------------------------------------------------------------------------
    def _invoke(
        self,
        request: Request,
        params: dict[str, str],
        start_response: StartResponse,
        environ: WSGIEnvironment,
        release: Callable[[], None],
    ) -> Iterable[bytes]:
        kind = self._kinds[request.path.split("/")[4]]
        namespace, name = params["namespace"], params["name"]
        session_id = request.headers.get(SESSION_HEADER) or ""
        session: Session | None
        if not session_id:
            try:
                session = self._store.create(kind, name, namespace)
            except UnknownTemplate:
                resource = f"{kind.resource}.agentcube.volcano.sh"
                message = f"{resource} {go_quote(namespace + '/' + name)} not found"
                return respond(_router_error(404, message), start_response, on_close=release)
            except (StoreClosed, SandboxStartError, OSError):
                logger.exception("the Router could not create a %s session", kind.name)
                return respond(
                    _router_error(500, "internal server error"), start_response, on_close=release
                )
        else:
            session = self._store.get(session_id)
            if session is None:
                message = f"sessions.agentcube.volcano.sh {go_quote(session_id)} not found"
                return respond(_router_error(404, message), start_response, on_close=release)
        self._store.touch(session)
        store, current = self._store, session

        def finished() -> None:
            store.touch(current)
            release()

        upstream, transport_gzip = _upstream_request(request, params["path"])
        try:
            if session.sandbox.closed:
                raise Unreachable(502, "sandbox unreachable")
            response = session.sandbox.handle(upstream, session.session_id)
        except ReadDeadline:
            environ[CLOSE_CONNECTION] = True
            return respond(_router_error(504, "sandbox timeout"), start_response, on_close=finished)
        except Unreachable as exc:
            return respond(
                _router_error(exc.status, exc.message), start_response, on_close=finished
            )
        except SandboxGone:
            return respond(
                _router_error(503, "sandbox unreachable"), start_response, on_close=finished
            )
        except Exception:
            logger.exception("sandbox of session %s failed", session.session_id)
            return respond(
                _router_error(503, "sandbox unreachable"), start_response, on_close=finished
            )
        if refused_by_transport(response.headers):
            response.close()
            return respond(
                _router_error(503, "sandbox unreachable"), start_response, on_close=finished
            )
        remove_hop_by_hop(response.headers)
        return respond(
            response,
            start_response,
            decompress=transport_gzip,
            extra_headers=[(SESSION_HEADER, session.session_id)],
            on_close=finished,
        )


class _Once:
    """Call ``func`` at most once."""

    def __init__(self, func: Callable[[], None]) -> None:
        self._func: Callable[[], None] | None = func
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            func, self._func = self._func, None
        if func is not None:
            func()


def _client_ip(request: Request) -> str:
    """gin's ``c.ClientIP()`` (every proxy trusted, as gin's default)."""
    for name in ("X-Forwarded-For", "X-Real-Ip"):
        value = request.headers.get(name)
        if not value:
            continue
        items = [item.strip() for item in value.split(",")]
        for index in range(len(items) - 1, -1, -1):
            try:
                ipaddress.ip_address(items[index])
            except ValueError:
                break
            if index == 0:
                return items[0]
    return request.remote_addr.rsplit(":", 1)[0].strip("[]")


def _upstream_request(request: Request, path: str) -> tuple[Request, bool]:
    """The request the Router's ReverseProxy sends on, and whether its transport asked for
    gzip on its own (then it undoes it)."""
    headers = request.headers.copy()
    upgrade = ""
    if any("upgrade" in v.lower() for v in headers.get_all("Connection")):
        upgrade = headers.get("Upgrade") or ""
    keep_te = any("trailers" in v.lower() for v in headers.get_all("Te"))
    headers.delete("Authorization")
    headers.set("X-Forwarded-Host", request.host)
    headers.set("X-Forwarded-Proto", "http")
    client_ip = _client_ip(request)
    prior = ", ".join(request.headers.get_all("X-Forwarded-For"))
    forwarded_for = f"{prior}, {client_ip}" if prior else client_ip
    remove_hop_by_hop(headers)
    if keep_te:
        headers.set("Te", "trailers")
    if upgrade:
        headers.set("Connection", "Upgrade")
        headers.set("Upgrade", upgrade)
    remote_ip = request.remote_addr.rsplit(":", 1)[0].strip("[]")
    headers.set("X-Forwarded-For", f"{forwarded_for}, {remote_ip}")
    transport_gzip = False
    if (
        headers.get("Accept-Encoding") is None
        and headers.get("Range") is None
        and request.method != "HEAD"
    ):
        headers.set("Accept-Encoding", "gzip")
        transport_gzip = True
    upstream = Request(
        method=request.method,
        path=path if path.startswith("/") or not path else "/" + path,
        raw_query=request.raw_query,
        headers=headers,
        body=request.body,
        content_length=request.content_length,
        remote_addr=request.remote_addr,
        host=request.host,
    )
    return upstream, transport_gzip


__all__ = ["DEFAULT_MAX_IN_FLIGHT", "DEFAULT_READ_TIMEOUT", "Headers", "RouterApp"]
