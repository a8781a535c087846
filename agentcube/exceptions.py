"""Errors raised by the AgentCube SDK.

Every error the SDK raises on purpose derives from :class:`AgentCubeError`::

    AgentCubeError
    ├── InvalidArgumentError          (also ValueError) bad argument or configuration
    ├── SessionError                  a session could not be created, parsed or used
    │   ├── InvalidResponseError      (also ValueError) a create answered without a session id
    │   └── SessionNotFoundError      (also NotFoundError) the server does not know the session
    ├── DataPlaneError                a sandbox answered something the SDK cannot use
    │   └── CodeContextError          a code context cannot start, or its interpreter is gone
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

from ._wire import SESSION_HEADER, SESSION_NOT_FOUND, charset_of, decode_text, parse_json

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AgentCubeError",
    "AuthenticationError",
    "BadRequestError",
    "CodeContextError",
    "CommandExecutionError",
    "DataPlaneError",
    "InvalidArgumentError",
    "InvalidResponseError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ServerError",
    "SessionError",
    "SessionNotFoundError",
    "error_from_reply",
]


class AgentCubeError(Exception):
    """Base class of every error the SDK raises."""


class InvalidArgumentError(AgentCubeError, ValueError):
    """An argument or a configuration value is invalid; raised before any request is sent."""


class SessionError(AgentCubeError):
    """A session could not be created, was answered with invalid data, or is no longer usable."""


class InvalidResponseError(SessionError, ValueError):
    """A create or bootstrap was answered without a valid session id (also a ValueError, as
    the historic API raised)."""


class DataPlaneError(AgentCubeError):
    """A sandbox answered, but with something the SDK cannot use (a malformed body, say)."""


class CodeContextError(DataPlaneError):
    """A code context could not be started (no ``python3`` or ``bash`` in the sandbox), or its
    interpreter is no longer running (the sandbox restarted, or the process was killed): its
    state is lost, and a new context is the way on. The message says which."""


class CommandExecutionError(AgentCubeError):
    """A command run in a code-interpreter sandbox exited with a non-zero code.

    The message is ``Command failed (exit N): <stderr>`` with the whole stderr, so that a
    model or a user reading ``str(error)`` sees the last line of a traceback.

    Attributes:
        exit_code: the command's exit code (124 when it timed out, -1 when a signal killed it).
        stderr: what the command wrote to standard error.
        command: the command as it was given (the language, for ``run_code``).
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
        super().__init__(f"Command failed (exit {exit_code}): {stderr}")


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
    """No answer: the connection could not be made or was dropped.

    Attributes:
        reached_server: whether the failed request may have reached the server: False when
            the connection could not even be opened (so a create cannot have made a sandbox);
            None when the error did not come from sending an SDK request (a token endpoint).
    """

    reached_server: bool | None = None


class APITimeoutError(APIConnectionError, requests.Timeout):
    """No answer within the timeout."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
}

_MESSAGE_LIMIT = 500


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``[secure]``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[secure]")
    return text


_NOT_JSON = object()


def _json_body(content: bytes, headers: Any) -> Any:
    try:
        return parse_json(content, charset_of(headers))
    except ValueError:
        return _NOT_JSON


def _server_message(
    body: Any, content: bytes, headers: Any, secrets: tuple[str, ...] = ()
) -> str | None:
    """The server's own message: ``{"message"}`` or ``{"error"}`` of a JSON body, else the
    text; scrubbed of the secrets that were sent first, then cut to 500 characters."""
    if body is _NOT_JSON:
        text = _scrub(decode_text(content, charset_of(headers)).strip(), secrets)
        return text[:_MESSAGE_LIMIT] or None
    if isinstance(body, dict):
        for key in ("message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return _scrub(value, secrets)[: _MESSAGE_LIMIT * 8]
    return None


def _answered_by_service(headers: Any, body: Any) -> bool:
    """A WorkloadManager or Router error, not an answer a sandbox gave and the Router forwarded
    (those always carry the session header): a body carrying the stable ``SESSION_NOT_FOUND``
    code in a top-level field (upstream's Router after #460), whatever the headers, or a JSON
    message without the session header (the Router at 939abb5)."""
    if not isinstance(body, dict):
        return False
    if any(value == SESSION_NOT_FOUND for value in body.values()):
        return True
    return SESSION_HEADER not in headers and ("message" in body or "error" in body)


# The text body of the 404 the Go services' framework answers for a route it does not have.
# Neither AgentCube service answers it for a request the SDK sends to the right one.
_GIN_NOT_FOUND = "404 page not found"


def _wrong_service_hint(where: str) -> str:
    """Which URL looks wrong, for a route the server at it does not have (``where`` is
    ``METHOD URL``; every Router path of the SDK's has ``/v1/namespaces/``, no WorkloadManager
    path has)."""
    url = where.partition(" ")[2]
    routed = "/v1/namespaces/" in url
    base = url.split("/v1/namespaces/" if routed else "/v1/", 1)[0]
    this, other, setting = (
        ("Router", "WorkloadManager", "router_url / ROUTER_URL")
        if routed
        else ("WorkloadManager", "Router", "workload_manager_url / WORKLOAD_MANAGER_URL")
    )
    return (
        f" ({base} has no such route, so it does not look like AgentCube's {this}: is it the "
        f"{other}'s URL? check {setting})"
    )


def error_from_reply(
    where: str,
    status: int,
    headers: Any,
    content: bytes,
    *,
    response: Any = None,
    session_id: str | None = None,
    session_scoped: bool = False,
    secrets: tuple[str, ...] = (),
) -> APIError:
    """Build the error for an HTTP error answer (``where`` is ``"METHOD /path"``).

    ``session_scoped`` marks requests that name a session: there a 404 the WorkloadManager or
    the Router answered itself means the session is gone (:class:`SessionNotFoundError`); a 404
    a sandbox answered (no such file) stays a :class:`NotFoundError`. ``secrets`` (what was
    sent as credentials) are scrubbed from the server's message.
    """
    body = _json_body(content, headers)
    message = _server_message(body, content, headers, secrets)
    if status == 404 and session_scoped and _answered_by_service(headers, body):
        cls: type[APIError] = SessionNotFoundError
    elif status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, APIError)
    text = f"{where} failed with HTTP {status}"
    if session_id:
        text += f" (session {session_id})"
    location = headers.get("Location") if 300 <= status < 400 else None
    if location:
        # AgentCube's services do not redirect what the SDK sends: the URL is wrong.
        location = _scrub(location, secrets)
        text += f": redirected to {location[:_MESSAGE_LIMIT]} (not followed; check the URL)"
    elif message:
        text += f": {message}"
    if status == 404 and body is _NOT_JSON and message == _GIN_NOT_FOUND:
        text += _wrong_service_hint(where)
    return cls(
        text,
        response=response,
        status_code=status,
        server_message=message,
        session_id=session_id,
    )
