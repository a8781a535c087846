"""The sync driver: performs the steps of a flow (:mod:`agentcube._protocol`) with requests.

All the rules live in the flows; this module only sends bytes, sleeps between retries, streams
files and maps requests' errors to the SDK's. Connections come from one keep-alive pool per
process (:mod:`._pool`), shared by every client; each client keeps its own ``requests.Session``
so cookies never pass between clients. Each attempt is bounded in all by :mod:`._watchdog`.

Relies on: ``Response._content_consumed`` (whether an error body was already read) and
``response.raw.tell()`` (the bytes that came over the wire, to check a download's length).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import requests

from .._credentials import bearer_header_value
from .._protocol import Call, FileRange, Flow, Local, Multipart, Reply
from ..exceptions import APIConnectionError, InvalidArgumentError, error_from_reply
from ._causes import connection_failed, failure_cause, host_of
from ._pool import pooled_session, session_with_own_pool
from ._responses import detached_response, forget_library_locals, library_prefixes, sent_secrets
from ._watchdog import keep_signals_for_the_main_thread, start_watchdog, watchdog

__all__ = [
    "SyncTransport",
    "detached",
    "keep_signals_for_the_main_thread",
    "pooled_session",
    "run",
    "session_with_own_pool",
    "start_watchdog",
]

T = TypeVar("T")

CHUNK = 1024 * 1024  # per read and write: large enough that syscalls do not dominate
_ERROR_BODY_LIMIT = 64 * 1024


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
    """A multipart body whose file part is read while it is sent (constant memory for a file
    range), counted by the body's progress chunk by chunk."""

    __slots__ = ("_body",)

    def __init__(self, body: Multipart) -> None:
        self._body = body

    def __len__(self) -> int:
        return self._body.length

    def __iter__(self) -> Iterator[bytes]:
        body = self._body
        progress = body.progress
        if progress is not None:
            progress.restart()  # a re-sent request counts from its start again
        yield body.head
        for chunk in _source_chunks(body.source):
            yield chunk
            if progress is not None:  # sent: requests asks for the next one only then
                progress.advance(len(chunk))
        yield body.tail


def _source_chunks(source: bytes | FileRange) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for offset in range(0, len(source), CHUNK):
            yield source[offset : offset + CHUNK]
        return
    with open(source.path, "rb") as f:
        f.seek(source.offset)
        left = source.length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise OSError(f"{source.path} shrank while it was being sent")
            left -= len(chunk)
            yield chunk


def _wire_body(call: Call) -> Any:
    """What requests sends for ``call``: bytes, or a re-iterable body with a length (a file
    range, or bytes whose sending is counted)."""
    body = call.body
    if not isinstance(body, Multipart):
        return body
    source = body.source
    if isinstance(source, bytes) and body.progress is None:
        return body.head + source + body.tail
    return _FileBody(body)


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

        Each attempt of a call without a file to stream is bounded in all (connect, send, wait,
        read) by :meth:`Call.timeouts`, however slowly the server drips its answer.

        Raises:
            APIError: an error status not in ``call.ok``.
            APIConnectionError / APITimeoutError: no answer.
        """
        headers = call.request_headers()
        stream = call.sink is not None
        bounded = not call.streams_file()
        attempt = 0
        while True:
            attempt += 1
            connect, read, bound = call.timeouts()
            watch = watchdog.arm(bound) if bounded else None
            started = time.perf_counter()
            failure: BaseException | None = None
            try:
                response = self.session.request(
                    call.method,
                    call.url,
                    data=_wire_body(call),  # not a local: the body may be a secret form
                    headers=headers,
                    timeout=(connect, read),
                    stream=stream,
                    allow_redirects=False,
                    auth=self._auth_for(call.endpoint.auth),
                )
            except BaseException as exc:
                failure = exc
                _forget_library_locals(exc)
            finally:
                fired = watch is not None and watchdog.disarm(watch)
            if fired:
                # Cut by the watchdog: whatever arrived is not the whole answer (http.client may
                # even take the cut for the end of a header block).
                if failure is None:
                    response.close()
                raise _connection_error(call, True, f"no whole answer within {bound:g} s", True)
            if failure is not None:
                # Raised here, outside the handler: the library's exception is not chained
                # (as __cause__ or __context__), since it holds the request, credential included.
                if isinstance(failure, _ProviderFailed):
                    raise failure.error
                if isinstance(failure, _NOT_TRANSPORT):
                    raise InvalidArgumentError(
                        f"{call.describe()}: the request cannot be sent ({type(failure).__name__})"
                    )
                if not isinstance(failure, requests.RequestException):
                    raise failure
                cause = failure_cause(failure, host_of(call))
                never_sent = _never_sent(failure) or cause.never_sent is True
                pause = call.retry_pause(attempt, never_sent=never_sent)
                if pause is not None:
                    call.log_retry(attempt, cause.words or type(failure).__name__)
                    failure = None
                    time.sleep(pause)
                    continue
                raise connection_failed(
                    call,
                    cause,
                    _reason(failure),
                    timed_out=isinstance(failure, requests.Timeout),
                    never_sent=never_sent,
                )
            status = response.status_code
            call.log_answer(status, started, attempt)
            if 200 <= status < 300:
                if stream:
                    return self._stream_to_sink(call, response)
                reply = call.answer = Reply(status, response.headers, response.content, response)
                return reply
            if status in call.ok:
                secrets = _sent_secrets(response) + call.secrets
                content = _error_body(response)
                reply = call.answer = Reply(
                    status,
                    response.headers,
                    content,
                    detached(response, content, secrets),
                    secrets,
                )
                return reply
            pause = call.retry_pause(attempt, status=status, headers=response.headers)
            if pause is not None:
                response.close()
                call.log_retry(attempt, f"HTTP {status}")
                time.sleep(pause)
                continue
            raise _error(call, response)

    def _stream_to_sink(self, call: Call, response: requests.Response) -> Reply:
        sink = call.sink
        broken: str | None = None
        with response:
            sink.open(response.headers)
            try:
                for chunk in response.iter_content(CHUNK):
                    sink.write(chunk)
                wire = response.raw.tell()
            except requests.RequestException as exc:
                broken = type(exc).__name__
            except BaseException as exc:
                sink.abort()
                _forget_library_locals(exc)
                raise
        if broken is not None:
            sink.abort()
            raise sink.broken(broken)
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


def _connection_error(
    call: Call, timed_out: bool, reason: str, reached_server: bool
) -> APIConnectionError:
    from .._protocol import connection_error

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
    holds no credential (no request headers but harmless ones, no request body, the body and
    headers of the answer scrubbed of whatever credential the server echoed)."""
    secrets = _sent_secrets(response) + call.secrets
    content = _error_body(response)
    return error_from_reply(
        call.describe(),
        response.status_code,
        response.headers,
        content,
        response=detached(response, content, secrets),
        session_id=call.session_id,
        session_scoped=call.session_scoped,
        secrets=secrets,
    )


def _sent_secrets(response: requests.Response) -> tuple[str, ...]:
    request = response.request
    if request is None:
        return ()
    return sent_secrets(request.headers.get("Authorization"), request.url)


def detached(
    response: requests.Response, content: bytes, secrets: tuple[str, ...] = ()
) -> requests.Response:
    """A copy of ``response`` that holds no credential (see :mod:`agentcube._responses`)."""
    sent = response.request
    return detached_response(
        response.status_code,
        response.headers,
        content,
        url=response.url,
        reason=response.reason,
        encoding=response.encoding,
        elapsed=response.elapsed,
        method=sent.method if sent is not None else None,
        request_url=sent.url if sent is not None else None,
        request_headers=sent.headers if sent is not None else None,
        secrets=secrets,
    )


_LIBRARY_PREFIXES = library_prefixes(
    requests, __import__("urllib3"), __import__("http.client")
) + tuple(os.path.dirname(os.__file__) + os.sep + name for name in ("socket.py", "ssl.py"))


def _forget_library_locals(exc: BaseException) -> None:
    forget_library_locals(exc, _LIBRARY_PREFIXES)
