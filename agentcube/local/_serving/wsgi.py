"""The bridge between the WSGI server and the Go-shaped apps: requests in, responses out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .._go.gin import BodyReadError, GoResponse, Headers, Request, Response, status_text
from .._go.stdlib import canonical_header, unescape_path
from .forward import ReadDeadline
from .keepalive import CLOSE_CONNECTION, RAW_HEADERS, READ_DEADLINE, REQUEST_START

__all__ = ["CLOSE_CONNECTION", "RAW_HEADERS", "READ_DEADLINE", "REQUEST_START"]

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

SESSION_HEADER = "x-agentcube-session-id"


class BadRequestLine(Exception):
    """The request target cannot be parsed (Go's server answers a bare 400)."""


def _wire_text(value: str) -> str:
    return value.encode("utf-8", "surrogateescape").decode("latin-1")


def _from_wire(value: str) -> str:
    try:
        return value.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value


def build_request(environ: WSGIEnvironment) -> Request:
    """The request as a Go server sees it: decoded path, raw query, headers, body."""
    raw_target = _from_wire(str(environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/"))
    if "://" in raw_target.split("?", 1)[0]:
        from urllib.parse import urlsplit

        parts = urlsplit(raw_target)
        raw_path, raw_query = parts.path or "/", parts.query
    else:
        raw_path, _, raw_query = raw_target.partition("?")
    path = unescape_path(raw_path)
    if path is None:
        raise BadRequestLine(raw_target)
    raw_headers = environ.get(RAW_HEADERS)
    if raw_headers is None:
        raw_headers = [
            (key[5:].replace("_", "-").title(), str(value))
            for key, value in environ.items()
            if key.startswith("HTTP_")
        ]
        if environ.get("CONTENT_TYPE"):
            raw_headers.append(("Content-Type", str(environ["CONTENT_TYPE"])))
        if environ.get("CONTENT_LENGTH"):
            raw_headers.append(("Content-Length", str(environ["CONTENT_LENGTH"])))
    headers = Headers(
        (canonical_header(name), _from_wire(value).strip(" \t")) for name, value in raw_headers
    )
    if environ.get("wsgi.input_terminated"):
        length = -1
    else:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
    remote = f"{environ.get('REMOTE_ADDR', '127.0.0.1')}:{environ.get('REMOTE_PORT', 0)}"
    return Request(
        method=str(environ.get("REQUEST_METHOD", "GET")),
        path=path,
        raw_query=raw_query,
        headers=headers,
        body=_GoBody(environ["wsgi.input"]),
        content_length=length,
        remote_addr=remote,
        host=headers.get("Host") or "",
    )


class _GoBody:
    """The body as Go's server hands it on: a broken one reads as an error, not a crash."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self._raw.read(size if size is not None and size >= 0 else 64 * 1024))
        except TimeoutError:
            raise
        except (OSError, ValueError) as exc:  # a broken chunk, a client gone
            raise BodyReadError(str(exc) or "unexpected EOF") from None
        except Exception as exc:  # werkzeug's BadRequest / ClientDisconnected
            if type(exc).__name__ in ("MalformedBody", "ClientDisconnected", "BadRequest"):
                raise BodyReadError("unexpected EOF") from None
            raise


class DeadlineBody:
    """The request body, which must have arrived by ``deadline`` (monotonic seconds, from
    the request's start): a read that has to wait past it raises ReadDeadline.

    The deadline is the connection's (``READ_DEADLINE``), so it bounds the request as a whole
    however its reads are split; without a server that offers one, each read checks it.
    """

    def __init__(self, raw: Any, deadline: float, environ: WSGIEnvironment) -> None:
        self._raw = raw
        self._deadline = deadline
        self._environ = environ
        set_deadline = environ.get(READ_DEADLINE)
        self._enforced = set_deadline is not None
        if set_deadline is not None:
            set_deadline(deadline)

    def read(self, size: int = -1) -> bytes:
        if not self._enforced and time.monotonic() >= self._deadline:
            self._expire()
        try:
            return bytes(self._raw.read(size if size is not None and size >= 0 else 64 * 1024))
        except TimeoutError:
            self._expire()
        raise AssertionError("unreachable")

    def _expire(self) -> None:
        self._environ[CLOSE_CONNECTION] = True
        raise ReadDeadline()


def respond(
    response: Response,
    start_response: StartResponse,
    *,
    decompress: bool = False,
    extra_headers: Iterable[tuple[str, str]] = (),
    on_close: Callable[[], None] | None = None,
) -> Iterable[bytes]:
    """Send a Go-shaped response through WSGI (Content-Length when it has one, else chunked)."""
    try:
        body = response.wire(decompress)
        for name, value in extra_headers:
            response.headers.set(name, value)
        headers = [(name, _wire_text(value)) for name, value in response.headers.items()]
        start_response(f"{response.status} {status_text(response.status)}", headers)
    except BaseException:
        response.close()
        if on_close is not None:
            on_close()
        raise
    return _Closing(body, response, on_close)


class _Closing:
    def __init__(
        self, body: Iterable[bytes], response: Response, on_close: Callable[[], None] | None
    ) -> None:
        self._body = body
        self._response = response
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            if self._on_close is not None:
                self._on_close()


def request_path(environ: dict[str, Any]) -> str:
    """The request path as text (PATH_INFO undone from WSGI's latin-1 encoding)."""
    raw = str(environ.get("PATH_INFO", ""))
    try:
        return raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return raw


def plain_response(status: int, body: bytes, content_type: str = "text/plain") -> GoResponse:
    return GoResponse(status, Headers([("Content-Type", content_type)]), body)
