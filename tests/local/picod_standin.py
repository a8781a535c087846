"""A stand-in for the PicoD binary, to test ``LocalAgentCube(picod=...)`` without Go.

Run as ``picod_standin.py -port N -workspace DIR`` with ``PICOD_AUTH_PUBLIC_KEY`` set, as the
real PicoD is. It checks the Router's JWT as PicoD's auth.go does (an RSA signing method,
``exp`` required, ``iat`` checked, one minute of leeway, the same 401 bodies) on every
``/api`` route, and serves:

* ``GET /health``: PicoD's health answer (no auth);
* ``GET|POST /api/echo``: what it received (method, path, query, headers, body size, claims),
  gzip-compressed when the request's Accept-Encoding contains ``gzip``;
* ``GET /api/files/NAME``: a workspace file, streamed with its Content-Length;
* ``POST /api/limited``: 413 when the declared Content-Length is above 1000, without reading;
* ``GET /api/sleep?s=N``: answers after N seconds.

Before any of that it refuses what Go's net/http server refuses, with Go's own answer
(:func:`go_rejection`; ``test_local_forwarding.py`` holds the cases, measured against a real
PicoD): a second ``Host``, differing or invalid ``Content-Length``s, a transfer coding other
than one ``chunked``, no ``Host`` on HTTP/1.1, invalid header names and values. The echo
answer carries the header lines as they came (``raw_headers``), so a test can count them.

It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import http.server
import json
import os
import re
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

LEEWAY = 60
_HASHES = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}


class TokenError(Exception):
    pass


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify(token: str, key: rsa.RSAPublicKey, now: float | None = None) -> dict[str, Any]:
    """golang-jwt's Parse with WithExpirationRequired, WithIssuedAt and 1 minute of leeway."""
    now = time.time() if now is None else now
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("token is malformed: token contains an invalid number of segments")
    try:
        header = json.loads(_b64(parts[0]))
        claims = json.loads(_b64(parts[1]))
        signature = _b64(parts[2])
    except ValueError as exc:
        raise TokenError(f"token is malformed: {exc}") from None
    algorithm = header.get("alg")
    if algorithm not in _HASHES:
        raise TokenError(
            "token is unverifiable: error while executing keyfunc: unexpected signing method: "
            f"{algorithm}"
        )
    try:
        key.verify(
            signature,
            f"{parts[0]}.{parts[1]}".encode(),
            padding.PKCS1v15(),
            _HASHES[algorithm](),
        )
    except InvalidSignature:
        raise TokenError("token signature is invalid: crypto/rsa: verification error") from None
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)):
        raise TokenError("token has invalid claims: token is missing required claim: exp claim")
    if now > exp + LEEWAY:
        raise TokenError("token has invalid claims: token is expired")
    iat = claims.get("iat")
    if isinstance(iat, (int, float)) and now + LEEWAY < iat:
        raise TokenError("token has invalid claims: token used before issued")
    return dict(claims)


_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HOST = frozenset(
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!$%&'()*+,-.:;=[]_~"
)
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_GO_ERROR_HEAD = b"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request" + _GO_ERROR_HEAD + b"400 Bad Request"
NOT_IMPLEMENTED = (
    b"HTTP/1.1 501 Not Implemented" + _GO_ERROR_HEAD + b"Unsupported transfer encoding"
)


def bad_request(reason: str) -> bytes:
    """Go's answer for a ``badRequestError``: the reason in the status line and the body."""
    text = f"400 Bad Request: {reason}".encode()
    return b"HTTP/1.1 " + text + _GO_ERROR_HEAD + text


def header_fields(lines: list[bytes]) -> list[tuple[bytes, bytes]] | None:
    """The header block as Go's textproto reads it (folded lines joined), or None if refused."""
    fields: list[tuple[bytes, bytes]] = []
    for raw in lines:
        line = raw[:-2] if raw.endswith(b"\r\n") else raw.removesuffix(b"\n")
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if not fields:
                return None  # "malformed MIME header initial line"
            name, value = fields[-1]
            fields[-1] = (name, value + b" " + line.strip(b" \t"))
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or any(c not in _TOKEN and c != 0x20 for c in name):
            return None  # "malformed MIME header line" (a space is left to the server)
        fields.append((name, value.strip(b" \t")))
    if any(_CONTROL.search(value) for _, value in fields):
        return None
    return fields


def go_rejection(version: str, method: str, lines: list[bytes]) -> bytes | None:
    """What Go's net/http server answers instead of calling its handler, or None.

    ``lines``: the header lines as received. The order of the checks is Go's: reading the
    header block, then the body's framing, then the server's own checks.
    """
    fields = header_fields(lines)
    if fields is None:
        return BAD_REQUEST
    values: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        values.setdefault(name.lower(), []).append(value)
    hosts = values.get(b"host", [])
    if len(hosts) > 1:
        return BAD_REQUEST  # "too many Host headers", a plain error in Go
    http11 = version != "HTTP/1.0"
    codings = values.get(b"transfer-encoding", [])
    if http11 and codings and (len(codings) != 1 or codings[0].lower() != b"chunked"):
        return NOT_IMPLEMENTED
    lengths = values.get(b"content-length", [])
    if len(set(lengths)) > 1:
        return BAD_REQUEST
    if lengths and not (re.fullmatch(rb"[0-9]+", lengths[0]) and int(lengths[0]) < 2**63):
        return BAD_REQUEST
    if http11 and not hosts and method != "CONNECT":
        return bad_request("missing required Host header")
    if hosts and any(c not in _HOST for c in hosts[0]):
        return bad_request("malformed Host header")
    if any(c not in _TOKEN for name, _ in fields for c in name):
        return bad_request("invalid header name")
    return None


class _LineRecorder:
    """The request's reader, keeping each line read through it (the header block)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.lines: list[bytes] = []

    def readline(self, size: int = -1) -> bytes:
        line: bytes = self.raw.readline(size)
        self.lines.append(line)
        return line


def make_handler(workspace: str, key: rsa.RSAPublicKey) -> type[http.server.BaseHTTPRequestHandler]:
    started = time.monotonic()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        raw_headers: list[list[str]]

        def parse_request(self) -> bool:
            recorder = _LineRecorder(self.rfile)
            self.rfile = recorder  # type: ignore[assignment]
            try:
                if not super().parse_request():
                    return False
            finally:
                self.rfile = recorder.raw
            answer = go_rejection(self.request_version, self.command, recorder.lines)
            if answer is not None:
                self.close_connection = True
                self.wfile.write(answer)
                return False
            fields = header_fields(recorder.lines) or []
            self.raw_headers = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in fields]
            return True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, status: int, payload: Any, compress: bool = False) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            if compress:
                body = gzip.compress(body)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _auth(self) -> dict[str, Any] | None:
            header = self.headers.get("Authorization")
            if not header:
                self._json(
                    401,
                    {
                        "code": 401,
                        "detail": "Request requires JWT authentication",
                        "error": "Missing Authorization header",
                    },
                )
                return None
            parts = header.split(" ")
            if len(parts) != 2 or parts[0] != "Bearer":
                self._json(
                    401,
                    {
                        "code": 401,
                        "detail": "Use Bearer <token>",
                        "error": "Invalid Authorization header format",
                    },
                )
                return None
            try:
                return verify(parts[1], key)
            except TokenError as exc:
                self._json(
                    401,
                    {
                        "code": 401,
                        "detail": f"JWT verification failed: {exc}",
                        "error": "Invalid token",
                    },
                )
                return None

        def _handle(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/health" and self.command == "GET":
                uptime = f"{time.monotonic() - started:.3f}s"
                self._json(200, {"service": "PicoD", "status": "ok", "uptime": uptime})
                return
            if not url.path.startswith("/api/"):
                self._json(404, {"error": "not found"})
                return
            if url.path == "/api/limited" and int(self.headers.get("Content-Length") or 0) > 1000:
                self.close_connection = True
                self._json(413, {"error": "request body too large"})
                return
            claims = self._auth()
            if claims is None:
                return
            length = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                size = 0
                while True:
                    line = self.rfile.readline()
                    chunk = int(line.split(b";")[0], 16)
                    size += len(self.rfile.read(chunk)) if chunk else 0
                    self.rfile.readline()
                    if not chunk:
                        break
            else:
                size = len(self.rfile.read(int(length))) if length else 0
            if url.path == "/api/echo":
                received = {
                    "method": self.command,
                    "path": url.path,
                    "query": url.query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "raw_headers": self.raw_headers,
                    "body_len": size,
                    "claims": claims,
                    "workspace": workspace,
                }
                gzip_ok = "gzip" in (self.headers.get("Accept-Encoding") or "")
                self._json(200, received, compress=gzip_ok)
            elif url.path.startswith("/api/files/"):
                path = os.path.join(workspace, url.path[len("/api/files/") :])
                with open(path, "rb") as handle:
                    data = handle.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif url.path == "/api/sleep":
                time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
                self._json(200, {"slept": True})
            else:
                self._json(404, {"error": "not found"})

        do_GET = do_POST = _handle

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="picod-standin")
    parser.add_argument("-port", type=int, required=True)
    parser.add_argument("-workspace", required=True)
    args = parser.parse_args(argv)
    pem = os.environ.get("PICOD_AUTH_PUBLIC_KEY")
    if not pem:
        print("environment variable PICOD_AUTH_PUBLIC_KEY is not set", file=sys.stderr)
        return 1
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    os.makedirs(args.workspace, exist_ok=True)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", args.port), make_handler(os.path.abspath(args.workspace), key)
    )
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
