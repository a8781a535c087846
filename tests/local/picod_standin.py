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

It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import http.server
import json
import os
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


def make_handler(workspace: str, key: rsa.RSAPublicKey) -> type[http.server.BaseHTTPRequestHandler]:
    started = time.monotonic()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
