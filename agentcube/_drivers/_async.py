"""The async driver: performs the steps of a flow (:mod:`agentcube._protocol`) with aiohttp.

The twin of :mod:`._sync`: the rules are in the flows; this module sends bytes with aiohttp,
sleeps between retries with ``asyncio.sleep`` and runs every blocking local step (the flows'
``Local`` steps, and reading or writing a file being transferred) in a worker thread, so the
event loop never waits on the disk. Connections come from one ``aiohttp.ClientSession`` per
event loop, shared by every async client on it (at most 100 requests in flight per host,
``AGENTCUBE_MAX_CONNECTIONS``; 64 idle connections per host kept, no cookies, proxies read from
the environment once) and closed when the loop shuts its async generators down (``asyncio.run``
does). A call beyond the limit waits for a turn in order, and that wait counts toward none of
its timeouts (they start when its attempt does) nor toward a retry. aiohttp was
chosen by measurement: 1,000 concurrent invokes from one loop took about 6 x less client CPU
per call than httpx (BENCHMARKS.md). Answers are decoded here (gzip, deflate), so that a
download's length is checked against the bytes on the wire, as the sync driver does.

Which aiohttp exception means what (never sent, timed out, not a transport failure) is decided
in one place, :func:`_classify`.

Cancellation: a call marked ``finish_on_cancel`` (a create, a bootstrap, a DELETE) whose task
is cancelled while an attempt is in flight is waited for once more, so that its answer (the new
session's id, or "deleted") reaches the flow; the cancellation is then thrown into the flow at
its next step, or raised when it returns. No retry starts after the cancellation, and one
cancelled in a retry's pause or waiting for its turn in the pool (nothing in flight) abandons
the call at once. A second cancellation abandons the call.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
import time
import weakref
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, NamedTuple, TypeVar

try:
    import aiohttp
    from yarl import URL
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the async clients need aiohttp: pip install 'agentcube-sdk[async]'") from exc

from .._config import max_connections
from .._credentials import abearer_header_value
from .._protocol import Call, FileRange, Flow, Local, Multipart, Reply, connection_error
from ..exceptions import InvalidArgumentError, error_from_reply
from ._causes import connection_failed, failure_cause, host_of
from ._responses import detached_response, forget_library_locals, library_prefixes, sent_secrets

logger = logging.getLogger("agentcube._http")

T = TypeVar("T")

CHUNK = 1024 * 1024
_ERROR_BODY_LIMIT = 64 * 1024
# What the driver can decode, asked for unless a call says otherwise.
_ACCEPT_ENCODING = "gzip, deflate"
_MAX_KEEPALIVE = 64  # idle connections kept per host, as the sync pool keeps

# -- one connection pool per event loop ------------------------------------------------------------


class _Pool:
    """A loop's connection pool, and the proxies the environment named when it was made."""

    __slots__ = ("_by_origin", "_gates", "_limit", "_proxies", "closer", "session")

    def __init__(self, session: aiohttp.ClientSession, closer: Any, limit: int) -> None:
        self.session = session
        self.closer = closer
        self._limit = limit
        self._gates: dict[tuple[str, str, int | None], _Gate] = {}
        self._proxies = _environment_proxies()
        self._by_origin: dict[tuple[str, str], str | None] = {}

    def gate(self, url: URL) -> _Gate | None:
        """The turns of ``url``'s origin (None when there is no limit)."""
        if not self._limit:
            return None
        key = (url.scheme, url.host or "", url.port)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = _Gate(self._limit)
        return gate

    def proxy(self, url: URL) -> str | None:
        """The proxy for ``url`` (its scheme's variable, unless ``NO_PROXY`` exempts its host)."""
        if not self._proxies:
            return None
        key = (url.scheme, url.host or "")
        if key not in self._by_origin:
            import urllib.request

            proxy = self._proxies.get(url.scheme)
            if proxy and urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
                url.host or "", self._proxies
            ):
                proxy = None
            self._by_origin[key] = proxy
        return self._by_origin[key]


class _Gate:
    """At most ``limit`` requests in flight at once; the others wait in order. A call
    cancelled while it waits leaves the line; one cancelled as its turn came passes it on.
    (Not aiohttp's own connection limit: its wait would fall inside the attempt's bound.)"""

    __slots__ = ("_free", "_waiting")

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def enter(self) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave()
            raise

    def leave(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():  # a cancelled waiter's turn is skipped
                turn.set_result(None)
                return
        self._free += 1


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector with no limit of its own on connections in use (:class:`_Gate`
    bounds the requests in flight per host), keeping at most
    :data:`_MAX_KEEPALIVE` idle ones per host: after 1,000 calls at once, 1,000 idle
    connections would each hold a server thread (the local server's) until they time out.
    Relies on ``_release`` and ``_conns``, aiohttp privates (stable since 3.0)."""

    def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
        idle = self._conns.get(key)
        if idle is not None and len(idle) >= _MAX_KEEPALIVE:
            should_close = True
        super()._release(key, protocol, should_close=should_close)


def _environment_proxies() -> dict[str, str]:
    # Read here, once per pool, not by aiohttp on every request (trust_env would also parse
    # ~/.netrc in a worker thread per request: most of a call's client CPU at 1,000 at once).
    import urllib.request

    return urllib.request.getproxies_environment()


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()


async def _closer(client: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    # Suspended for the loop's lifetime; the loop's shutdown_asyncgens() closes it, and with it
    # the pool, while the loop still runs (asyncio.run does that before closing the loop).
    try:
        yield
    finally:
        await client.close()


def shared_pool() -> _Pool:
    """The running loop's pool (made on first use)."""
    loop = asyncio.get_running_loop()
    entry = _clients.get(loop)
    if entry is not None and not entry.session.closed:
        return entry
    limit = max_connections()
    client = aiohttp.ClientSession(
        connector=_Connector(limit=0, limit_per_host=0),  # the limit is the _Gate's
        cookie_jar=aiohttp.DummyCookieJar(),  # no cookie passes between clients
        auto_decompress=False,  # decoded here: the wire length is checked on downloads
        timeout=aiohttp.ClientTimeout(total=None),  # every request says its own
    )
    closer = _closer(client)
    # Run it to its yield (no await before it): the loop's first-iteration hook now knows it.
    try:
        closer.asend(None).send(None)
    except StopIteration:
        pass
    pool = _clients[loop] = _Pool(client, closer, limit)
    return pool


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


# -- aiohttp's exceptions, in one place ------------------------------------------------------------


class _Failure(NamedTuple):
    """What a library exception means for the call: ``transport`` (else it is raised as is),
    ``unsendable`` (the request itself is invalid), ``never_sent`` (no byte reached a server:
    safe to retry) and ``timed_out``."""

    transport: bool
    unsendable: bool = False
    never_sent: bool = False
    timed_out: bool = False


def _classify(exc: BaseException) -> _Failure:
    """The one mapping of aiohttp's exceptions (and the socket errors it lets through)."""
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.InvalidUrlClientError)):
        return _Failure(transport=True, unsendable=True)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # the connect (or pool) timeout
        return _Failure(transport=True, never_sent=True, timed_out=True)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unresolvable, proxy, TLS
        return _Failure(transport=True, never_sent=True)
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return _Failure(transport=True, timed_out=True)
    if isinstance(exc, (aiohttp.ClientError, ConnectionError, zlib.error)):
        return _Failure(transport=True)
    return _Failure(transport=False)


# -- sending ---------------------------------------------------------------------------------------


class AsyncTransport:
    """Sends :class:`Call` s with aiohttp, retrying as each call's rules say, on the running
    loop's shared pool (see :func:`shared_pool`)."""

    __slots__ = ()

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
        pool = shared_pool()
        url = URL(call.url, encoded=True)  # sent as the flow wrote it (paths are quoted there)
        gate = pool.gate(url)
        bounded = not call.streams_file()
        attempt = 0
        while True:
            attempt += 1
            connect, read, bound = call.timeouts()
            headers = call.request_headers()
            headers.setdefault("Accept-Encoding", _ACCEPT_ENCODING)
            authorization = None
            if call.endpoint.auth is not None:
                authorization = await abearer_header_value(call.endpoint.auth)
                if authorization is not None:
                    headers["Authorization"] = authorization
            failure: BaseException | None = None
            cut = False
            try:
                if gate is not None:
                    await gate.enter()  # a turn: no timeout runs yet, nothing is on the wire
                try:
                    if gate is not None:  # the timeouts start now (a deadline counts the wait)
                        connect, read, bound = call.timeouts()
                    started = time.perf_counter()
                    if flight is not None:
                        flight.sending = True
                    attempt_ = self._attempt(pool, call, url, headers, connect, read)
                    if bounded:
                        outcome = await _within(bound, attempt_)
                    else:
                        outcome = await attempt_
                finally:
                    if gate is not None:
                        gate.leave()
            except _AttemptTimedOut:
                cut = True
            except BaseException as exc:
                failure = exc
                forget_library_locals(exc, _LIBRARY_PREFIXES)
            if flight is not None:
                flight.sending = False
            del headers, authorization  # no frame of ours keeps the credential
            if cut:
                raise connection_error(
                    call,
                    timed_out=True,
                    reason=f"no whole answer within {bound:g} s",
                    reached_server=True,
                )
            if failure is not None:
                # Raised here, outside the handler: the library's exception is not chained.
                meaning = _classify(failure)
                if not meaning.transport:
                    raise failure
                if meaning.unsendable:
                    raise InvalidArgumentError(
                        f"{call.describe()}: the request cannot be sent ({type(failure).__name__})"
                    )
                cause = failure_cause(failure, host_of(call))
                never_sent = meaning.never_sent or bool(cause.never_sent)
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
                    timed_out=meaning.timed_out,
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
        self,
        pool: _Pool,
        call: Call,
        url: URL,
        headers: dict[str, str],
        connect: float,
        read: float,
    ) -> tuple[int, Reply | _Refused]:
        """One attempt: the answer as a :class:`Reply`, or a :class:`_Refused` to retry or
        raise (an error status not in ``call.ok``)."""
        async with pool.session.request(
            call.method,
            url,
            proxy=pool.proxy(url),
            headers=headers,
            data=_wire_body(call, headers),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read),
            allow_redirects=False,
        ) as response:
            status = response.status
            if 200 <= status < 300:
                if call.sink is not None:
                    return status, await _stream_to_sink(call, response)
                content = _decoded(response.headers, await response.read())
                reply = call.answer = Reply(status, response.headers, content, None)
                return status, reply
            content = await _error_body(response)
            sent = response.request_info.headers  # as sent (a ~/.netrc login included)
            secrets = sent_secrets(sent.get("Authorization"), call.url)
            secrets += call.secrets
            raw = _detached(response, content, sent, secrets)
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

    def __init__(self, headers: Mapping[str, str], error: Exception) -> None:
        self.headers = headers
        self.error = error


class _AttemptTimedOut(Exception):
    pass


# aiohttp's own timeouts are TimeoutErrors too: only the attempt's bound expiring is a cut.
if sys.version_info >= (3, 11):

    async def _within(seconds: float, awaitable: Any) -> Any:
        bound = asyncio.timeout(seconds)
        try:
            async with bound:
                return await awaitable
        except TimeoutError:
            if bound.expired():
                raise _AttemptTimedOut() from None
            raise

else:  # pragma: no cover - Python 3.10

    async def _within(seconds: float, awaitable: Any) -> Any:
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({task}, timeout=seconds)
        except BaseException:
            task.cancel()
            raise
        if not done:
            task.cancel()
            await asyncio.wait({task})  # its end, whatever it raised meanwhile
            raise _AttemptTimedOut()
        return task.result()


def _wire_body(call: Call, headers: dict[str, str]) -> Any:
    """What aiohttp sends for ``call``: bytes, or the file range read in a worker thread chunk
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


class _Decoder:
    """Undoes a ``Content-Encoding`` of gzip or deflate (zlib or raw), chunk by chunk; any other
    (identity, or one not asked for) passes as is. zlib.error for a broken stream."""

    __slots__ = ("_raw_deflate", "_z")

    def __init__(self, headers: Mapping[str, str]) -> None:
        coding = (headers.get("Content-Encoding") or "").strip().lower()
        self._raw_deflate = coding == "deflate"
        if coding in ("gzip", "x-gzip"):
            self._z: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._z = zlib.decompressobj()
        else:
            self._z = None

    def decode(self, chunk: bytes) -> bytes:
        if self._z is None:
            return chunk
        try:
            return bytes(self._z.decompress(chunk))
        except zlib.error:
            if not self._raw_deflate:
                raise
            self._raw_deflate = False  # a server that sends raw deflate (no zlib header)
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            return bytes(self._z.decompress(chunk))

    def flush(self) -> bytes:
        """The rest; zlib.error when the stream stopped before its end."""
        if self._z is None:
            return b""
        rest = bytes(self._z.flush())
        if not self._z.eof:
            raise zlib.error("the compressed stream ended early")
        return rest


def _decoded(headers: Mapping[str, str], content: bytes) -> bytes:
    decoder = _Decoder(headers)
    return decoder.decode(content) + decoder.flush()


async def _stream_to_sink(call: Call, response: aiohttp.ClientResponse) -> Reply:
    sink = call.sink
    decoder = _Decoder(response.headers)
    wire = 0
    await asyncio.to_thread(sink.open, response.headers)
    broken: BaseException | None = None
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            wire += len(chunk)
            await asyncio.to_thread(sink.write, decoder.decode(chunk))
        await asyncio.to_thread(sink.write, decoder.flush())
    except BaseException as exc:
        if not _classify(exc).transport:
            await asyncio.to_thread(sink.abort)
            forget_library_locals(exc, _LIBRARY_PREFIXES)
            raise
        broken = sink.broken(type(exc).__name__)
    if broken is not None:
        await asyncio.to_thread(sink.abort)
        raise broken
    await asyncio.to_thread(sink.finish, wire, response.headers.get("Content-Length"))
    return Reply(response.status, response.headers, b"", None)


async def _error_body(response: aiohttp.ClientResponse) -> bytes:
    """The body of an error answer, up to 64 KiB (decoded)."""
    decoder = _Decoder(response.headers)
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in response.content.iter_chunked(_ERROR_BODY_LIMIT):
            part = decoder.decode(chunk)
            parts.append(part)
            size += len(part)
            if size >= _ERROR_BODY_LIMIT:
                break
        else:
            parts.append(decoder.flush())
    except (aiohttp.ClientError, ConnectionError, zlib.error):
        pass
    return b"".join(parts)[:_ERROR_BODY_LIMIT]


def _detached(
    response: aiohttp.ClientResponse,
    content: bytes,
    sent: Mapping[str, str],
    secrets: tuple[str, ...],
) -> Any:
    url = str(response.url)
    return detached_response(
        response.status,
        response.headers,
        content,
        url=url,
        reason=response.reason,
        encoding=response.charset,
        method=response.method,
        request_url=url,
        request_headers=sent,
        secrets=secrets,
    )


def _library_modules() -> tuple[object, ...]:
    modules: list[object] = [aiohttp]
    for name in ("yarl", "multidict", "aiohappyeyeballs", "aiosignal", "frozenlist", "propcache"):
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
    afterwards. Cancelled with nothing on the wire (before the first attempt, waiting for its
    turn in the pool, or in a retry's pause), the call is abandoned at once."""
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
