"""The sync driver: performs the steps of a flow (:mod:`agentcube._protocol`) with requests.

All the rules live in the flows; this module only sends bytes, sleeps between retries and
streams files. Connections come from one keep-alive pool per process, shared by every client
(a new client per sandbox reuses the connections of the clients before it); each client keeps
its own ``requests.Session`` so cookies never pass between clients.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import urllib.request
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import cookiejar_from_dict
from requests.hooks import default_hooks
from requests.models import DEFAULT_REDIRECT_LIMIT
from requests.utils import default_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ._protocol import Call, FileRange, Flow, Local, Multipart, Reply
from ._responses import detached_response, forget_library_locals, library_prefixes, sent_secrets
from .auth import bearer_header_value
from .exceptions import APIConnectionError, InvalidArgumentError, error_from_reply

T = TypeVar("T")

CHUNK = 1024 * 1024  # per read and write: large enough that syscalls do not dominate
_ERROR_BODY_LIMIT = 64 * 1024

_POOL_MAXSIZE = 64  # idle connections kept per host; more concurrent requests still work
_pool_lock = threading.RLock()
_pool: HTTPAdapter | None = None
# Adapters of clients given pool sizes of their own: renewed in a forked child like _pool.
_own_pools: weakref.WeakSet[HTTPAdapter] = weakref.WeakSet()


class _Watch:
    """One attempt under the watchdog: its deadline and, once it has one, its connection."""

    __slots__ = ("conn", "deadline", "fired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.conn: Any = None
        self.fired = False


class _Watchdog:
    """Shuts the socket of an attempt down when it outlives its deadline.

    requests' read timeout bounds each read, not the whole answer: a server sending one byte
    every second never trips it. The watchdog bounds the attempt in all; its blocked read then
    fails at once and the transport reports a timeout. One thread for the process, started on
    first use (or by ``enable_exit_cleanup()``, so that it exists at interpreter exit).
    """

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._active: dict[int, _Watch] = {}
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        # The deadline the thread sleeps until (inf: until notified). An attempt whose
        # deadline comes later needs no wake-up: the thread looks again when it wakes.
        self._next = math.inf

    def start(self) -> bool:
        with self._lock:
            return self._start_locked()

    def _start_locked(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return True
        thread = threading.Thread(target=self._run, name="agentcube-watchdog", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no new thread at interpreter shutdown (Python 3.12+)
            return False
        self._thread = thread
        return True

    def arm(self, seconds: float) -> _Watch:
        watch = _Watch(time.monotonic() + seconds)
        self._local.watch = watch
        with self._lock:
            self._active[id(watch)] = watch
            if self._start_locked() and watch.deadline < self._next:
                self._next = watch.deadline
                self._lock.notify()
        return watch

    def current(self) -> _Watch | None:
        return getattr(self._local, "watch", None)

    def disarm(self, watch: _Watch) -> bool:
        """End the watch; True if the deadline had passed and the connection was cut."""
        self._local.watch = None
        with self._lock:
            self._active.pop(id(watch), None)
            return watch.fired

    def _run(self) -> None:
        _keep_signals_for_the_main_thread()
        lock = self._lock
        with lock:
            # A thread whose lock was replaced (forget_in_child) is no longer the watchdog: it
            # ends when it next wakes, and never waits on a lock it does not hold.
            while self._lock is lock:
                if not self._active:
                    self._next = math.inf
                    lock.wait()
                    continue
                watch = min(self._active.values(), key=lambda w: w.deadline)
                left = watch.deadline - time.monotonic()
                if left > 0:
                    self._next = watch.deadline
                    lock.wait(left)
                    continue
                del self._active[id(watch)]
                sock = getattr(watch.conn, "sock", None)
                if sock is not None:
                    watch.fired = True
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def forget_in_child(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._active = {}
        self._thread = None
        self._next = math.inf


_watchdog = _Watchdog()


def _keep_signals_for_the_main_thread() -> None:
    """Block every signal in the calling (background) thread: the kernel may hand a process
    its Ctrl-C or SIGTERM in any thread, and only the main thread's blocking call is then
    interrupted; a library thread must never take them away from it."""
    import signal

    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


def _watched(cls: Any) -> Any:
    """A urllib3 connection class that tells the current attempt's watch it carries it."""

    class Watched(cls):  # type: ignore[misc]
        def request(self, *args: Any, **kwargs: Any) -> Any:
            watch = _watchdog.current()
            if watch is not None:
                watch.conn = self
            return super().request(*args, **kwargs)

    Watched.__name__ = Watched.__qualname__ = "Watched" + cls.__name__
    return Watched


class _WholeAnswers:
    """A urllib3 pool whose answers must be as long as their ``Content-Length`` says: urllib3
    1.26 (which requests still accepts) takes a connection closed early for the end of the
    body unless asked not to; urllib3 2 checks by default."""

    def urlopen(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("enforce_content_length", True)
        return super().urlopen(*args, **kwargs)  # type: ignore[misc]


class _HTTPPool(_WholeAnswers, HTTPConnectionPool):
    ConnectionCls = _watched(HTTPConnection)


class _HTTPSPool(_WholeAnswers, HTTPSConnectionPool):
    ConnectionCls = _watched(HTTPSConnection)


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    """The process-wide adapter: its connections are visible to the watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


def pooled_session() -> requests.Session:
    """A new requests.Session (its own cookies) whose connections come from the process-wide
    keep-alive pool."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _Adapter(pool_maxsize=_POOL_MAXSIZE)
        pool = _pool
    return _session_on(pool)


def session_with_own_pool(pool_connections: int, pool_maxsize: int) -> requests.Session:
    """A new requests.Session with connections of its own, sized as asked (still watched by
    the watchdog, renewed in a forked child); its adapter is closed with the session."""
    adapter = _Adapter(pool_connections=pool_connections, pool_maxsize=pool_maxsize)
    _own_pools.add(adapter)
    return _session_on(adapter)


def _session_on(adapter: HTTPAdapter) -> requests.Session:
    """A new requests.Session (its own cookies) sending through ``adapter`` for both schemes."""
    session = _bare_session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


# requests looks up proxies, NO_PROXY and CA-bundle variables in os.environ for every request
# (merge_environment_settings); with a few dozen variables that scan costs more client CPU
# than the rest of a loopback request. Its answer depends on nothing but the environment, the
# URL's scheme and host, and the session's own settings, on platforms whose proxy settings all
# come from the environment (not macOS or Windows, where urllib also asks the system).
_ENVIRON_TYPE = type(os.environ)
_ENV_ONLY_PROXIES = isinstance(getattr(os.environ, "_data", None), dict) and (
    urllib.request.getproxies is urllib.request.getproxies_environment
)
_ENV_CACHE_SIZE = 32
# Another thread may change the environment and put it back while an answer is computed (as
# requests does itself for a request given proxies={"no_proxy": ...}); no comparison can see
# that afterwards, so an answer is trusted for this long at most.
_ENV_CACHE_SECONDS = 1.0
_clock = time.monotonic
# (copy of the environment, what reads it, token): a new token whenever either differs. One
# tuple, replaced whole, so a reader never pairs a copy and a token that do not belong together.
_env_seen: tuple[dict[Any, Any], tuple[Any, ...], object] = ({}, (), object())


def _environment_token() -> object | None:
    """A token that stays the same while ``os.environ`` (compared in full: a dict comparison
    in C, under a microsecond) and the functions requests reads it with do; None when
    ``os.environ`` is not the real one (replaced by a test, say): nothing is remembered then."""
    global _env_seen
    environ = os.environ
    if type(environ) is not _ENVIRON_TYPE:
        return None
    data = environ._data  # type: ignore[attr-defined]
    readers = (
        environ,
        getattr(requests.sessions, "get_environ_proxies", None),
        getattr(requests.utils, "should_bypass_proxies", None),
        getattr(requests.utils, "getproxies", None),
        getattr(requests.utils, "proxy_bypass", None),
    )
    seen = _env_seen
    if data != seen[0] or readers != seen[1]:
        seen = _env_seen = (dict(data), readers, object())
    return seen[2]


class _Session(requests.Session):
    """A ``requests.Session`` that remembers what the environment adds to a request's settings
    while the environment and the session's settings stay the same (for a second at most).
    Every answer is one requests computed; only the repeated scan is saved."""

    _env_cache: dict[tuple[Any, ...], tuple[object, float, tuple[Any, ...], Any]] | None = None

    def merge_environment_settings(  # type: ignore[override,unused-ignore]
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        own_proxies = self.proxies
        token = (
            _environment_token()
            if _ENV_ONLY_PROXIES
            and self.trust_env
            and isinstance(url, str)
            and isinstance(own_proxies, dict)
            and not proxies
            and verify is None
            and cert is None
            else None
        )
        if token is None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = url.split("/", 3)
        key = (*parts[:3], proxies is None, type(stream), stream)
        now = _clock()
        cache = self._env_cache
        if cache is None:
            cache = self._env_cache = {}
        entry = cache.get(key)
        if (
            entry is not None
            and entry[0] is token
            and now < entry[1]
            and entry[2] == (own_proxies, self.stream, self.verify, self.cert)
        ):
            merged = entry[3]
        else:
            # Both taken before the answer: a change made while it is computed shows at the
            # next look, and the answer is not used again.
            own = (dict(own_proxies), self.stream, self.verify, self.cert)
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if len(cache) >= _ENV_CACHE_SIZE:
                cache.clear()
            cache[key] = (token, now + _ENV_CACHE_SECONDS, own, merged)
        result = dict(merged)
        chosen = merged["proxies"]
        result["proxies"] = chosen.copy() if isinstance(chosen, dict) else chosen
        return result


# What requests.Session.__init__ sets (its pickled state); a requests that sets anything else
# gets its sessions built by requests itself.
_SESSION_STATE = frozenset(
    {
        *("headers", "cookies", "auth", "proxies", "hooks", "params", "verify", "cert"),
        *("adapters", "stream", "trust_env", "max_redirects"),
    }
)
_KNOWN_SESSION = frozenset(getattr(requests.Session, "__attrs__", ())) == _SESSION_STATE


def _bare_session() -> requests.Session:
    """``requests.Session()`` without the two default adapters (each with its urllib3 pool
    manager) that it builds only for the shared pool to replace them: what its ``__init__``
    sets, with the same defaults, and no adapter yet."""
    if not _KNOWN_SESSION:
        return _Session()
    session = _Session.__new__(_Session)
    session.headers = default_headers()  # type: ignore[assignment]
    session.auth = None
    session.proxies = {}
    session.hooks = default_hooks()
    session.params = {}
    session.stream = False
    session.verify = True
    session.cert = None
    session.max_redirects = DEFAULT_REDIRECT_LIMIT
    session.trust_env = True
    session.cookies = cookiejar_from_dict({})  # type: ignore[no-untyped-call]
    session.adapters = OrderedDict()
    return session


def start_watchdog() -> bool:
    """Start the watchdog thread now (exit cleanup needs it at interpreter exit)."""
    return _watchdog.start()


def _forget_pool() -> None:
    """In a forked child: never share the parent's sockets; open new ones.

    Clients made before the fork keep the adapter they mounted, so the adapter itself gets a
    new, empty pool (the parent's sockets are left alone, not closed: they are the parent's).
    """
    global _pool_lock
    _pool_lock = threading.RLock()
    _watchdog.forget_in_child()
    for adapter in [_pool, *_own_pools]:
        if adapter is not None:
            adapter.init_poolmanager(
                getattr(adapter, "_pool_connections", 10),
                getattr(adapter, "_pool_maxsize", _POOL_MAXSIZE),
                getattr(adapter, "_pool_block", False),
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


def _wire_body(call: Call) -> Any:
    """What requests sends for ``call``: bytes, or a re-iterable file body with a length."""
    body = call.body
    if not isinstance(body, Multipart):
        return body
    source = body.source
    return body.head + source + body.tail if isinstance(source, bytes) else _FileBody(body)


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
        read) by its connect plus read timeouts, however slowly the server drips its answer.

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
            connect, read = call.timeouts()
            watch = _watchdog.arm(connect + read) if bounded else None
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
                fired = watch is not None and _watchdog.disarm(watch)
            if fired:
                # Cut by the watchdog: whatever arrived is not the whole answer (http.client may
                # even take the cut for the end of a header block).
                if failure is None:
                    response.close()
                raise _connection_error(
                    call, True, f"no whole answer within {connect + read:g} s", True
                )
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
                never_sent = _never_sent(failure)
                pause = call.retry_pause(attempt, never_sent=never_sent)
                if pause is not None:
                    call.log_retry(attempt, type(failure).__name__)
                    failure = None
                    time.sleep(pause)
                    continue
                raise _connection_error(
                    call, isinstance(failure, requests.Timeout), _reason(failure), not never_sent
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
            sink.open()
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
