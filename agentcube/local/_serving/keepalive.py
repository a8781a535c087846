"""HTTP/1.1 keep-alive serving on top of werkzeug's threaded development server.

werkzeug's own ``WSGIRequestHandler.run_wsgi`` sends ``Connection: close`` on every
response, so a client can never reuse a connection. The handler here replaces
``run_wsgi``: it bounds the request body by ``Content-Length`` (or de-chunks it),
drains whatever the app left unread so the next request line is found, and keeps
the connection open. It also counts accepted connections, can drop a connection
without answering (fault injection), keeps werkzeug's request log quiet, and lets an app
give a request a read deadline (``READ_DEADLINE``): as Go's ``ReadTimeout``, one instant
for the whole request, past which every read from the connection fails.
"""

from __future__ import annotations

import io
import logging
import select
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from werkzeug.exceptions import BadRequest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer
    from _typeshed.wsgi import WSGIApplication

logger = logging.getLogger(__name__)

#: Set this key in the WSGI environ to make the server close the connection
#: without sending the response the app returned.
DROP_CONNECTION = "agentcube.local.drop_connection"
RAW_HEADERS = "agentcube.raw_headers"
REQUEST_START = "agentcube.request_start"
CLOSE_CONNECTION = "agentcube.close_connection"
#: ``environ[READ_DEADLINE](deadline)``: reading this request past ``deadline`` (monotonic
#: seconds) raises TimeoutError, however the reads are split
READ_DEADLINE = "agentcube.read_deadline"

_DRAIN_LIMIT = 4 * 1024 * 1024  # unread body bytes we are willing to skip to keep a connection
_LINGER_IDLE_SECONDS = 1.0
_LINGER_MAX_SECONDS = 30.0
_SMALL_WRITE = 64 * 1024
_IDLE_TIMEOUT = 120.0


class ConnectionTracker:
    """Counts accepted connections and remembers the open ones so they can be closed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accepted = 0
        self._open: set[socket.socket] = set()

    def opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._accepted += 1
            self._open.add(sock)

    def closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    def reset(self) -> None:
        with self._lock:
            self._accepted = 0

    def close_all(self) -> None:
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _wait_readable(sock: socket.socket, seconds: float) -> bool:
    """Whether ``sock`` has something to read (data, EOF or an error) within ``seconds``."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(max(1, int(seconds * 1000) + 1)))
    readable, _, _ = select.select([sock], [], [sock], seconds)  # pragma: no cover - non-POSIX
    return bool(readable)


class _ConnectionReader(io.RawIOBase):
    """The connection's incoming bytes; past ``deadline`` a read fails with TimeoutError.

    The deadline holds for the sum of all reads, however a body reader splits them into
    receives (the socket's own timeout is per receive). The socket itself is left as it is:
    another thread may be writing to it.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: ReadableBuffer) -> int:
        deadline = self.deadline
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _wait_readable(self._sock, remaining):
                raise TimeoutError("read deadline exceeded")
        return self._sock.recv_into(buffer)


class MalformedBody(BadRequest):
    """The request body cannot be read as framed (a broken chunked encoding, say): 400."""

    def __init__(self, description: str) -> None:
        super().__init__(description)


class _RequestBody(io.RawIOBase):
    """The request body: at most ``length`` bytes of ``raw`` (``None`` = until EOF)."""

    def __init__(self, raw: Any, length: int | None) -> None:
        super().__init__()
        self._raw = raw
        self._remaining = length
        self._eof = length == 0
        self._broken = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: ReadableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._eof or len(view) == 0:
            return 0
        if self._remaining is not None:
            view = view[: self._remaining]
        try:
            count = int(self._raw.readinto(view) or 0)
        except (ConnectionError, TimeoutError):
            raise
        except (OSError, ValueError) as exc:  # e.g. werkzeug's "Invalid chunk header"
            self._eof = self._broken = True
            raise MalformedBody(f"malformed request body: {exc}") from None
        if count == 0:
            self._eof = True
            if self._remaining:  # the client stopped short of its Content-Length
                self._broken = True
                raise MalformedBody("unexpected EOF")
            return 0
        if self._remaining is not None:
            self._remaining -= count
            if self._remaining == 0:
                self._eof = True
        return count

    @property
    def unread_hint(self) -> int:
        """Bytes known to be unread (0 when unknown, i.e. chunked)."""
        return 0 if self._eof or self._remaining is None else self._remaining

    @property
    def finished(self) -> bool:
        return self._eof

    def drain(self, limit: int) -> bool:
        """Skip the rest of the body; False if more than ``limit`` bytes remain, or if it broke
        (what follows on the connection cannot be told from the body: Go closes it)."""
        if self._broken:
            return False
        skipped = 0
        buffer = bytearray(_SMALL_WRITE)
        while not self._eof:
            if skipped > limit:
                return False
            try:
                count = self.readinto(buffer)
            except MalformedBody:
                return False
            skipped += count
        return True


def client_disconnected(sock: Any) -> bool:
    """True if the peer has closed (or half-closed) its side of ``sock``."""
    if not isinstance(sock, socket.socket):
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            hangup = getattr(select, "POLLRDHUP", 0)
            poller.register(sock, select.POLLIN | hangup)
            events = poller.poll(0)
            if not events:
                return False
            flags = events[0][1]
            if flags & (hangup | select.POLLHUP | select.POLLERR | select.POLLNVAL):
                return True
        else:  # pragma: no cover - non-POSIX
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
        return sock.recv(1, socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class KeepAliveHandler(WSGIRequestHandler):
    """A werkzeug request handler that keeps HTTP/1.1 connections alive."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT
    tracker: ClassVar[ConnectionTracker]
    _reader: _ConnectionReader

    # -- connection life cycle -------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # socketserver's reader, replaced by one that knows deadlines
        self._reader = _ConnectionReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)
        self.tracker.opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.tracker.closed(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except Exception:  # never let socketserver print a traceback to stderr
            logger.debug("connection handler failed", exc_info=True)

    # -- logging: keep werkzeug's access log out of stderr ----------------------------------
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> %s", self.command, self.path, code)

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("%s: " + message, type, *args)

    # -- request handling --------------------------------------------------------------------
    _request_start = 0.0

    def handle_one_request(self) -> None:
        self._reader.deadline = None  # the previous request's: the next one waits while idle
        super().handle_one_request()

    def parse_request(self) -> bool:
        self._request_start = time.monotonic()
        return bool(super().parse_request())

    def _set_read_deadline(self, deadline: float) -> None:
        self._reader.deadline = deadline

    def run_wsgi(self) -> None:
        if self.request_version != "HTTP/1.1":
            self.close_connection = True
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

        environ = self.make_environ()
        self.environ = environ
        environ[RAW_HEADERS] = list(self.headers.items())
        environ[REQUEST_START] = self._request_start
        environ[READ_DEADLINE] = self._set_read_deadline
        if environ.get("wsgi.input_terminated"):  # chunked: werkzeug de-chunks
            body = _RequestBody(environ["wsgi.input"], None)
        else:
            length_header = self.headers.get("Content-Length")
            if len(set(self.headers.get_all("Content-Length") or ())) > 1:
                length_header = "conflicting"  # two different lengths: refuse, never guess
            try:
                length = int(length_header) if length_header is not None else 0
                if length < 0:
                    raise ValueError(length_header)
            except ValueError:
                self._send_simple(400, b'{"error": "invalid Content-Length"}')
                self.close_connection = True
                return
            body = _RequestBody(self.rfile, length)
        environ["wsgi.input"] = body

        state: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            if exc_info and state.get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            state["status"] = status
            state["headers"] = headers
            return lambda data: None  # the legacy write() callable is not supported

        app: WSGIApplication = self.server.app
        app_iter: Iterable[bytes] | None = None
        try:
            app_iter = app(environ, start_response)
            if environ.get(DROP_CONNECTION):
                self._drop()
                return
            self._send(environ, state, app_iter, body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            return
        except Exception:
            logger.exception("error while handling %s %s", self.command, self.path)
            if not state.get("sent"):
                try:
                    self._send_simple(500, b'{"error": "internal server error"}')
                except OSError:
                    pass
            self.close_connection = True
            return
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    logger.debug("closing the response failed", exc_info=True)

        if environ.get(CLOSE_CONNECTION):
            self.close_connection = True
            return
        if self.close_connection:
            if not body.finished:
                self._linger()
        elif not body.drain(_DRAIN_LIMIT):
            self.close_connection = True

    def _send(
        self,
        environ: dict[str, Any],
        state: dict[str, Any],
        app_iter: Iterable[bytes],
        body: _RequestBody,
    ) -> None:
        iterator = iter(app_iter)
        first = b""
        for chunk in iterator:  # run the app up to its first body chunk
            if chunk:
                first = chunk
                break
        if "status" not in state:
            raise RuntimeError("the application did not call start_response")
        status: str = state["status"]
        headers: list[tuple[str, str]] = state["headers"]
        code = int(status.split(None, 1)[0])
        names = {name.lower() for name, _ in headers}
        chunked = not (
            "content-length" in names
            or environ["REQUEST_METHOD"] == "HEAD"
            or 100 <= code < 200
            or code in (204, 304)
        )
        if body.unread_hint > _DRAIN_LIMIT or environ.get(CLOSE_CONNECTION):
            self.close_connection = True
        lines = [f"{self.protocol_version} {status}\r\n"]
        if "date" not in names:
            lines.append(f"Date: {self.date_time_string()}\r\n")
        # As Go's net/http: a line break inside a value (a file name in Content-Disposition,
        # say) becomes a space, so that it can never end the header block early.
        lines.extend(f"{name}: {_one_line(value)}\r\n" for name, value in headers)
        if chunked:
            lines.append("Transfer-Encoding: chunked\r\n")
        if self.close_connection:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        state["sent"] = True
        self.log_request(code)

        self._write_chunk(head, first, chunked)
        for chunk in iterator:
            if chunk:
                self._write_chunk(b"", chunk, chunked)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, prefix: bytes, data: bytes, chunked: bool) -> None:
        if chunked and data:
            prefix += b"%x\r\n" % len(data)
        suffix = b"\r\n" if chunked and data else b""
        if len(data) <= _SMALL_WRITE:
            self.wfile.write(prefix + data + suffix)
            return
        if prefix:
            self.wfile.write(prefix)
        self.wfile.write(data)
        if suffix:
            self.wfile.write(suffix)

    def _send_simple(self, code: int, payload: bytes) -> None:
        head = (
            f"{self.protocol_version} {code} {self.responses.get(code, ('',))[0]}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        self.wfile.write(head + payload)

    def _drop(self) -> None:
        """Close the connection without a response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _linger(self) -> None:
        """Half-close and discard what the client still sends, so it can read our answer.

        Reads while data keeps arriving (a client may still be pushing a large body it
        will only stop sending once it is done), up to a hard cap.
        """
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(_LINGER_IDLE_SECONDS)
            deadline = time.monotonic() + _LINGER_MAX_SECONDS
            while time.monotonic() < deadline:
                if not self.connection.recv(_SMALL_WRITE * 4):
                    break
        except OSError:
            pass


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ") if "\r" in value or "\n" in value else value


def make_handler(tracker: ConnectionTracker) -> type[KeepAliveHandler]:
    """A handler class bound to one server's connection tracker."""

    class Handler(KeepAliveHandler):
        pass

    Handler.tracker = tracker
    return Handler


def serve(
    host: str, port: int, app: WSGIApplication, tracker: ConnectionTracker
) -> tuple[BaseWSGIServer, threading.Thread]:
    """Bind ``host:port`` (0 = any free port) and serve ``app`` on a daemon thread."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(socket.SOMAXCONN)
    except BaseException:
        listener.close()
        raise
    server = serve_listener(listener, app, tracker)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"agentcube-local-{server.port}",
        daemon=True,
    )
    thread.start()
    return server, thread


def serve_listener(
    listener: socket.socket, app: WSGIApplication, tracker: ConnectionTracker
) -> BaseWSGIServer:
    """A threaded server for ``app`` on a bound, listening socket of any family (a sandbox's
    unix socket, say); the caller runs ``serve_forever``. The server holds its own duplicate
    of the descriptor: ``listener`` is closed."""
    unix = listener.family == socket.AF_UNIX
    handler = make_handler(tracker)
    handler.disable_nagle_algorithm = not unix  # TCP_NODELAY: TCP only
    address = "unix://" if unix else listener.getsockname()[0]
    try:
        return make_server(
            address, 0, app, threaded=True, request_handler=handler, fd=listener.fileno()
        )
    finally:
        listener.close()
