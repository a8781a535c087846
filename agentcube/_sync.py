"""The sync driver: performs the steps of a flow (:mod:`agentcube._protocol`) with requests.

All the rules live in the flows; this module only sends bytes, sleeps between retries and
streams files. Connections come from one keep-alive pool per process, shared by every client
(a new client per sandbox reuses the connections of the clients before it); each client keeps
its own ``requests.Session`` so cookies never pass between clients.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from ._protocol import USER_AGENT, Call, FileRange, Flow, Local, Multipart, Reply
from .auth import bearer_header_value
from .exceptions import APIConnectionError, InvalidArgumentError, error_from_reply

logger = logging.getLogger("agentcube._http")

T = TypeVar("T")

CHUNK = 1024 * 1024  # per read and write: large enough that syscalls do not dominate
_ERROR_BODY_LIMIT = 64 * 1024
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

_POOL_MAXSIZE = 64  # idle connections kept per host; more concurrent requests still work
_pool_lock = threading.Lock()
_pool: HTTPAdapter | None = None


def pooled_session() -> requests.Session:
    """A new requests.Session (its own cookies) whose connections come from the process-wide
    keep-alive pool."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = HTTPAdapter(pool_maxsize=_POOL_MAXSIZE)
        pool = _pool
    session = requests.Session()
    session.mount("https://", pool)
    session.mount("http://", pool)
    return session


def _forget_pool() -> None:
    """In a forked child: never share the parent's sockets; open new ones.

    Clients made before the fork keep the adapter they mounted, so the adapter itself gets a
    new, empty pool (the parent's sockets are left alone, not closed: they are the parent's).
    """
    global _pool_lock
    _pool_lock = threading.Lock()
    if _pool is not None:
        _pool.init_poolmanager(
            getattr(_pool, "_pool_connections", 10),
            getattr(_pool, "_pool_maxsize", _POOL_MAXSIZE),
            getattr(_pool, "_pool_block", False),
        )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


class _Bearer(requests.auth.AuthBase):
    """Sets the Authorization header at send time, so no frame of ours holds the token."""

    __slots__ = ("_provider",)

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        try:
            value = bearer_header_value(self._provider)
        except BaseException as exc:
            # Whatever the provider raised is its own error, not a transport failure.
            raise _ProviderFailed(exc) from None
        if value is not None:
            request.headers["Authorization"] = value
        return request

    def __repr__(self) -> str:
        return "Bearer([secure])"


class _ProviderFailed(Exception):
    """Carries an exception out of the auth provider through requests, untouched."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


class _NoAuth(requests.auth.AuthBase):
    """Sends no credential (and keeps requests from reading ~/.netrc for one)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


_NO_AUTH = _NoAuth()


class _FileBody:
    """A multipart body whose file range is read while it is sent (constant memory)."""

    __slots__ = ("_body",)

    def __init__(self, body: Multipart) -> None:
        self._body = body

    def __len__(self) -> int:
        return self._body.length

    def __iter__(self) -> Iterator[bytes]:
        body = self._body
        yield body.head
        source = body.source
        assert isinstance(source, FileRange)
        with open(source.path, "rb") as f:
            f.seek(source.offset)
            left = source.length
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    raise OSError(f"{source.path} shrank while it was being sent")
                left -= len(chunk)
                yield chunk
        yield body.tail


class SyncTransport:
    """Sends :class:`Call` s with requests, retrying as each call's rules say.

    A ``session`` given to it is the caller's: it is never closed here.
    """

    __slots__ = ("_auths", "session")

    def __init__(self, session: requests.Session | None = None) -> None:
        self.session = session if session is not None else pooled_session()
        self._auths: dict[int, requests.auth.AuthBase] = {}

    def _auth_for(self, provider: Any) -> requests.auth.AuthBase:
        if provider is None:
            return _NO_AUTH
        auth = self._auths.get(id(provider))
        if auth is None or auth._provider is not provider:  # type: ignore[attr-defined]
            auth = self._auths[id(provider)] = _Bearer(provider)
        return auth

    def send(self, call: Call) -> Reply:
        """Send ``call`` (with its retries) and return the answer.

        Raises:
            APIError: an error status not in ``call.ok``.
            APIConnectionError / APITimeoutError: no answer.
        """
        headers = {"User-Agent": USER_AGENT}
        if call.headers:
            headers.update(call.headers)
        data: Any = call.body
        if isinstance(data, Multipart):
            headers["Content-Type"] = data.content_type
            source = data.source
            data = data.head + source + data.tail if isinstance(source, bytes) else _FileBody(data)
        elif call.content_type is not None:
            headers["Content-Type"] = call.content_type
        auth = self._auth_for(call.endpoint.auth)
        url = call.url
        stream = call.sink is not None
        attempt = 0
        while True:
            attempt += 1
            timeouts = call.timeouts()
            started = time.perf_counter()
            try:
                response = self.session.request(
                    call.method,
                    url,
                    data=data,
                    headers=headers,
                    timeout=timeouts,
                    stream=stream,
                    allow_redirects=False,
                    auth=auth,
                )
            except _ProviderFailed as failed:
                raise failed.error from None
            except _NOT_TRANSPORT as exc:
                raise InvalidArgumentError(
                    f"{call.describe()}: the request cannot be sent ({type(exc).__name__})"
                ) from None
            except requests.RequestException as exc:
                never_sent = _never_sent(exc)
                pause = call.retry_pause(attempt, never_sent=never_sent)
                if pause is not None:
                    _log_retry(call, attempt, type(exc).__name__)
                    time.sleep(pause)
                    continue
                raise _transport_error(call, exc, never_sent) from None
            status = response.status_code
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s -> %d in %.1f ms (attempt %d)",
                    call.describe(),
                    status,
                    (time.perf_counter() - started) * 1000,
                    attempt,
                )
            if 200 <= status < 300:
                if stream:
                    return self._stream_to_sink(call, response)
                return Reply(status, response.headers, response.content, response)
            if status in call.ok:
                content = _error_body(response)
                return Reply(
                    status,
                    response.headers,
                    content,
                    detached(response, content),
                    _sent_secret(response),
                )
            pause = call.retry_pause(attempt, status=status, headers=response.headers)
            if pause is not None:
                response.close()
                _log_retry(call, attempt, f"HTTP {status}")
                time.sleep(pause)
                continue
            raise _error(call, response)

    def _stream_to_sink(self, call: Call, response: requests.Response) -> Reply:
        sink = call.sink
        with response:
            sink.open()
            try:
                for chunk in response.iter_content(CHUNK):
                    sink.write(chunk)
                wire = response.raw.tell()
            except requests.RequestException as exc:
                sink.abort()
                raise sink.broken(type(exc).__name__) from None
            except BaseException:
                sink.abort()
                raise
        sink.finish(wire, response.headers.get("Content-Length"))
        return Reply(response.status_code, response.headers, b"", response)


def run(flow: Flow[T], transport: SyncTransport) -> T:
    """Drive ``flow`` to its end: send its calls, run its local steps; return its value.

    An error from a step is thrown into the flow, which may clean up before it propagates.
    """
    try:
        step = next(flow)
        while True:
            try:
                if type(step) is Call:
                    result: Any = transport.send(step)
                else:
                    assert isinstance(step, Local)
                    result = step.fn(*step.args)
            except BaseException as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value


# Errors requests raises for what it was given, before any byte is sent: not transport errors.
_NOT_TRANSPORT = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidJSONError,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection failed before any byte of the request could reach a server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.ReadTimeout):
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return type(reason).__name__ in ("NewConnectionError", "NameResolutionError")


def _transport_error(
    call: Call, exc: requests.RequestException, never_sent: bool
) -> APIConnectionError:
    timed_out = isinstance(exc, requests.Timeout)
    return _connection_error(call, timed_out, _reason(exc), not never_sent)


def _connection_error(
    call: Call, timed_out: bool, reason: str, reached_server: bool
) -> APIConnectionError:
    from ._protocol import connection_error

    return connection_error(call, timed_out=timed_out, reason=reason, reached_server=reached_server)


def _reason(exc: requests.RequestException) -> str:
    """The kind of failure, without the library's text (which may quote a proxy URL)."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    inner = type(reason).__name__ if isinstance(reason, BaseException) else None
    name = type(exc).__name__
    return f"{name} ({inner})" if inner and inner != name else name


def _error_body(response: requests.Response) -> bytes:
    """The body of an error answer, read in full unless it was streamed (then up to 64 KiB)."""
    if response._content_consumed:  # type: ignore[attr-defined]
        return response.content or b""
    try:
        content = response.raw.read(_ERROR_BODY_LIMIT, decode_content=True)
    except Exception:
        content = b""
    finally:
        response.close()
    return content if isinstance(content, bytes) else b""


def _error(call: Call, response: requests.Response) -> Exception:
    """The SDK error for an error answer; it carries a detached copy of the response that
    holds no credential (the request's headers and body are not kept)."""
    content = _error_body(response)
    return error_from_reply(
        call.describe(),
        response.status_code,
        response.headers,
        content,
        response=detached(response, content),
        session_id=call.session_id,
        session_scoped=call.session_scoped,
        secret=_sent_secret(response),
    )


def _sent_secret(response: requests.Response) -> str | None:
    request = response.request
    value = request.headers.get("Authorization") if request is not None else None
    if not value:
        return None
    return value.partition(" ")[2] or value


def detached(response: requests.Response, content: bytes) -> requests.Response:
    """A copy of an error response for the error to carry: status, headers, body, URL, and a
    request that keeps its method and URL but none of its headers' secrets and no body."""
    copy = requests.Response()
    copy.status_code = response.status_code
    copy.headers = CaseInsensitiveDict(response.headers)
    copy._content = content
    copy._content_consumed = True  # type: ignore[attr-defined]
    copy.encoding = response.encoding
    copy.url = response.url
    copy.reason = response.reason
    copy.elapsed = response.elapsed
    sent = response.request
    if sent is not None:
        request = requests.PreparedRequest()
        request.method = sent.method
        request.url = sent.url
        request.headers = CaseInsensitiveDict(
            {k: v for k, v in sent.headers.items() if k.lower() not in _SECRET_HEADERS}
        )
        request.body = None
        copy.request = request
    return copy


def _log_retry(call: Call, attempt: int, why: str) -> None:
    logger.info("%s failed (%s), retrying (attempt %d)", call.describe(), why, attempt + 1)
