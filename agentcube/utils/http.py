"""``create_session``: a requests.Session with a connection pool of the given size."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter

__all__ = ["create_session"]


def create_session(pool_connections: int = 10, pool_maxsize: int = 10) -> requests.Session:
    """A new ``requests.Session`` with one ``HTTPAdapter`` (of these pool sizes, no retries)
    mounted for ``http://`` and ``https://``; no headers, auth or timeouts are set."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_connections, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
