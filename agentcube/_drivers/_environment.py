"""The sync driver's ``requests.Session``: built without default adapters, and remembering what
the environment adds to a request.

requests looks up proxies, NO_PROXY and CA-bundle variables in ``os.environ`` for every request
(``merge_environment_settings``); with a few dozen variables that scan costs more client CPU
than the rest of a loopback request. Its answer depends on nothing but the environment, the
URL's scheme and host, and the session's own settings, on platforms whose proxy settings all
come from the environment (not macOS or Windows, where urllib also asks the system).

Relies on, each for one reason:
- ``os.environ._data``: the environment compared in full in one C-level dict comparison.
- ``requests.Session.__attrs__``: the list of what ``Session.__init__`` sets, to build a session
  the same way without the two default adapters (each with a urllib3 pool manager) it would
  make only for the shared pool to replace them; any other requests gets its own ``__init__``.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections import OrderedDict
from typing import Any

import requests
from requests.cookies import cookiejar_from_dict
from requests.hooks import default_hooks
from requests.models import DEFAULT_REDIRECT_LIMIT
from requests.utils import default_headers

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


def bare_session() -> requests.Session:
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
