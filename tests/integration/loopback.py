"""Tiny HTTP servers on 127.0.0.1 for tests: they record what they receive, answer as told;
and a Python child process to point at them."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Seen:
    """One request as it reached the socket: the raw request target, headers and body."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0
    declared_length: int | None = None  # a Content-Length that lies; the connection then closes


Responder = Callable[[Seen], Answer]


def json_answer(payload: Any, status: int = 200, delay: float = 0.0, **headers: str) -> Answer:
    return Answer(
        status,
        json.dumps(payload).encode(),
        {"Content-Type": "application/json", **headers},
        delay=delay,
    )


class RecordingServer:
    """A threaded HTTP/1.1 server on a free loopback port; ``respond`` decides each answer."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, list(self.headers.items()), body)
                with outer._lock:
                    outer.seen.append(seen)
                answer = outer.respond(seen)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for key, value in answer.headers.items():
                        self.send_header(key, value)
                    declared = answer.declared_length
                    self.send_header(
                        "Content-Length", str(len(answer.body) if declared is None else declared)
                    )
                    self.end_headers()
                    self.wfile.write(answer.body)
                    if declared is not None:
                        self.close_connection = True
                except OSError:
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class DripServer:
    """Answers every request in full, but one byte every ``interval`` seconds, on loopback."""

    def __init__(self, body: Callable[[str, str], tuple[int, bytes]], interval: float) -> None:
        self._body = body
        self._interval = interval
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self.requests: list[str] = []
        self.arrivals: list[float] = []  # time.monotonic() of each request's arrival
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            method, target = data.split(b" ", 2)[:2]
            self.arrivals.append(time.monotonic())
            self.requests.append(f"{method.decode()} {target.decode()}")
            status, body = self._body(method.decode(), target.decode())
            answer = (
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body
            for byte in answer:
                if self._stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(self._interval)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def python_child(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Runs ``script`` (dedented) in a new Python with ``env`` added, its output piped as text."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
