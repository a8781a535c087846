"""The async driver: performs the steps of a flow (:mod:`agentcube._protocol`) with httpx.

The twin of :mod:`._sync`: the rules are in the flows; this module sends bytes with httpx,
sleeps between retries with ``asyncio.sleep`` and runs every blocking local step (the flows'
``Local`` steps, and reading or writing a file being transferred) in a worker thread, so the
event loop never waits on the disk. Connections come from one ``httpx.AsyncClient`` per
event loop, shared by every async client on it and closed when the loop shuts its async
generators down (``asyncio.run`` does).

Cancellation: a call marked ``finish_on_cancel`` (a create, a bootstrap, a DELETE) whose task
is cancelled while an attempt is in flight is waited for once more, so that its answer (the new
session's id, or "deleted") reaches the flow; the cancellation is then thrown into the flow at
its next step, or raised when it returns. No retry starts after the cancellation, and one
cancelled in a retry's pause (nothing in flight) abandons the call at once. A second
cancellation abandons the call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeVar

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the async clients need httpx: pip install 'agentcube-sdk[async]'") from exc

from .._credentials import abearer_header_value
from .._protocol import Call, FileRange, Flow, Local, Multipart, Reply, connection_error
from ..exceptions import InvalidArgumentError, error_from_reply
from ._causes import connection_failed, failure_cause, host_of
from ._responses import detached_response, forget_library_locals, library_prefixes, sent_secrets

logger = logging.getLogger("agentcube._http")

T = TypeVar("T")

CHUNK = 1024 * 1024
_ERROR_BODY_LIMIT = 64 * 1024
_MAX_KEEPALIVE = 64

# -- one connection pool per event loop ------------------------------------------------------------

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, Any]] = (
    weakref.WeakKeyDictionary()
)


async def _closer(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    # Suspended for the loop's lifetime; the loop's shutdown_asyncgens() closes it, and with it
    # the pool, while the loop still runs (asyncio.run does that before closing the loop).
    try:
        yield
    finally:
        await client.aclose()


def shared_client() -> httpx.AsyncClient:
    """The running loop's ``httpx.AsyncClient`` (made on first use)."""
    loop = asyncio.get_running_loop()
    entry = _clients.get(loop)
    if entry is not None and not entry[0].is_closed:
        return entry[0]
    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=_MAX_KEEPALIVE),
        follow_redirects=False,
        timeout=120.0,  # every request says its own
    )
    closer = _closer(client)
    # Run it to its yield (no await before it): the loop's first-iteration hook now knows it.
    try:
        closer.asend(None).send(None)
    except StopIteration:
        pass
    _clients[loop] = (client, closer)
    return client


def loop_lock(locks: weakref.WeakKeyDictionary[Any, Any]) -> asyncio.Lock:
    """The ``asyncio.Lock`` in ``locks`` for the running loop (an asyncio lock serves one)."""
    loop = asyncio.get_running_loop()
    lock = locks.get(loop)
    if lock is None:
        lock = locks[loop] = asyncio.Lock()
    assert isinstance(lock, asyncio.Lock)
    return lock


def _forget_clients() -> None:
    """In a forked child: the parent's loops and sockets are not the child's."""
    global _clients
    _clients = weakref.WeakKeyDictionary()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_clients)


# -- sending ---------------------------------------------------------------------------------------


class AsyncTransport:
    """Sends :class:`Call` s with httpx, retrying as each call's rules say.

    Without a ``client`` it uses the running loop's shared one (see :func:`shared_client`).
    """

    __slots__ = ("_client",)

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client if self._client is not None else shared_client()

    async def send(self, call: Call, flight: _Flight | None = None) -> Reply:
        """Send ``call`` (with its retries) and return the answer.

        Each attempt of a call without a file to stream is bounded in all by
        :meth:`Call.timeouts`, however slowly the server drips its answer. ``flight``, when
        given, says whether an attempt is on the wire, and once it is ``abandoned`` no new
        attempt starts.

        Raises:
            APIError: an error status not in ``call.ok``.
            APIConnectionError / APITimeoutError: no answer.
        """
        client = self.client
        bounded = not call.streams_file()
        attempt = 0
        while True:
            attempt += 1
            connect, read, bound = call.timeouts()
            headers = call.request_headers()
            authorization = None
            if call.endpoint.auth is not None:
                authorization = await abearer_header_value(call.endpoint.auth)
                if authorization is not None:
                    headers["Authorization"] = authorization
            failure: BaseException | None = None
            cut = False
            started = time.perf_counter()
            request: httpx.Request | None = None
            if flight is not None:
                flight.sending = True
            try:
                request = client.build_request(
                    call.method,
                    call.url,
                    headers=headers,
                    content=_wire_body(call, headers),
                    timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect),
                )
                if bounded:
                    outcome = await _within(bound, self._attempt(client, request, call))
                else:
                    outcome = await self._attempt(client, request, call)
            except _AttemptTimedOut:
                cut = True
            except BaseException as exc:
                failure = exc
                forget_library_locals(exc, _LIBRARY_PREFIXES)
            if flight is not None:
                flight.sending = False
            del headers, authorization, request  # no frame of ours keeps the credential
            if cut:
                raise connection_error(
                    call,
                    timed_out=True,
                    reason=f"no whole answer within {bound:g} s",
                    reached_server=True,
                )
            if failure is not None:
                # Raised here, outside the handler: the library's exception is not chained.
                if not isinstance(failure, (httpx.TransportError, httpx.InvalidURL)):
                    raise failure
                if isinstance(failure, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
                    raise InvalidArgumentError(
                        f"{call.describe()}: the request cannot be sent ({type(failure).__name__})"
                    )
                if isinstance(failure, httpx.LocalProtocolError):
                    raise InvalidArgumentError(
                        f"{call.describe()}: the request cannot be sent ({type(failure).__name__})"
                    )
                cause = failure_cause(failure, host_of(call))
                never_sent = isinstance(
                    failure, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
                )
                pause = call.retry_pause(attempt, never_sent=never_sent)
                if pause is not None and not (flight is not None and flight.abandoned):
                    call.log_retry(attempt, cause.words or type(failure).__name__)
                    failure = None
                    await asyncio.sleep(pause)
                    continue
                raise connection_failed(
                    call,
                    cause,
                    type(failure).__name__,
                    timed_out=isinstance(failure, httpx.TimeoutException),
                    never_sent=never_sent,
                )
            status, reply = outcome
            call.log_answer(status, started, attempt)
            if isinstance(reply, Reply):
                return reply
            pause = call.retry_pause(attempt, status=status, headers=reply.headers)
            if pause is not None and not (flight is not None and flight.abandoned):
                call.log_retry(attempt, f"HTTP {status}")
                await asyncio.sleep(pause)
                continue
            raise reply.error

    async def _attempt(
        self, client: httpx.AsyncClient, request: httpx.Request, call: Call
    ) -> tuple[int, Reply | _Refused]:
        """One attempt: the answer as a :class:`Reply`, or a :class:`_Refused` to retry or
        raise (an error status not in ``call.ok``)."""
        response = await client.send(request, stream=True)
        try:
            status = response.status_code
            if 200 <= status < 300:
                if call.sink is not None:
                    return status, await _stream_to_sink(call, response)
                content = await response.aread()
                reply = call.answer = Reply(status, response.headers, content, response)
                return status, reply
            content = await _error_body(response)
            secrets = sent_secrets(request.headers.get("Authorization"), str(request.url))
            secrets += call.secrets
            raw = _detached(response, content, secrets)
            if status in call.ok:
                reply = call.answer = Reply(status, response.headers, content, raw, secrets)
                return status, reply
            error = error_from_reply(
                call.describe(),
                status,
                response.headers,
                content,
                response=raw,
                session_id=call.session_id,
                session_scoped=call.session_scoped,
                secrets=secrets,
            )
            return status, _Refused(response.headers, error)
        finally:
            await response.aclose()


class _Flight:
    """Where a call sent by :func:`_finish_on_cancel` is: ``sending`` while an attempt is on
    the wire (its answer is worth waiting for); ``abandoned`` once its task was cancelled (no
    new attempt may start: a retry's pause is not waited out after a cancel)."""

    __slots__ = ("abandoned", "sending")

    def __init__(self) -> None:
        self.sending = False
        self.abandoned = False


class _Refused:
    """An error answer: its headers (for the retry decision) and the error to raise."""

    __slots__ = ("error", "headers")

    def __init__(self, headers: httpx.Headers, error: Exception) -> None:
        self.headers = headers
        self.error = error


class _AttemptTimedOut(Exception):
    pass


if sys.version_info >= (3, 11):

    async def _within(seconds: float, awaitable: Any) -> Any:
        try:
            async with asyncio.timeout(seconds):
                return await awaitable
        except TimeoutError:
            raise _AttemptTimedOut() from None

else:  # pragma: no cover - Python 3.10

    async def _within(seconds: float, awaitable: Any) -> Any:
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:
            raise _AttemptTimedOut() from None


def _wire_body(call: Call, headers: dict[str, str]) -> Any:
    """What httpx sends for ``call``: bytes, or the file range read in a worker thread chunk
    by chunk (constant memory), with its Content-Length."""
    body = call.body
    if not isinstance(body, Multipart):
        return body
    source = body.source
    if isinstance(source, bytes) and body.progress is None:
        return body.head + source + body.tail
    headers["Content-Length"] = str(body.length)
    return _file_body(body)


async def _file_body(body: Multipart) -> AsyncIterator[bytes]:
    """The body, its file part in chunks, each counted by the body's progress once sent."""
    progress = body.progress
    if progress is not None:
        progress.restart()
    yield body.head
    async for chunk in _source_chunks(body.source):
        yield chunk
        if progress is not None:
            progress.advance(len(chunk))
    yield body.tail


async def _source_chunks(source: bytes | FileRange) -> AsyncIterator[bytes]:
    if isinstance(source, bytes):
        for offset in range(0, len(source), CHUNK):
            yield source[offset : offset + CHUNK]
        return
    f = await asyncio.to_thread(open, source.path, "rb")
    try:
        await asyncio.to_thread(f.seek, source.offset)
        left = source.length
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(CHUNK, left))
            if not chunk:
                raise OSError(f"{source.path} shrank while it was being sent")
            left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(f.close)


async def _stream_to_sink(call: Call, response: httpx.Response) -> Reply:
    sink = call.sink
    await asyncio.to_thread(sink.open, response.headers)
    try:
        async for chunk in response.aiter_bytes(CHUNK):
            await asyncio.to_thread(sink.write, chunk)
    except (httpx.TransportError, httpx.DecodingError, httpx.StreamError) as exc:
        broken: BaseException | None = sink.broken(type(exc).__name__)
    except BaseException as exc:
        await asyncio.to_thread(sink.abort)
        forget_library_locals(exc, _LIBRARY_PREFIXES)
        raise
    else:
        broken = None
    if broken is not None:
        await asyncio.to_thread(sink.abort)
        raise broken
    wire = response.num_bytes_downloaded
    await asyncio.to_thread(sink.finish, wire, response.headers.get("Content-Length"))
    return Reply(response.status_code, response.headers, b"", response)


async def _error_body(response: httpx.Response) -> bytes:
    """The body of an error answer, up to 64 KiB (decoded)."""
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            parts.append(chunk)
            size += len(chunk)
            if size >= _ERROR_BODY_LIMIT:
                break
    except (httpx.TransportError, httpx.DecodingError, httpx.StreamError):
        pass
    return b"".join(parts)[:_ERROR_BODY_LIMIT]


def _detached(response: httpx.Response, content: bytes, secrets: tuple[str, ...]) -> Any:
    request = response.request
    return detached_response(
        response.status_code,
        response.headers,
        content,
        url=str(request.url),
        reason=response.reason_phrase,
        encoding=response.charset_encoding,
        method=request.method,
        request_url=str(request.url),
        request_headers=request.headers,
        secrets=secrets,
    )


def _library_modules() -> tuple[object, ...]:
    import httpcore

    modules: list[object] = [httpx, httpcore]
    for name in ("h11", "h2", "anyio", "sniffio"):
        module = sys.modules.get(name)
        if module is not None:
            modules.append(module)
    return tuple(modules)


_LIBRARY_PREFIXES = library_prefixes(*_library_modules()) + tuple(
    os.path.dirname(os.__file__) + os.sep + name
    for name in ("socket.py", "ssl.py", os.path.join("asyncio", ""))
)


# -- driving a flow --------------------------------------------------------------------------------

_shared = AsyncTransport()


def shared_transport() -> AsyncTransport:
    """A transport on the running loop's shared connection pool."""
    return _shared


async def arun(flow: Flow[T], transport: AsyncTransport) -> T:
    """Drive ``flow`` to its end under asyncio: send its calls, run its local steps in a worker
    thread; return its value. An error from a step is thrown into the flow, which may clean up
    (and send more requests) before it propagates. See the module docstring on cancellation."""
    pending: BaseException | None = None
    try:
        step = next(flow)
        while True:
            if pending is not None:
                exc, pending = pending, None
                step = flow.throw(exc)
                continue
            try:
                if type(step) is Call:
                    if step.finish_on_cancel:
                        result, pending = await _finish_on_cancel(transport, step)
                    else:
                        result = await transport.send(step)
                else:
                    assert isinstance(step, Local)
                    result = await asyncio.to_thread(step.fn, *step.args)
            except BaseException as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(result)
    except StopIteration as stop:
        if pending is not None:
            raise pending from None
        value: T = stop.value
        return value


async def _finish_on_cancel(
    transport: AsyncTransport, call: Call
) -> tuple[Any, BaseException | None]:
    """Send ``call``; when the task is cancelled while an attempt is on the wire, wait for
    that attempt's answer (no retry after it) and return it with the cancellation to deliver
    afterwards. Cancelled with nothing on the wire (before the first attempt, or in a retry's
    pause), the call is abandoned at once."""
    flight = _Flight()
    task = asyncio.ensure_future(transport.send(call, flight))
    try:
        return await asyncio.shield(task), None
    except asyncio.CancelledError as cancelled:
        flight.abandoned = True
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result(), cancelled
        if not task.done() and not flight.sending:
            task.cancel()  # waiting to retry (or to send): there is no answer to wait for
            raise
        logger.info("%s: cancelled while in flight; waiting for its answer", call.describe())
        try:
            result = await task  # a second cancellation cancels the call too, and propagates
        except asyncio.CancelledError:
            raise
        except BaseException:
            raise cancelled from None
        return result, cancelled


def run_now(flow: Flow[T]) -> T:
    """Run a flow that sends nothing (attaching to a session) without a loop."""
    try:
        step = next(flow)
    except StopIteration as stop:
        value: T = stop.value
        return value
    flow.close()
    raise AssertionError(f"this flow was expected to send nothing, not {step!r}")
