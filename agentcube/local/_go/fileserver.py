"""``http.ServeFile`` as net/http answers it: ranges, preconditions, redirects and errors.

The handler has already opened the file (or learnt that its open fails); this module only
decides what goes on the wire, with net/http's rules and texts.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from typing import IO

from .gin import Context, GoResponse, Request
from .stdlib import http_date, parse_http_date

_FILE_CHUNK = 256 * 1024


def _contains_dot_dot(path: str) -> bool:
    if ".." not in path:
        return False
    return any(part == ".." for part in path.replace("\\", "/").split("/"))


def serve_file(c: Context, opened: int | OSError) -> GoResponse:
    """``http.ServeFile`` of a file already opened (or the error its open failed with)."""
    request = c.request
    failed = opened if isinstance(opened, OSError) else None
    fd = opened if isinstance(opened, int) else None

    def give_up(response: GoResponse) -> GoResponse:
        if fd is not None:
            os.close(fd)
        return response

    if _contains_dot_dot(request.path):
        return give_up(_serve_error(c, 400, "invalid URL path"))
    if request.path.endswith("/index.html"):
        location = "./"
        if request.raw_query:
            location += "?" + request.raw_query
        c.headers.set("Location", location)
        return give_up(GoResponse(301, c.headers, b"", gzip=c.gzip))
    if failed is not None:
        # http.Dir's mapOpenError: any other failure to open a non-directory (a socket's
        # ENXIO, say) reads as "does not exist"
        if failed.errno in (errno.EACCES, errno.EPERM):
            return _serve_error(c, 403, "403 Forbidden")
        return _serve_error(c, 404, "404 page not found")
    assert fd is not None
    try:
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        info = os.fstat(handle.fileno())
        return _serve_content(c, handle, info.st_size, info.st_mtime_ns)
    except BaseException:
        handle.close()
        raise


def _serve_error(c: Context, status: int, message: str) -> GoResponse:
    """``serveError`` (Go 1.23+): ``http.Error`` without the success headers.

    Content-Encoding goes too, while gin-contrib/gzip's writer still compresses: asked with
    gzip, the text arrives as a gzip stream that no header announces.
    """
    for name in ("Cache-Control", "Content-Encoding", "Etag", "Last-Modified"):
        c.headers.delete(name)
    return c.text_error(status, message)


#: ``time.Time{}`` (year 1), which net/http treats as "no modification time"
_ZERO_TIME_NS = -62_135_596_800 * 1_000_000_000


def _serve_content(c: Context, handle: IO[bytes], size: int, mtime_ns: int) -> GoResponse:
    """``http.serveContent`` for a regular file, whose Content-Type the handler set.

    Times are Go's: any year (``Last-Modified`` prints it), ``isZeroTime`` being year 1 or
    the Unix epoch, comparisons on whole seconds rounded down.
    """
    request = c.request
    headers = c.headers
    mtime = mtime_ns // 1_000_000_000
    known = mtime_ns not in (0, _ZERO_TIME_NS)  # !isZeroTime(modtime)
    if known:
        headers.set("Last-Modified", http_date(mtime))
    done = _check_preconditions(c, mtime if known else None)
    if done is not None:
        handle.close()
        return done
    range_header = request.headers.get("Range") or ""
    if range_header and not _if_range_ok(request, None if mtime_ns == _ZERO_TIME_NS else mtime):
        range_header = ""
    try:
        ranges = _parse_range(range_header, size)
    except _RangeError as exc:
        handle.close()
        if exc.no_overlap:
            headers.set("Content-Range", f"bytes */{size}")
        return _serve_error(c, 416, str(exc))
    if sum(length for _, length in ranges) > size:
        ranges = []
    status = 200
    send_size = size
    body: Iterator[bytes]
    if len(ranges) == 1:
        start, length = ranges[0]
        handle.seek(start)
        send_size = length
        status = 206
        headers.set("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
        body = _file_chunks(handle, length)
    elif len(ranges) > 1:
        boundary = secrets.token_hex(30)
        ctype = headers.get("Content-Type") or ""
        parts = []
        total = 0
        for index, (start, length) in enumerate(ranges):
            head = (
                ("\r\n" if index else "")
                + f"--{boundary}\r\nContent-Range: bytes {start}-{start + length - 1}/{size}\r\n"
                + (f"Content-Type: {ctype}\r\n" if ctype else "")
                + "\r\n"
            ).encode()
            parts.append((head, start, length))
            total += len(head) + length
        tail = f"\r\n--{boundary}--\r\n".encode()
        total += len(tail)
        send_size = total
        status = 206
        headers.set("Content-Type", f"multipart/byteranges; boundary={boundary}")
        body = _multipart_ranges(handle, parts, tail)
    else:
        body = _file_chunks(handle, size)
    headers.set("Accept-Ranges", "bytes")
    length_set: int | None = None
    if ranges or headers.get("Content-Encoding") is None:
        headers.set("Content-Length", str(send_size))
        length_set = send_size
    return GoResponse(status, headers, body, length=length_set, gzip=c.gzip, on_close=handle.close)


def _file_chunks(handle: IO[bytes], length: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        chunk = handle.read(min(_FILE_CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def _multipart_ranges(
    handle: IO[bytes], parts: list[tuple[bytes, int, int]], tail: bytes
) -> Iterator[bytes]:
    for head, start, length in parts:
        yield head
        handle.seek(start)
        yield from _file_chunks(handle, length)
    yield tail


class _RangeError(Exception):
    def __init__(self, message: str, no_overlap: bool = False) -> None:
        super().__init__(message)
        self.no_overlap = no_overlap


def _parse_int(text: str) -> int:
    if not text or not all(c in "0123456789" for c in text.lstrip("+-")) or text in "+-":
        raise ValueError(text)
    value = int(text)
    if not -(1 << 63) <= value < 1 << 63:
        raise ValueError(text)
    return value


def _parse_range(header: str, size: int) -> list[tuple[int, int]]:
    """``http.parseRange``: (start, length) pairs."""
    if header == "":
        return []
    if not header.startswith("bytes="):
        raise _RangeError("invalid range")
    ranges: list[tuple[int, int]] = []
    no_overlap = False
    for spec in header[len("bytes=") :].split(","):
        spec = spec.strip(" \t")
        if spec == "":
            continue
        start_text, sep, end_text = spec.partition("-")
        if not sep:
            raise _RangeError("invalid range")
        start_text, end_text = start_text.strip(" \t"), end_text.strip(" \t")
        try:
            if start_text == "":
                if end_text == "" or end_text[0] == "-":
                    raise _RangeError("invalid range")
                suffix = _parse_int(end_text)
                if suffix < 0:
                    raise _RangeError("invalid range")
                suffix = min(suffix, size)
                ranges.append((size - suffix, suffix))
                continue
            start = _parse_int(start_text)
            if start < 0:
                raise _RangeError("invalid range")
            if start >= size:
                no_overlap = True
                continue
            if end_text == "":
                ranges.append((start, size - start))
                continue
            end = _parse_int(end_text)
            if start > end:
                raise _RangeError("invalid range")
            end = min(end, size - 1)
            ranges.append((start, end - start + 1))
        except ValueError:
            raise _RangeError("invalid range") from None
    if no_overlap and not ranges:
        raise _RangeError("invalid range: failed to overlap", no_overlap=True)
    return ranges


def _check_preconditions(c: Context, mtime: int | None) -> GoResponse | None:
    """``checkPreconditions`` without an ETag (PicoD sets none); ``mtime`` None: zero time."""
    request = c.request
    method = request.method
    if_match = request.headers.get("If-Match")
    if if_match:
        if if_match.strip() != "*":
            return GoResponse(412, c.headers, b"", gzip=c.gzip)
    else:
        unmodified = request.headers.get("If-Unmodified-Since")
        if unmodified and mtime is not None:
            when = parse_http_date(unmodified)
            if when is not None and mtime > when:
                return GoResponse(412, c.headers, b"", gzip=c.gzip)
    none_match = request.headers.get("If-None-Match")
    if none_match:
        if none_match.strip().startswith("*"):
            return _not_modified(c) if method in ("GET", "HEAD") else GoResponse(412, c.headers)
        return None
    since = request.headers.get("If-Modified-Since")
    if since and mtime is not None and method in ("GET", "HEAD"):
        when = parse_http_date(since)
        if when is not None and mtime <= when:
            return _not_modified(c)
    return None


def _not_modified(c: Context) -> GoResponse:
    for name in ("Content-Type", "Content-Length", "Content-Encoding"):
        c.headers.delete(name)
    return GoResponse(304, c.headers, b"")


def _if_range_ok(request: Request, mtime: int | None) -> bool:
    value = request.headers.get("If-Range")
    if not value:
        return True
    if value.startswith('"') or value.startswith("W/") or mtime is None:
        return False  # an ETag never matches (PicoD sets none); nor does the zero time
    when = parse_http_date(value)
    return when is not None and when == mtime
