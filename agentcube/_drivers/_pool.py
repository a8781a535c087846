"""The sync driver's connections: one keep-alive pool per process, watched, renewed on fork.

Every client's ``requests.Session`` (its own cookies) sends through one process-wide adapter,
so a new client per sandbox reuses the connections of the clients before it; a client given
pool sizes gets an adapter of its own. Both kinds of adapter build urllib3 pools of the
classes below, and a forked child gets new, empty pools in the same adapters.

Relies on urllib3 and requests internals, each for one reason:
- ``PoolManager.pool_classes_by_scheme``: the only hook to make a pool manager build our pools.
- ``HTTPConnectionPool.ConnectionCls``: the connection class a pool builds (to tell the
  watchdog which connection an attempt is on).
- ``urlopen(enforce_content_length=...)``: urllib3 1.26 takes a connection closed early for the
  end of the body unless asked (urllib3 2 checks by default).
- ``HTTPAdapter._pool_connections`` / ``_pool_maxsize`` / ``_pool_block``: the sizes an adapter
  was made with, to renew its pool manager in a forked child.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ._environment import bare_session
from ._watchdog import watchdog

_POOL_MAXSIZE = 64  # idle connections kept per host; more concurrent requests still work
_pool_lock = threading.RLock()
_pool: HTTPAdapter | None = None
# Adapters of clients given pool sizes of their own: renewed in a forked child like _pool.
_own_pools: weakref.WeakSet[HTTPAdapter] = weakref.WeakSet()


def _watched(cls: Any) -> Any:
    """A urllib3 connection class that tells the current attempt's watch it carries it."""

    class Watched(cls):  # type: ignore[misc]
        def request(self, *args: Any, **kwargs: Any) -> Any:
            watch = watchdog.current()
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
    session = bare_session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _forget_pool() -> None:
    """In a forked child: never share the parent's sockets; open new ones.

    Clients made before the fork keep the adapter they mounted, so the adapter itself gets a
    new, empty pool (the parent's sockets are left alone, not closed: they are the parent's).
    """
    global _pool_lock
    _pool_lock = threading.RLock()
    for adapter in [_pool, *_own_pools]:
        if adapter is not None:
            adapter.init_poolmanager(
                getattr(adapter, "_pool_connections", 10),
                getattr(adapter, "_pool_maxsize", _POOL_MAXSIZE),
                getattr(adapter, "_pool_block", False),
            )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
