"""What the low-level clients share: one service, its endpoint, connections and credentials."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import requests

from .._config import check_seconds, resolve_url
from .._drivers._sync import SyncTransport, pooled_session, run, session_with_own_pool
from .._protocol import DEFAULT_RETRY, Endpoint, Flow, RetryPolicy
from ..auth import AuthProvider
from ..exceptions import InvalidArgumentError

_S = TypeVar("_S", bound="ServiceClient")
T = TypeVar("T")

_DEFAULT_POOL = 10


class ServiceClient:
    """Base of the per-service clients: closeable, a context manager.

    Attributes:
        timeout: read timeout in seconds.
        connect_timeout: connect timeout in seconds.
        session: the ``requests.Session`` its requests go through.
        logger: its logger.
    """

    _endpoint: Endpoint
    _transport: SyncTransport
    _own_session: requests.Session | None = None
    logger: logging.Logger

    def _setup(
        self,
        url: str | None,
        env_var: str,
        arg_name: str,
        *,
        auth: AuthProvider | None,
        timeout: float,
        connect_timeout: float,
        retry: RetryPolicy | None,
        session: requests.Session | None,
        pool_connections: int = _DEFAULT_POOL,
        pool_maxsize: int = _DEFAULT_POOL,
    ) -> None:
        """Resolve the URL (argument, then env var) and the connection settings; no request."""
        base_url = resolve_url(url, env_var, arg_name, required=True)
        assert base_url is not None
        self._connect(
            base_url, auth, timeout, connect_timeout, retry, session, pool_connections, pool_maxsize
        )

    def _connect(
        self,
        base_url: str,
        auth: AuthProvider | None,
        timeout: float,
        connect_timeout: float,
        retry: RetryPolicy | None,
        session: requests.Session | None,
        pool_connections: int = _DEFAULT_POOL,
        pool_maxsize: int = _DEFAULT_POOL,
    ) -> None:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgumentError("retry must be a RetryPolicy")
        for name, value in (("pool_connections", pool_connections), ("pool_maxsize", pool_maxsize)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive int")
        self.timeout = check_seconds(timeout, "timeout")
        self.connect_timeout = check_seconds(connect_timeout, "connect_timeout")
        self._endpoint = Endpoint(
            base_url, auth, self.connect_timeout, self.timeout, retry or DEFAULT_RETRY
        )
        if session is None and (pool_connections, pool_maxsize) != (_DEFAULT_POOL, _DEFAULT_POOL):
            # Pool sizes of its own: this client gets its own connections, sized as asked.
            session = self._own_session = session_with_own_pool(pool_connections, pool_maxsize)
        self._transport = SyncTransport(session if session is not None else pooled_session())

    def _adopt(self, endpoint: Endpoint, transport: SyncTransport) -> None:
        """Use an endpoint and transport built elsewhere (by a session client)."""
        self._endpoint = endpoint
        self._transport = transport
        self.timeout = endpoint.read_timeout
        self.connect_timeout = endpoint.connect_timeout

    @property
    def session(self) -> requests.Session:
        """The ``requests.Session`` this client's requests go through."""
        return self._transport.session

    def _run(self, flow: Flow[T]) -> T:
        return run(flow, self._transport)

    def close(self) -> None:
        """Release this client's own connections, if it has any. Clients share one keep-alive
        pool per process by default: its connections go back to the pool after each answer,
        for the next client to reuse. The client stays usable."""
        if self._own_session is not None:
            self._own_session.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} cannot be pickled (it holds credentials)")
