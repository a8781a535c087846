"""Small helpers shared by the WSGI apps: JSON responses, body reading, bearer auth."""

from __future__ import annotations

import hmac
import json
from typing import IO, Any

from werkzeug.exceptions import ClientDisconnected, HTTPException
from werkzeug.wrappers import Request, Response

SESSION_HEADER = "x-agentcube-session-id"

_READ_CHUNK = 64 * 1024


class BadBody(Exception):
    """The request body could not be used; ``status`` is what to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with an exact ``Content-Length``."""
    body = json.dumps(payload)
    response = Response(body, status=status, mimetype="application/json")
    if headers:
        for key, value in headers.items():
            response.headers[key] = value
    return response


def read_limited(stream: IO[bytes], limit: int) -> bytes | None:
    """Read a whole stream, or return ``None`` as soon as it exceeds ``limit`` bytes."""
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        total += len(chunk)
        if total > limit:
            return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def parse_json(data: bytes) -> Any:
    """Strict JSON parsing (no NaN/Infinity); raises ``ValueError`` on any problem."""
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def read_json_object(request: Request, limit: int, too_large_status: int = 400) -> dict[str, Any]:
    """Read the body as a JSON object, raising :class:`BadBody` for anything else."""
    length = request.content_length
    if length is not None and length > limit:
        raise BadBody(f"request body too large (limit {limit} bytes)", too_large_status)
    try:
        data = read_limited(request.stream, limit)
    except ClientDisconnected:
        raise BadBody("the request body ended before its Content-Length") from None
    except HTTPException as exc:  # e.g. a broken chunked encoding
        raise BadBody(exc.description or "the request body could not be read") from None
    if data is None:
        raise BadBody(f"request body too large (limit {limit} bytes)", too_large_status)
    if not data.strip():
        raise BadBody("request body is empty, expected a JSON object")
    try:
        value = parse_json(data)
    except ValueError:
        raise BadBody("request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadBody("request body must be a JSON object")
    return value


def bearer_ok(request: Request, token: str | None) -> bool:
    """True when auth is off or the request carries ``Authorization: Bearer <token>``."""
    if token is None:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8"), token.encode("utf-8"))


def request_path(environ: dict[str, Any]) -> str:
    """The request path as text (PATH_INFO undone from WSGI's latin-1 encoding)."""
    raw = str(environ.get("PATH_INFO", ""))
    try:
        return raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return raw
