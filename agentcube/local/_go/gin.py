"""What the Go services are built on, as the wire shows it: requests, responses, gin's routing
(trailing-slash redirects, its plain-text 404) and context, gin-contrib/gzip, and net/http's
framing and ``MaxBytesReader``.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .stdlib import (
    MarshalError,
    canonical_header,
    clean,
    escape_path,
    go_json,
    hex_escape_non_ascii,
    html_escape,
)

logger = logging.getLogger(__name__)

#: net/http buffers this much before it must choose chunked encoding over Content-Length.
GO_CHUNKING_BUFFER = 2048
JSON_TYPE = "application/json; charset=utf-8"
NOT_FOUND_BODY = b"404 page not found"
_REASONS = {
    200: "OK",
    206: "Partial Content",
    301: "Moved Permanently",
    304: "Not Modified",
    307: "Temporary Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    416: "Requested Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def status_text(code: int) -> str:
    return _REASONS.get(code, "")


def body_allowed(status: int) -> bool:
    return not (100 <= status < 200 or status in (204, 304))


class Headers:
    """An ordered, case-insensitive, multi-valued header list."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        lower = name.lower()
        for key, value in self._items:
            if key.lower() == lower:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self._items if key.lower() == lower]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def set(self, name: str, value: str) -> None:
        self.delete(name)
        self._items.append((canonical_header(name), value))

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def delete(self, name: str) -> None:
        lower = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != lower]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        return Headers(self._items)


class BodyReadError(Exception):
    """The request body could not be read; ``str()`` is Go's error text."""


class Body(Protocol):
    """A request body: ``read(n)`` returns at most n bytes, b"" at the end."""

    def read(self, size: int = -1) -> bytes: ...


_READ_CHUNK = 64 * 1024
_BODY_TOO_LARGE = "http: request body too large"


class MaxBytesReader:
    """``http.MaxBytesReader``: reading past ``limit`` bytes fails with Go's error text."""

    def __init__(self, body: Any, limit: int) -> None:
        self._body = body
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        if self._left < 0:
            raise BodyReadError(_BODY_TOO_LARGE)
        want = _READ_CHUNK if size is None or size < 0 else size
        data = self._body.read(min(want, self._left + 1))
        if len(data) > self._left:
            self._left = -1
            raise BodyReadError(_BODY_TOO_LARGE)
        self._left -= len(data)
        return bytes(data)


def read_all(body: Any) -> bytes:
    """``io.ReadAll``."""
    parts: list[bytes] = []
    while True:
        chunk = body.read(_READ_CHUNK)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


@dataclass
class Request:
    """One HTTP request as a Go handler sees it."""

    method: str
    path: str  # decoded, as Go's URL.Path
    raw_query: str
    headers: Headers
    body: Body
    content_length: int  # -1 when unknown (chunked)
    remote_addr: str = "127.0.0.1:0"
    host: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def query_first(self, name: str) -> str:
        """``c.Query(name)``: the first value, "" when absent."""
        from urllib.parse import parse_qsl

        for key, value in parse_qsl(self.raw_query, keep_blank_values=True):
            if key == name:
                return value
        return ""


class Response(Protocol):
    """An answer: its status, headers and body, framed as it goes on the wire."""

    status: int
    headers: Headers

    def wire(self, decompress: bool = False) -> Iterable[bytes]:
        """The body; sets Content-Length in ``headers`` when the answer has a fixed length.

        ``decompress``: the caller (Go's transport) asked for gzip itself and undoes it:
        identity bytes, no Content-Encoding, no Content-Length.
        """
        ...

    def close(self) -> None: ...


def _empty_iter() -> Iterator[bytes]:
    return iter(())


class GoResponse:
    """What a Go handler wrote: status, headers, body; gzip-compressed as the middleware would.

    ``length``: a Content-Length the handler set itself (``http.ServeContent``); otherwise
    net/http gives one only when the whole (compressed) body fits its 2 KiB buffer.
    """

    def __init__(
        self,
        status: int,
        headers: Headers | None = None,
        body: bytes | Iterable[bytes] = b"",
        *,
        length: int | None = None,
        gzip: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers if headers is not None else Headers()
        self._body: Iterable[bytes] = [body] if isinstance(body, bytes) else body
        self._length = length
        self.gzip = gzip
        self._on_close = on_close

    def wire(self, decompress: bool = False) -> Iterable[bytes]:
        headers = self.headers
        if not body_allowed(self.status):
            headers.delete("Content-Length")
            return _empty_iter()
        if self.gzip:
            headers.delete("Content-Length")  # gin-contrib/gzip drops the handler's length
            if decompress and headers.get("Content-Encoding") == "gzip":
                headers.delete("Content-Encoding")
                return self._body
            return _frame(headers, gzip_stream(self._body))
        if self._length is not None:
            headers.set("Content-Length", str(self._length))
            return self._body
        return _frame(headers, iter(self._body))

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
        if self._on_close is not None:
            self._on_close()


def _frame(headers: Headers, chunks: Iterator[bytes]) -> Iterable[bytes]:
    """net/http: a body that ends within the 2 KiB buffer gets a Content-Length."""
    buffered: list[bytes] = []
    size = 0
    for chunk in chunks:
        buffered.append(chunk)
        size += len(chunk)
        if size > GO_CHUNKING_BUFFER:
            headers.delete("Content-Length")

            def rest() -> Iterator[bytes]:
                yield from buffered
                yield from chunks

            return rest()
    headers.set("Content-Length", str(size))
    return buffered


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"  # as Go's gzip.Writer, BestSpeed
_EMPTY_DEFLATE = b"\x01\x00\x00\xff\xff"  # Go's flate writer closing an empty stream


def gzip_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """gzip-compress ``chunks`` lazily (BestSpeed), framed like Go's ``gzip.Writer``."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    crc = 0
    size = 0
    yield _GZIP_HEADER
    for chunk in chunks:
        if not chunk:
            continue
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
        out = compressor.compress(chunk)
        if out:
            yield out
    tail = compressor.flush() if size else _EMPTY_DEFLATE
    yield tail + crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")


def gunzip_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Undo a gzip stream lazily (Go's transport does this for the Router)."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in chunks:
        out = decompressor.decompress(chunk)
        while decompressor.unused_data and decompressor.eof:
            data = decompressor.unused_data
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += decompressor.decompress(data)
        if out:
            yield out
    out = decompressor.flush()
    if out:
        yield out


def json_response(status: int, payload: Any) -> GoResponse:
    """gin's ``c.JSON``."""
    return GoResponse(status, Headers([("Content-Type", JSON_TYPE)]), go_json(payload))


@dataclass
class Context:
    """A gin context: the request, route params, and the headers written so far."""

    request: Request
    params: dict[str, str]
    headers: Headers
    gzip: bool

    def json(self, status: int, payload: Any) -> GoResponse:
        """gin's ``c.JSON``: when ``json.Marshal`` fails (a time outside the years 0 to 9999),
        gin records the error and writes no body: the status, the JSON type, nothing else."""
        if "Content-Type" not in self.headers:
            self.headers.set("Content-Type", JSON_TYPE)
        try:
            body = go_json(payload)
        except MarshalError as exc:
            logger.debug("answer not marshalled: %s", exc)
            body = b""
        return GoResponse(status, self.headers, body, gzip=self.gzip)

    def text_error(self, status: int, message: str) -> GoResponse:
        """``http.Error``."""
        self.headers.delete("Content-Length")
        self.headers.set("Content-Type", "text/plain; charset=utf-8")
        self.headers.set("X-Content-Type-Options", "nosniff")
        return GoResponse(status, self.headers, (message + "\n").encode(), gzip=self.gzip)


# -- routing --------------------------------------------------------------------------------------

Handler = Callable[..., Any]


@dataclass
class _Route:
    method: str
    parts: list[str]
    handler: Handler


class GinRoutes:
    """gin's router: ``:param`` and a trailing ``*catchall``; no route is a 404 or a redirect."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append(_Route(method, pattern.split("/")[1:], handler))

    def _match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        if not path.startswith("/"):
            return None
        segments = path.split("/")[1:]
        for route in self._routes:
            if route.method != method:
                continue
            params: dict[str, str] = {}
            ok = True
            for index, part in enumerate(route.parts):
                if part.startswith("*"):
                    if index >= len(segments):
                        ok = False
                        break
                    params[part[1:]] = "/" + "/".join(segments[index:])
                    break
                if index >= len(segments):
                    ok = False
                    break
                if part.startswith(":"):
                    if not segments[index]:
                        ok = False
                        break
                    params[part[1:]] = segments[index]
                elif part != segments[index]:
                    ok = False
                    break
            else:
                ok = len(segments) == len(route.parts)
            if ok:
                return route.handler, params
        return None

    def lookup(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | str | None:
        """The handler and params; or the trailing-slash redirect target path; or None."""
        found = self._match(method, path)
        if found is not None:
            return found
        if not any(route.method == method for route in self._routes) or path == "/":
            return None
        other = path[:-1] if path.endswith("/") else path + "/"
        if other and self._match(method, other) is not None:
            return other
        return None


def trailing_slash_redirect(request: Request, target: str) -> GoResponse:
    """gin's ``redirectTrailingSlash``: GET 301 with a small HTML body, others 307."""
    prefix_header = request.headers.get("X-Forwarded-Prefix") or ""
    prefix = clean(prefix_header)
    if prefix != ".":
        import re

        prefix = re.sub(r"[^a-zA-Z0-9/-]+", "", prefix)
        prefix = re.sub(r"/{2,}", "/", prefix)
        target = prefix + "/" + target
    url = escape_path(target)
    if request.raw_query:
        url += "?" + request.raw_query
    code = 301 if request.method == "GET" else 307
    # http.Redirect: clean the path but keep its trailing slash
    path_part, sep, query = url.partition("?")
    if not path_part.startswith("//"):
        trailing = path_part.endswith("/")
        path_part = clean(path_part)
        if trailing and not path_part.endswith("/"):
            path_part += "/"
    url = path_part + (sep + query if sep else "")
    headers = Headers([("Location", hex_escape_non_ascii(url))])
    body = b""
    if request.method in ("GET", "HEAD"):
        headers.set("Content-Type", "text/html; charset=utf-8")
    if request.method == "GET":
        body = f'<a href="{html_escape(url)}">{status_text(code)}</a>.\n\n'.encode()
    return GoResponse(code, headers, body)


def not_found(*, gzip: bool = False) -> GoResponse:
    """gin's 404 for an unknown route (behind gin-contrib/gzip, its text is lost)."""
    if gzip:
        headers = Headers([("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")])
        return GoResponse(404, headers, b"", gzip=True)
    return GoResponse(404, Headers([("Content-Type", "text/plain")]), NOT_FOUND_BODY)
