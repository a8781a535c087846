"""Why a request got no answer, in words: the one mapping from an HTTP library's exception chain
(requests/urllib3, aiohttp, or any other that chains the socket's error) to what a user
reads in an :class:`~agentcube.exceptions.APIConnectionError`, and the cause it may carry.

Only the operating system's error at the root of the chain (``ConnectionRefusedError``,
``ssl.SSLError``, ``socket.gaierror``, ...) is ever chained, and as a fresh copy of its code and
text: the library's own exceptions hold the request, credential included.
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from .._protocol import connection_error

if TYPE_CHECKING:
    from .._protocol import Call
    from ..exceptions import APIConnectionError

__all__ = ["Cause", "connection_failed", "failure_cause", "host_of"]

# OpenSSL's words for "the other side did not answer in TLS" (1.1/3.0, then 3.2+).
_PLAIN_HTTP = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure")


class Cause(NamedTuple):
    """What the failure was. ``words`` is None when nothing in the chain is recognised;
    ``never_sent`` is True when the request cannot have reached an HTTP server (no
    connection, or a TLS handshake that failed), None when the chain does not say."""

    words: str | None
    root: OSError | None
    never_sent: bool | None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: ``.reason`` (urllib3), an exception as first argument
    (requests, httpcore), ``__cause__`` and ``__context__``."""
    found: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(found) < 32:
        current = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        reason = getattr(current, "reason", None)
        first = current.args[0] if current.args else None
        for nxt in (reason, first, current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return found


def _copy(error: OSError) -> OSError | None:
    """The error's code and text in a new exception of its type (no traceback, no context);
    None when its arguments are anything but numbers and text."""
    if not all(isinstance(arg, (int, str)) for arg in error.args):
        return None
    try:
        copy = type(error)(*error.args)
    except Exception:
        return None
    return copy if isinstance(copy, OSError) else None


def failure_cause(exc: BaseException, host: str) -> Cause:
    """Name the failure of a request to ``host`` (``name:port``, from a URL that carries no
    credential) from the exception its library raised."""
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    roots = [e for e in chain if type(e).__module__ in ("builtins", "ssl", "socket")]
    errors = [e for e in roots if isinstance(e, OSError)]
    # The most precise: one with an error code (httpx wraps it in a generic OSError).
    root = next((e for e in errors if e.errno is not None), errors[0] if errors else None)
    copy = _copy(root) if root is not None else None
    for error in chain:
        if isinstance(error, ssl.SSLCertVerificationError):
            return Cause(f"TLS certificate verification failed for {host}", copy, True)
        if isinstance(error, ssl.SSLError):
            text = str(error)
            if any(marker in text for marker in _PLAIN_HTTP):
                return Cause(
                    f"TLS handshake failed: {host} does not answer in TLS (is it http://?)",
                    copy,
                    True,
                )
            return Cause(f"TLS handshake with {host} failed (is it http://?)", copy, True)
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in names:
        return Cause(f"name not resolved: {host.rpartition(':')[0] or host}", copy, True)
    if any(
        isinstance(e, ConnectionRefusedError)
        or (isinstance(e, OSError) and e.errno == errno.ECONNREFUSED)
        for e in chain
    ):
        return Cause(f"connection refused: nothing listens at {host}", copy, True)
    if names & {"ConnectTimeout", "ConnectTimeoutError", "PoolTimeout"}:
        return Cause(f"timed out connecting to {host}", copy, True)
    if any(isinstance(e, TimeoutError) for e in chain) or any("Timeout" in n for n in names):
        return Cause(f"timed out waiting for {host} to answer", copy, None)
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return Cause(f"connection reset by {host}", copy, None)
    if names & {"RemoteDisconnected", "RemoteProtocolError", "ProtocolError", "ReadError"}:
        return Cause(f"{host} closed the connection without an answer", copy, None)
    return Cause(None, copy, None)


def host_of(call: Call) -> str:
    """``name:port`` of the call's URL (never its user information)."""
    return urlsplit(call.url).netloc.rpartition("@")[2]


def connection_failed(
    call: Call, cause: Cause, library_reason: str, *, timed_out: bool, never_sent: bool
) -> APIConnectionError:
    """The error for a call that got no answer: the cause in words, then the library's kind of
    failure (``library_reason``, which must hold nothing secret), chained from the copy of the
    operating system's error. It says the request may have reached a server only when it may."""
    reason = f"{cause.words} ({library_reason})" if cause.words else library_reason
    error = connection_error(
        call, timed_out=timed_out, reason=reason, reached_server=not never_sent
    )
    error.__cause__ = cause.root
    return error
