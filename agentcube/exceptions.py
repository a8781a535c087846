"""Errors raised by the AgentCube SDK.

Every error the SDK raises on purpose derives from :class:`AgentCubeError`::

    AgentCubeError
    ├── InvalidArgumentError          (also ValueError) bad argument or configuration
    ├── SessionError                  a session could not be created, parsed or used
    │   └── SessionNotFoundError      (also NotFoundError) the server does not know the session
    ├── DataPlaneError                a sandbox answered something the SDK cannot use
    ├── CommandExecutionError         a command exited non-zero (exit_code, stderr, command)
    ├── APIError                      (also requests.HTTPError) the server answered 4xx/5xx
    │   ├── BadRequestError           400
    │   ├── AuthenticationError       401
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   │   └── SessionNotFoundError
    │   ├── PayloadTooLargeError      413
    │   └── ServerError               5xx
    └── APIConnectionError            (also requests.ConnectionError) no answer at all
        └── APITimeoutError           (also requests.Timeout) no answer in time

HTTP errors subclass :class:`requests.HTTPError` and carry ``.response``, so code written
against plain ``requests`` (``except requests.HTTPError as e: e.response.status_code``) keeps
working. Connection errors and timeouts are raised ``from`` the original ``requests`` error.
Messages never contain credentials.
"""

from __future__ import annotations

from typing import Any

import requests

SESSION_HEADER = "x-agentcube-session-id"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AgentCubeError",
    "AuthenticationError",
    "BadRequestError",
    "CommandExecutionError",
    "DataPlaneError",
    "InvalidArgumentError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ServerError",
    "SessionError",
    "SessionNotFoundError",
    "error_from_response",
]


class AgentCubeError(Exception):
    """Base class of every error the SDK raises."""


class InvalidArgumentError(AgentCubeError, ValueError):
    """An argument or a configuration value is invalid; raised before any request is sent."""


class SessionError(AgentCubeError):
    """A session could not be created, was answered with invalid data, or is no longer usable."""


class DataPlaneError(AgentCubeError):
    """A sandbox answered, but with something the SDK cannot use (a malformed body, say)."""


class CommandExecutionError(AgentCubeError):
    """A command run in a code-interpreter sandbox exited with a non-zero code.

    Attributes:
        exit_code: the command's exit code (124 when it timed out).
        stderr: what the command wrote to standard error.
        command: the command as it was sent.
        stdout: what the command wrote to standard output.
    """

    def __init__(
        self,
        exit_code: int,
        stderr: str,
        command: str | list[str] | None = None,
        stdout: str = "",
    ) -> None:
        self.exit_code = exit_code
        self.stderr = stderr
        self.command = command
        self.stdout = stdout
        detail = stderr.strip()
        if len(detail) > 500:
            detail = detail[:500] + "..."
        message = f"command exited with code {exit_code}"
        if command is not None:
            message = f"command {command!r} exited with code {exit_code}"
        super().__init__(f"{message}: {detail}" if detail else message)


class APIError(AgentCubeError, requests.HTTPError):
    """The server answered with an HTTP error status.

    Attributes:
        response: the :class:`requests.Response` (as on :class:`requests.HTTPError`).
        status_code: the HTTP status code.
        message: the server's own message (``{"message"}`` or ``{"error"}`` body), if any.
        session_id: the session the request was about, where known.
    """

    def __init__(
        self,
        message: str,
        *,
        response: requests.Response | None = None,
        status_code: int = 0,
        server_message: str | None = None,
        session_id: str | None = None,
    ) -> None:
        super().__init__(message, response=response)
        self.status_code = status_code
        self.message = server_message
        self.session_id = session_id


class BadRequestError(APIError):
    """400: the server refused the request as malformed."""


class AuthenticationError(APIError):
    """401: the token is missing, wrong or expired."""


class PermissionDeniedError(APIError):
    """403: the caller may not use this sandbox."""


class NotFoundError(APIError):
    """404: the template, session, file or path does not exist."""


class SessionNotFoundError(NotFoundError, SessionError):
    """404 for a session: it was deleted, expired, or never existed."""


class PayloadTooLargeError(APIError):
    """413: the request body is larger than the server accepts."""


class ServerError(APIError):
    """5xx: the server failed; idempotent requests were retried before this was raised."""


class APIConnectionError(AgentCubeError, requests.ConnectionError):
    """No answer: the connection could not be made or was dropped."""


class APITimeoutError(APIConnectionError, requests.Timeout):
    """No answer within the timeout."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
}


def _server_message(response: requests.Response) -> str | None:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip()[:500] or None
    if isinstance(body, dict):
        for key in ("message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _answered_by_service(response: requests.Response) -> bool:
    """A WorkloadManager or Router error (JSON message), not a sandbox's forwarded answer."""
    if SESSION_HEADER in response.headers:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and ("message" in body or "error" in body)


def error_from_response(
    response: requests.Response,
    *,
    session_id: str | None = None,
    session_scoped: bool = False,
) -> APIError:
    """Build the error for an HTTP error response (status >= 400).

    ``session_scoped`` marks requests that name a session. There a 404 means the session is
    gone (:class:`SessionNotFoundError`) when the service itself answered it (a JSON error body)
    rather than the sandbox behind the router (whose answers carry the session header).
    """
    status = response.status_code
    server_message = _server_message(response)
    request = response.request
    if server_message and request is not None:
        # A server or proxy that echoes the credential must not put it in our message.
        sent = str(request.headers.get("Authorization") or "")
        token = sent.partition(" ")[2] if sent.startswith("Bearer ") else sent
        if token and token in server_message:
            server_message = server_message.replace(token, "[secure]")
    if status == 404 and session_scoped and _answered_by_service(response):
        cls: type[APIError] = SessionNotFoundError
    elif status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, APIError)
    method = request.method if request is not None else "?"
    path = (request.path_url if request is not None else "") or "/"
    text = f"{method} {path.split('?', 1)[0]} failed with HTTP {status}"
    if session_id:
        text += f" (session {session_id})"
    if server_message:
        text += f": {server_message}"
    return cls(
        text,
        response=response,
        status_code=status,
        server_message=server_message,
        session_id=session_id,
    )
