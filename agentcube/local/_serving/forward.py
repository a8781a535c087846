"""Forwarding a request to a sandbox over HTTP, as the Router's Go transport does.

The one place for what crosses the wire between the Router and a sandbox. The request goes out
as Go's ``Request.write`` frames it: one ``Host`` (the sandbox's address), at most one
``User-Agent``, exactly one framing header (``Content-Length``, or ``Transfer-Encoding:
chunked`` for a body of unknown length; none for a bodiless GET), never a copy of the client's.
The body streams on a second thread while the answer is awaited, so a sandbox that answers
before reading the whole body (a 413) is heard. The answer is taken only if Go's transport
would take it, and it is not passed on before its first body bytes have arrived.

What an upstream failure becomes (the contract's forwarding failures):

* connection refused: 502 ``sandbox unreachable``; connect timeout: 504 ``sandbox timeout``;
  any other connect or send failure: 503 ``sandbox unreachable``;
* the client's body not received within the Router's read limit: 504 ``sandbox timeout``;
* the sandbox closes before its answer's head, or before the first byte of a non-empty body;
  a malformed head (status line, header line, conflicting or invalid ``Content-Length``, a
  ``Transfer-Encoding`` other than one ``chunked``): 503 ``sandbox unreachable``;
* the answer breaks off after its head went on to the client (short of its length, a broken
  chunk): :class:`AnswerBroken` is raised from the body, so the server closes the connection
  without ending the body; the client sees a short body or a missing last chunk, never a
  complete-looking one.
"""

from __future__ import annotations

import email.errors
import http.client
import logging
import re
import socket
import threading
import zlib
from collections.abc import Iterable, Iterator

from .._go.gin import Headers, Request, gunzip_stream
from .._go.stdlib import escape_path

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
CONNECT_TIMEOUT = 5.0
#: how long closing an answer waits for the body sender to let go of the client's body
_STOP_WAIT = 5.0
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
# Headers ``Request.write`` writes itself, from the request rather than its header map.
_WRITTEN_BY_TRANSPORT = frozenset(
    {"host", "user-agent", "content-length", "transfer-encoding", "trailer"}
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]{1,18}")
# What the email parser says of a multipart Content-Type (a multipart/byteranges answer) whose
# body it never saw: nothing wrong with the head, which is all Go's transport reads.
_MULTIPART_DEFECTS = (
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.CloseBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.NoBoundaryInMultipartDefect,
)


class Unreachable(Exception):
    """The sandbox could not be reached; the Router answers ``status`` with ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ReadDeadline(Exception):
    """The client did not send its whole request within the Router's read limit."""


class AnswerBroken(ConnectionAbortedError):
    """The sandbox's answer broke off after its head was passed on: close, do not end it."""


def remove_hop_by_hop(headers: Headers) -> None:
    """``removeHopByHopHeaders``: the listed ones and those ``Connection`` names."""
    for value in headers.get_all("Connection"):
        for name in value.split(","):
            name = name.strip()
            if name:
                headers.delete(name)
    for name in HOP_BY_HOP:
        headers.delete(name)


def request_head(
    request: Request, host_header: str, authorization: str | None = None
) -> list[tuple[str, str]]:
    """The header lines Go's transport writes for ``request``, in order.

    ``authorization`` replaces any ``Authorization`` the request carries.
    """
    lines = [("Host", host_header)]
    user_agent = request.headers.get("User-Agent")
    if user_agent:
        lines.append(("User-Agent", user_agent))  # Go writes the first value only
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in _WRITTEN_BY_TRANSPORT or (authorization and lower == "authorization"):
            continue
        lines.append((name, value))
    if authorization:
        lines.append(("Authorization", authorization))
    if request.content_length < 0:
        lines.append(("Transfer-Encoding", "chunked"))
    elif request.content_length > 0 or request.method not in ("GET", "HEAD"):
        lines.append(("Content-Length", str(request.content_length)))
    return lines


def _sendable(lines: list[tuple[str, str]]) -> bool:
    """What Go's transport checks before sending: token names, no control bytes in values."""
    return all(_TOKEN.fullmatch(name) and not _CONTROL.search(value) for name, value in lines)


def refused_by_transport(headers: Headers) -> bool:
    """Whether the Router's Go transport would refuse an answer with these headers: a control
    byte in a value once the sandbox's net/http has written line breaks as spaces (a file name
    in ``Content-Disposition`` is the way one gets there). The real Router then answers 503."""
    return any(
        _CONTROL.search(value.replace("\r", " ").replace("\n", " ")) for _, value in headers.items()
    )


def _malformed(response: http.client.HTTPResponse) -> str | None:
    """Why Go's transport would refuse this answer's head, or None."""
    message = response.msg
    defects = [defect for defect in message.defects if not isinstance(defect, _MULTIPART_DEFECTS)]
    if defects or message.get_payload():
        return "malformed header line"
    for value in message.values():
        if _CONTROL.search(value.replace("\r\n", "")):
            return "control character in a header value"
    lengths = {value.strip(" \t") for value in message.get_all("Content-Length") or ()}
    if len(lengths) > 1:
        return f"conflicting Content-Length headers {sorted(lengths)}"
    if lengths and not _DIGITS.fullmatch(next(iter(lengths))):
        return "invalid Content-Length"
    codings = message.get_all("Transfer-Encoding") or []
    if response.version >= 11 and codings:
        if len(codings) != 1 or codings[0].strip(" \t").lower() != "chunked":
            return f"unsupported transfer encoding {codings}"
    return None


class _BodySender:
    """Streams the client's body to the sandbox on its own thread.

    A failure on the client's side (its body broken, or late) is kept and aborts the
    connection; the sandbox no longer reading just ends the sending (its answer is read).
    """

    def __init__(self, request: Request, sock: socket.socket, chunked: bool) -> None:
        self._request = request
        self._sock = sock
        self._chunked = chunked
        self.failure: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, name="agentcube-local-forward", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopped and (chunk := self._request.body.read(_CHUNK)):
                if not self._send(
                    b"%x\r\n%s\r\n" % (len(chunk), chunk) if self._chunked else chunk
                ):
                    return
            if self._chunked:
                self._send(b"0\r\n\r\n")
        except BaseException as exc:
            self.failure = exc
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _send(self, data: bytes) -> bool:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            logger.debug("the sandbox stopped reading the body: %s", exc)
            return False
        return True

    def stop(self) -> None:
        """Stop sending (the answer is done): afterwards nothing here reads the client's body,
        so the server may drain the rest of it itself without two readers racing."""
        self._stopped = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a sendall the sandbox left hanging
        except OSError:
            pass
        self._thread.join(_STOP_WAIT)

    def raise_failure(self) -> None:
        """Raise what the Router answers once the exchange failed: a late body is 504."""
        self._thread.join(5)
        if isinstance(self.failure, ReadDeadline):
            raise ReadDeadline() from None


class HttpResponse:
    """A sandbox's answer read from its connection, streamed on."""

    def __init__(
        self,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        sender: _BodySender | None,
    ) -> None:
        self.status = response.status
        self.headers = Headers(response.getheaders())
        self._response = response
        self._connection = connection
        self._sender = sender
        length = response.msg.get("Content-Length")
        self._had_length = length is not None and not response.getheader("Transfer-Encoding")
        if length is not None and self._had_length:  # identical duplicates count once
            self.headers.set("Content-Length", length.strip(" \t"))
        self._until_close = response.length is None and not response.chunked
        self._first = self._read()

    def _read(self) -> bytes:
        chunk = self._response.read1(_CHUNK)
        if not chunk and (self._response.length or self._cut()):
            raise http.client.IncompleteRead(b"", self._response.length)
        return chunk

    def _cut(self) -> bool:
        """An answer read until the connection closes is whole unless we cut the connection
        (the client's body failed); a length or the last chunk tell for the others."""
        return self._until_close and self._sender is not None and self._sender.failure is not None

    def _chunks(self) -> Iterator[bytes]:
        chunk = self._first
        while chunk:
            yield chunk
            try:
                chunk = self._read()
            except (OSError, http.client.HTTPException) as exc:
                raise AnswerBroken(f"the sandbox's answer broke off: {exc!r}") from None

    def wire(self, decompress: bool = False) -> Iterable[bytes]:
        headers = self.headers
        length_ok = self._had_length
        remove_hop_by_hop(headers)
        body: Iterable[bytes] = self._chunks()
        if decompress and (headers.get("Content-Encoding") or "").lower() == "gzip":
            headers.delete("Content-Encoding")
            length_ok = False
            body = _gunzip(body)
        if not length_ok:
            headers.delete("Content-Length")
        return body

    def close(self) -> None:
        if self._sender is not None:
            self._sender.stop()
        self._response.close()
        self._connection.close()


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    try:
        yield from gunzip_stream(chunks)
    except zlib.error as exc:
        raise AnswerBroken(f"the sandbox's gzip answer is corrupt: {exc}") from None


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP connection to a sandbox's unix socket (a sandbox with no network of its own)."""

    def __init__(self, path: str, host: str, port: int) -> None:
        super().__init__(host, port, timeout=CONNECT_TIMEOUT)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def forward(
    host: str,
    port: int,
    request: Request,
    *,
    authorization: str | None = None,
    unix_path: str | None = None,
) -> HttpResponse:
    """Send ``request`` to ``host:port`` (with ``authorization``, if given) and read the answer.

    With ``unix_path`` the connection goes to that unix socket; ``host:port`` is then only the
    ``Host`` the sandbox is told. Raises :class:`Unreachable` or :class:`ReadDeadline` as the
    module docstring lists.
    """
    connection = (
        http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
        if unix_path is None
        else _UnixConnection(unix_path, host, port)
    )
    try:
        connection.connect()
    except (ConnectionRefusedError, FileNotFoundError):
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
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = request_head(request, authority, authorization)
    if not _sendable(lines):
        connection.close()
        raise Unreachable(503, "sandbox unreachable")
    try:
        connection.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in lines:
            connection.putheader(name, value.encode("utf-8", "surrogateescape"))
        connection.endheaders()
    except (OSError, ValueError):
        connection.close()
        raise Unreachable(503, "sandbox unreachable") from None

    sender = None
    if request.content_length != 0:
        sender = _BodySender(request, connection.sock, chunked=request.content_length < 0)
    try:
        response = connection.getresponse()
        problem = _malformed(response)
        if problem is not None:
            raise http.client.HTTPException(problem)
        return HttpResponse(response, connection, sender)
    except (OSError, http.client.HTTPException) as exc:
        logger.debug("no answer from the sandbox at %s: %r", authority, exc)
        connection.close()
        if sender is not None:
            sender.raise_failure()
        raise Unreachable(503, "sandbox unreachable") from None
