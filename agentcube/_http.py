"""The one HTTP helper every service client speaks through.

It owns: the base URL, the bearer token (from an AuthProvider, redacted in every log line),
timeouts, the retry policy and the mapping of failures to :mod:`agentcube.exceptions`.
"""

from __future__ import annotations

import json as _json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter

from ._config import check_seconds, resolve_url
from .auth import AuthProvider, _check_bearer_token, resolve_auth
from .exceptions import (
    APIConnectionError,
    APITimeoutError,
    InvalidArgumentError,
    error_from_response,
)

logger = logging.getLogger(__name__)
_S = TypeVar("_S", bound="ServiceClient")

USER_AGENT = "agentcube-sdk-python/0.1.0"
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    """How idempotent requests (GET, DELETE) are retried.

    A request is retried on a connection error, a timeout, or a status in ``statuses``, at most
    ``max_attempts`` times in all, sleeping a random time between 0 and
    ``min(max_backoff, backoff * 2 ** (attempt - 1))`` seconds before each new attempt
    ("full jitter"). Non-idempotent requests (POST: create, execute, invoke, upload) are retried
    only when the connection could not be opened at all, so the request never reached the server.
    ``RetryPolicy(max_attempts=1)`` disables retries.
    """

    max_attempts: int = 3
    backoff: float = 0.2
    max_backoff: float = 2.0
    statuses: frozenset[int] = frozenset({502, 503, 504})

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidArgumentError("max_attempts must be an int")
        if self.max_attempts < 1:
            raise InvalidArgumentError("max_attempts must be at least 1")
        for value in (self.backoff, self.max_backoff):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgumentError("backoff values must be numbers of seconds")
            if not 0 <= value < math.inf:
                raise InvalidArgumentError("backoff values must be finite and not negative")

    def delay(self, attempt: int) -> float:
        """Seconds to sleep before attempt number ``attempt + 1``."""
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))


DEFAULT_RETRY = RetryPolicy()


# One keep-alive connection pool for the whole process, shared by every client that was not
# given a session: a new client (one per sandbox session) reuses the connections of the
# clients before it instead of opening its own. Each client still has its own
# requests.Session, so cookies never pass from one client to another.
_POOL_MAXSIZE = 64  # idle connections kept per host; more concurrent requests still work
_pool_lock = threading.Lock()
_pool: HTTPAdapter | None = None


def pooled_session() -> requests.Session:
    """A new requests.Session (its own cookies) whose connections come from the process-wide
    pool. A session client makes one, for both its control-plane and data-plane clients."""
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


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection failed before any byte of the request could reach the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    name = type(reason).__name__
    return name in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError")


class HTTPClient:
    """Sends requests to one service (one base URL) and maps failures to SDK errors.

    Without ``session``, its connections come from the process-wide keep-alive pool (see
    ``pooled_session``). A ``session`` given to it is the caller's: it is never closed here.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthProvider | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url
        self._auth = auth
        self.read_timeout = check_seconds(timeout, "timeout")
        self.connect_timeout = check_seconds(connect_timeout, "connect_timeout")
        self.retry = retry or DEFAULT_RETRY
        self.session = session if session is not None else pooled_session()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stream: bool = False,
        session_id: str | None = None,
        session_scoped: bool = False,
        ok_statuses: frozenset[int] = frozenset(),
        idempotent: bool | None = None,
        deadline: float | None = None,
    ) -> requests.Response:
        """Send one request, retried per the policy; return a response with status < 400.

        Statuses in ``ok_statuses`` are returned instead of raised. ``idempotent`` overrides the
        method's default (GET and DELETE are idempotent) for requests with side effects.
        ``deadline`` (a ``time.monotonic()`` value) bounds all attempts together: timeouts
        shrink to the time left, and no retry starts after it.
        """
        url = self.base_url + path
        send_headers: dict[str, str] = {"User-Agent": USER_AGENT}
        if json is not None:
            # Serialised here, not by requests, so that a bad payload is a ValueError before
            # anything is sent (requests reports NaN as a transport error and objects as TypeError).
            data = encode_json(json)
            send_headers["Content-Type"] = "application/json"
        if headers:
            send_headers.update(headers)
        read_timeout = self.read_timeout if timeout is None else timeout
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        attempt = 0
        while True:
            attempt += 1
            if self._auth is not None:
                token = self._auth.get_token()
                if token:
                    send_headers["Authorization"] = f"Bearer {_check_bearer_token(token)}"
            timeouts = (self.connect_timeout, read_timeout)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise APITimeoutError(f"{method} {url}: no time left before the deadline")
                timeouts = (min(self.connect_timeout, left), min(read_timeout, left))
            started = time.perf_counter()
            try:
                response = self.session.request(
                    method,
                    url,
                    data=data,
                    params=params,
                    headers=send_headers,
                    timeout=timeouts,
                    stream=stream,
                )
            except _NOT_TRANSPORT as exc:
                raise InvalidArgumentError(f"{method} {url}: {type(exc).__name__}") from exc
            except requests.RequestException as exc:
                pause = self._retry_pause(attempt, deadline)
                if pause is not None and (idempotent or _never_sent(exc)):
                    self._log_retry(method, url, attempt, type(exc).__name__)
                    time.sleep(pause)
                    continue
                raise _transport_error(exc, method, url, session_id) from exc
            status = response.status_code
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s -> %d in %.1f ms (attempt %d)",
                    method,
                    url,
                    status,
                    (time.perf_counter() - started) * 1000,
                    attempt,
                )
            if status < 400 or status in ok_statuses:
                return response
            if idempotent and status in self.retry.statuses:
                pause = self._retry_pause(attempt, deadline)
                if pause is not None:
                    response.close()
                    self._log_retry(method, url, attempt, f"HTTP {status}")
                    time.sleep(pause)
                    continue
            error = error_from_response(
                response, session_id=session_id, session_scoped=session_scoped
            )
            response.close()
            raise error

    def _retry_pause(self, attempt: int, deadline: float | None) -> float | None:
        """Seconds to wait before another attempt, or None when the policy or deadline says no."""
        if attempt >= self.retry.max_attempts:
            return None
        pause = self.retry.delay(attempt)
        if deadline is not None and time.monotonic() + pause >= deadline:
            return None
        return pause

    @staticmethod
    def _log_retry(method: str, url: str, attempt: int, why: str) -> None:
        logger.info("%s %s failed (%s), retrying (attempt %d)", method, url, why, attempt + 1)


class ServiceClient:
    """Base of the per-service clients: owns one HTTPClient; closeable, a context manager."""

    _http: HTTPClient

    def _connect(
        self,
        url: str | None,
        env_var: str,
        arg_name: str,
        *,
        auth: AuthProvider | None,
        auth_token: str | None,
        timeout: float,
        connect_timeout: float,
        retry: RetryPolicy | None,
        session: requests.Session | None,
    ) -> None:
        """Resolve the service URL (argument, then env var) and the credentials; no request."""
        base_url = resolve_url(url, env_var, arg_name, required=True)
        assert base_url is not None
        self._http = HTTPClient(
            base_url,
            auth=resolve_auth(auth, auth_token),
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            session=session,
        )

    def close(self) -> None:
        """Kept for compatibility; nothing to release. Connections are pooled per process and
        go back to the pool as soon as each response is read, so other clients reuse them."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Errors requests raises for what it was given, before any byte is sent: not transport errors.
_NOT_TRANSPORT = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidJSONError,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
)


def encode_json(payload: Any) -> bytes:
    """Serialise a JSON body as requests would; InvalidArgumentError if it cannot be JSON."""
    try:
        return _json.dumps(payload, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"the payload cannot be sent as JSON: {exc}") from exc


def _transport_error(
    exc: requests.RequestException, method: str, url: str, session_id: str | None
) -> APIConnectionError:
    where = f"{method} {url.split('?', 1)[0]}"
    if session_id:
        where += f" (session {session_id})"
    if isinstance(exc, requests.Timeout):
        return APITimeoutError(f"{where} timed out: {type(exc).__name__}", request=exc.request)
    return APIConnectionError(f"{where} failed: {_reason(exc)}", request=exc.request)


def _reason(exc: requests.RequestException) -> str:
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)
    text = str(reason)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
