"""The AgentRuntime sandboxes: the built-in echo agent, and your own agent server on loopback
that requests are forwarded to (signed as the real Router signs them).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from urllib.parse import urlsplit

from ._go.gin import BodyReadError, Request, Response, json_response
from ._serving.forward import forward
from ._serving.jwt import Signer

_ECHO_BODY_LIMIT = 16 * 1024 * 1024


class EchoAgent:
    """The built-in agent: POST echoes the body back, GET is 404 like a real agent's."""

    workspace: str | None = None
    closed = False

    def __init__(self, endpoint: Callable[[], str]) -> None:
        self._endpoint = endpoint

    def endpoint(self) -> str:
        return self._endpoint()

    def handle(self, request: Request, session_id: str) -> Response:
        subpath = request.path[1:] if request.path.startswith("/") else request.path
        if request.method != "POST":
            return json_response(404, {"error": "not found"})
        parts: list[bytes] = []
        size = 0
        try:
            while chunk := request.body.read(64 * 1024):
                parts.append(chunk)
                size += len(chunk)
                if size > _ECHO_BODY_LIMIT:
                    return json_response(413, {"error": "request body too large"})
        except BodyReadError as exc:
            return json_response(400, {"error": str(exc)})
        data = b"".join(parts)
        payload: object
        try:
            payload = json.loads(data, parse_constant=_no_constants)
        except (ValueError, RecursionError):
            payload = data.decode("utf-8", "replace")
        try:
            return json_response(200, {"echo": payload, "path": subpath})
        except ValueError:  # a number JSON cannot carry back (1e310)
            text = data.decode("utf-8", "replace")
            return json_response(200, {"echo": text, "path": subpath})

    def close(self) -> None:
        pass


def _no_constants(name: str) -> object:
    raise ValueError(name)


def validate_agent_url(url: str) -> tuple[str, int, str]:
    """``(host, port, base_path)`` of an agent URL; ValueError unless it is http on loopback."""
    if not isinstance(url, str):
        raise ValueError("agent URL must be a string")
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"agent URL {url!r} must start with http://")
    host = parts.hostname
    if not host:
        raise ValueError(f"agent URL {url!r} has no host")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"agent URL {url!r} must point at a loopback address") from None
    if not address.is_loopback:
        raise ValueError(f"agent URL {url!r} must point at a loopback address")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"agent URL {url!r} has an invalid port") from None
    return host, port, parts.path or "/"


class ForwardingAgent:
    """An agent template backed by the user's own agent server on loopback."""

    workspace: str | None = None
    closed = False

    def __init__(self, name: str, url: str, signer: Callable[[], Signer | None]) -> None:
        self._name = name
        self._host, self._port, self._base_path = validate_agent_url(url)
        self._signer = signer

    def endpoint(self) -> str:
        return f"{self._host}:{self._port}"

    def handle(self, request: Request, session_id: str) -> Response:
        signer = self._signer()
        base = self._base_path.rstrip("/")
        forwarded = Request(
            method=request.method,
            path=base + request.path if base else request.path,
            raw_query=request.raw_query,
            headers=request.headers,
            body=request.body,
            content_length=request.content_length,
            remote_addr=request.remote_addr,
        )
        authorization = None if signer is None else "Bearer " + signer.token(session_id)
        return forward(self._host, self._port, forwarded, authorization=authorization)

    def close(self) -> None:
        pass
