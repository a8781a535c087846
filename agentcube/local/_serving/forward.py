"""Forwarding a request to a sandbox over HTTP, as the Router's Go transport does.

The request body streams to the sandbox on a second thread while the answer is awaited, so
a sandbox that answers before reading the whole body (a 413) is heard. Connection refused
is 502 ``sandbox unreachable``, a timeout 504 ``sandbox timeout``, anything else 503.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Iterable, Iterator

from .._go.gin import Headers, Request, gunzip_stream
from .._go.stdlib import escape_path

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
CONNECT_TIMEOUT = 5.0
HOP_BY_HOP = (
    "Connection",
    "Proxy-Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Te",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
)


class Unreachable(Exception):
    """The sandbox could not be reached; the Router answers ``status`` with ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ReadDeadline(Exception):
    """The client did not send its whole request within the Router's read limit."""


def remove_hop_by_hop(headers: Headers) -> None:
    """``removeHopByHopHeaders``: the listed ones and those ``Connection`` names."""
    for value in headers.get_all("Connection"):
        for name in value.split(","):
            name = name.strip()
            if name:
                headers.delete(name)
    for name in HOP_BY_HOP:
        headers.delete(name)


class HttpResponse:
    """A sandbox's answer read from its connection, streamed on."""

    def __init__(self, response: http.client.HTTPResponse, connection: http.client.HTTPConnection):
        self.status = response.status
        self.headers = Headers(response.getheaders())
        self._response = response
        self._connection = connection
        self._had_length = response.getheader("Content-Length") is not None and not (
            response.getheader("Transfer-Encoding")
        )

    def _chunks(self) -> Iterator[bytes]:
        try:
            while True:
                chunk = self._response.read1(_CHUNK)
                if not chunk:
                    return
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            logger.debug("sandbox answer broke off: %s", exc)
            raise

    def wire(self, decompress: bool = False) -> Iterable[bytes]:
        headers = self.headers
        length_ok = self._had_length
        remove_hop_by_hop(headers)
        body: Iterable[bytes] = self._chunks()
        if decompress and (headers.get("Content-Encoding") or "").lower() == "gzip":
            headers.delete("Content-Encoding")
            length_ok = False
            body = gunzip_stream(body)
        if not length_ok:
            headers.delete("Content-Length")
        return body

    def close(self) -> None:
        self._response.close()
        self._connection.close()


def forward(
    host: str,
    port: int,
    request: Request,
    headers: Headers,
) -> HttpResponse:
    """Send ``request`` (with the already-prepared ``headers``) to ``host:port``."""
    connection = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
    try:
        connection.connect()
    except ConnectionRefusedError:
        connection.close()
        raise Unreachable(502, "sandbox unreachable") from None
    except TimeoutError:
        connection.close()
        raise Unreachable(504, "sandbox timeout") from None
    except OSError:
        connection.close()
        raise Unreachable(503, "sandbox unreachable") from None
    assert connection.sock is not None
    connection.sock.settimeout(None)  # Go's transport has no response timeout
    target = escape_path(request.path or "/")
    if request.raw_query:
        target += "?" + request.raw_query
    has_body = request.content_length != 0
    chunked = has_body and request.content_length < 0
    failure: list[BaseException] = []
    try:
        connection.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", f"{host}:{port}")
        for name, value in headers.items():
            connection.putheader(name, value.encode("utf-8", "surrogateescape"))
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        elif has_body:
            connection.putheader("Content-Length", str(request.content_length))
        connection.endheaders()
    except OSError:
        connection.close()
        raise Unreachable(503, "sandbox unreachable") from None

    sender: threading.Thread | None = None
    if has_body:
        sock = connection.sock

        def send_body() -> None:
            try:
                while True:
                    chunk = request.body.read(_CHUNK)
                    if not chunk:
                        break
                    if chunked:
                        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    else:
                        sock.sendall(chunk)
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
            except BaseException as exc:
                failure.append(exc)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        sender = threading.Thread(target=send_body, name="agentcube-local-forward", daemon=True)
        sender.start()
    try:
        response = connection.getresponse()
    except (OSError, http.client.HTTPException):
        connection.close()
        if sender is not None:
            sender.join(5)
        for exc in failure:
            if isinstance(exc, ReadDeadline):
                raise exc from None
        raise Unreachable(503, "sandbox unreachable") from None
    return HttpResponse(response, connection)
