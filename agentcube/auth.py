"""Credentials: where the bearer token sent to AgentCube comes from.

An :class:`AuthProvider` is anything with ``get_token() -> str | None``. The SDK calls it before
every request and sends ``Authorization: Bearer <token>`` when it returns a token.
Tokens never appear in ``repr()``, ``str()``, logs or error messages.

:class:`ServiceAccountAuth`'s token fetch is a flow (:meth:`ServiceAccountAuth.token_flow`)
that it runs under its own lock on a driver (the sync one for
:meth:`~ServiceAccountAuth.get_token`, the async one for ``aget_token``). How a token becomes a
header is :mod:`agentcube._credentials`, which the drivers use without this module.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import requests

from ._config import SERVICE_ACCOUNT_TOKEN_PATH, check_seconds, validate_url
from ._credentials import SENDABLE_TOKEN, answers_at_once, check_bearer_token
from ._drivers._sync import SyncTransport, run
from ._protocol import ONCE, Call, Endpoint, Flow, Reply, RetryPolicy
from .exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    InvalidArgumentError,
)

__all__ = ["AuthProvider", "ServiceAccountAuth", "TokenAuth"]

logger = logging.getLogger(__name__)


@runtime_checkable
class AuthProvider(Protocol):
    """Supplies the bearer token for each request (``None`` sends no Authorization header)."""

    def get_token(self) -> str | None:
        """Return the token to send now, or None."""
        ...


@answers_at_once
class TokenAuth:
    """A fixed bearer token.

    Raises:
        InvalidArgumentError: the token is empty or not a string.
    """

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or not token.strip():
            raise InvalidArgumentError("TokenAuth needs a non-empty token string")
        if any(c in token for c in "\r\n\0"):
            raise InvalidArgumentError("the token must not contain line breaks or NUL")
        self._token = check_bearer_token(token.strip())

    def get_token(self) -> str:
        return self._token

    def __repr__(self) -> str:
        return "TokenAuth(token='[secure]')"


class _ServiceAccountTokenFile:
    """The Kubernetes service-account token, re-read when the kubelet rotates the file."""

    __slots__ = ("_lock", "_mtime", "_path", "_token")

    def __init__(self, path: str = SERVICE_ACCOUNT_TOKEN_PATH) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._token: str | None = None

    @classmethod
    def if_present(cls, path: str = SERVICE_ACCOUNT_TOKEN_PATH) -> _ServiceAccountTokenFile | None:
        return cls(path) if os.path.isfile(path) else None

    def get_token(self) -> str | None:
        try:
            mtime = os.stat(self._path).st_mtime
        except OSError:
            return self._token
        with self._lock:
            if mtime != self._mtime:
                with open(self._path, encoding="utf-8") as f:
                    self._token = f.read().strip() or None
                self._mtime = mtime
            return self._token

    def __repr__(self) -> str:
        return f"ServiceAccountTokenFile(path={self._path!r})"


_REFRESH_BUFFER_SECONDS = 30
_DEFAULT_TOKEN_TIMEOUT = (5.0, 30.0)  # (connect, read)
_TOKEN_OK = frozenset(range(300, 600))  # every answer is read here, errors included


class ServiceAccountAuth:
    """OAuth2 client-credentials: fetches a token from ``token_url`` and caches it.

    Sends ``POST token_url`` with form fields ``grant_type=client_credentials``, ``client_id``,
    ``client_secret`` and, if given, ``scope``, plus any ``headers`` (a ``Host`` for a
    Keycloak behind a proxy, say). The token is reused for ``max(expires_in - refresh_margin,
    expires_in / 2)`` seconds (``expires_in``: one hour when the server does not say), then
    fetched again. Safe to share between threads: concurrent callers wait for one fetch.

    Args:
        token_url, client_id, client_secret: the token endpoint and the client's credentials.
        scope: sent when given.
        headers: extra request headers for the token request.
        timeout: seconds, or a ``(connect, read)`` pair.
        refresh_margin: how early (seconds) a token is replaced before it expires.
        session: a ``requests.Session`` to send through.

    Raises:
        InvalidArgumentError: a bad URL, credential, header, timeout or margin (at construction).
        AuthenticationError (from :meth:`get_token`): the token endpoint refused the credentials
            or answered badly.
        APIConnectionError / APITimeoutError (from :meth:`get_token`): it could not be reached.
    The client secret and the tokens never appear in messages, logs, errors or ``repr()``; the
    token request is never redirected.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] = _DEFAULT_TOKEN_TIMEOUT,
        *,
        refresh_margin: float = _REFRESH_BUFFER_SECONDS,
        session: requests.Session | None = None,
    ) -> None:
        self.token_url = validate_url(token_url, "token_url")
        if not isinstance(client_id, str) or not client_id:
            raise InvalidArgumentError("ServiceAccountAuth needs a client_id")
        if not isinstance(client_secret, str) or not client_secret:
            raise InvalidArgumentError("ServiceAccountAuth needs a client_secret")
        if scope is not None and not isinstance(scope, str):
            raise InvalidArgumentError("scope must be a string")
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.headers = _check_headers(headers)
        self.connect_timeout, self.timeout = _check_timeout_pair(timeout)
        if (
            isinstance(refresh_margin, bool)
            or not isinstance(refresh_margin, (int, float))
            or not 0 <= refresh_margin < math.inf
        ):
            raise InvalidArgumentError("refresh_margin must be a finite number of seconds >= 0")
        self.refresh_margin = float(refresh_margin)
        self._session = session
        self._transport: SyncTransport | None = None
        self._lock = threading.Lock()
        self._async_locks: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._token: str | None = None
        self._expires_at = 0.0
        _instances.add(self)

    def get_token(self) -> str:
        """The cached token, or a new one when it is about to expire."""
        with self._lock:  # concurrent callers wait for one fetch
            token = self.cached_token()
            if token is not None:
                return token
            if self._transport is None:
                self._transport = SyncTransport(self._session)
            return run(self.token_flow(), self._transport)

    async def aget_token(self) -> str:
        """:meth:`get_token` for asyncio: the fetch goes through aiohttp (the ``async`` extra) and
        never blocks the event loop; concurrent tasks of one loop wait for one fetch. The
        ``session`` given to the constructor is not used here."""
        token = self.cached_token()
        if token is not None:
            return token  # without importing aiohttp
        from ._drivers._async import arun, loop_lock, shared_transport  # aiohttp: optional

        async with loop_lock(self._async_locks):  # the loop's tasks wait for one fetch
            token = self.cached_token()
            if token is not None:
                return token
            return await arun(self.token_flow(), shared_transport())

    def cached_token(self) -> str | None:
        """The token kept from the last fetch while it is fresh, else None (no I/O)."""
        token = self._token
        return token if token and time.monotonic() < self._expires_at else None

    def token_flow(self) -> Flow[str]:
        """Fetch a new token and keep it, as a flow (see :mod:`agentcube._protocol`) that the
        drivers run under this provider's lock (:meth:`get_token`, :meth:`aget_token`)."""
        return self._keep((yield from self._fetch_flow()))

    def invalidate(self) -> None:
        """Forget the cached token so that the next request fetches a new one."""
        with self._lock:
            self._token = None

    def _keep(self, answer: tuple[str, float]) -> str:
        token, lifetime = answer
        self._token = token
        self._expires_at = time.monotonic() + max(lifetime - self.refresh_margin, lifetime / 2)
        return token

    def _form(self) -> bytes:
        from urllib.parse import urlencode

        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
        }
        if self.scope:
            form["scope"] = self.scope
        return urlencode(form).encode("ascii")

    def _scrubbed(self) -> tuple[str, ...]:
        from urllib.parse import quote_plus

        return (self._client_secret, quote_plus(self._client_secret))

    def _fetch_flow(self) -> Flow[tuple[str, float]]:
        """One token request, as a flow (see agentcube._protocol): sent once, never redirected,
        every answer read here. No local variable of it holds the secret."""
        logger.debug("Fetching token from %s", self.token_url)
        endpoint = Endpoint(self.token_url, None, self.connect_timeout, self.timeout, _ONCE)
        try:
            reply = yield Call(
                endpoint,
                "POST",
                "",
                headers={"Accept": "application/json", **self.headers},
                body=self._form(),
                content_type="application/x-www-form-urlencoded",
                retry=ONCE,
                ok=_TOKEN_OK,
                secrets=self._scrubbed(),
            )
        except APIConnectionError as exc:
            error_type = APITimeoutError if isinstance(exc, APITimeoutError) else APIConnectionError
            raise error_type(
                f"cannot reach token endpoint {self.token_url}: {exc}".replace(
                    self._client_secret, "[secure]"
                )
            ) from None
        token, lifetime, problem = self._parse(reply)
        if token is None:
            raise AuthenticationError(
                f"token endpoint {self.token_url} refused the client credentials "
                f"(HTTP {reply.status}{': ' + problem if problem else ''})",
                response=reply.raw if reply.status >= 300 else None,
                status_code=reply.status,
                server_message=problem,
            )
        return token, lifetime

    def _parse(self, reply: Reply) -> tuple[str | None, float, str | None]:
        try:
            # Lenient on purpose: a NaN expires_in only means "no lifetime given".
            body = json.loads(reply.json_text())
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            return None, 0.0, "the answer is not a JSON object"
        token = body.get("access_token")
        if 200 <= reply.status < 300 and isinstance(token, str) and token:
            if SENDABLE_TOKEN.fullmatch(token) is None:
                return None, 0.0, "the access_token cannot be sent in an HTTP header"
            return token, _lifetime(body.get("expires_in")), None
        # Only the standard error code is echoed: a description might repeat what we sent.
        code = body.get("error")
        if isinstance(code, str) and code.isascii() and len(code) <= 64:
            return None, 0.0, code.replace(self._client_secret, "[secure]")
        return None, 0.0, None

    def __repr__(self) -> str:
        return (
            f"ServiceAccountAuth(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            "client_secret='[secure]')"
        )

    def __reduce__(self) -> Any:
        raise TypeError("ServiceAccountAuth cannot be pickled (it holds a client secret)")


def _lifetime(expires_in: object) -> float:
    """Seconds a token lives: ``expires_in`` as a number or numeric string, else one hour."""
    if isinstance(expires_in, str):
        try:
            expires_in = float(expires_in.strip())
        except ValueError:
            return 3600.0
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
        return 3600.0
    try:
        lifetime = float(expires_in)
    except OverflowError:  # an integer too large for a float
        return 3600.0
    if not math.isfinite(lifetime) or lifetime > 10 * 365 * 86400:
        return 3600.0  # NaN, Infinity or centuries would cache the token forever
    return max(lifetime, 0.0)


def _check_headers(headers: object) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str)
        and isinstance(v, str)
        and _HEADER_NAME.fullmatch(k)
        and not any(c in v for c in "\r\n\0")
        for k, v in headers.items()
    ):
        raise InvalidArgumentError("headers must map header names to values without line breaks")
    return dict(headers)


def _check_timeout_pair(timeout: object) -> tuple[float, float]:
    if isinstance(timeout, tuple) and len(timeout) == 2:
        connect, read = timeout
        return check_seconds(connect, "timeout[0]"), check_seconds(read, "timeout[1]")
    seconds = check_seconds(timeout, "timeout")
    return seconds, seconds


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ONCE = RetryPolicy(max_attempts=2)
_instances: weakref.WeakSet[ServiceAccountAuth] = weakref.WeakSet()


def _reset_locks_in_child() -> None:
    """A forked child must not wait forever on a lock a parent thread held at the fork."""
    for auth in list(_instances):
        auth._lock = threading.Lock()
        auth._async_locks = weakref.WeakKeyDictionary()
        auth._transport = None  # the parent's connections are not the child's


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_in_child)


def resolve_auth(
    auth: AuthProvider | None, auth_token: str | None, *, service_account: bool = False
) -> AuthProvider | None:
    """The credential to send: ``auth`` wins, then ``auth_token`` (an empty or blank token
    means none), then, where ``service_account`` (WorkloadManager requests), the Kubernetes
    service-account token file when present.

    Raises:
        InvalidArgumentError: ``auth`` has no ``get_token()``, or the token cannot be sent.
    """
    if auth is not None:
        if not callable(getattr(auth, "get_token", None)):
            raise InvalidArgumentError("auth must have a get_token() method (an AuthProvider)")
        return auth
    if auth_token is not None:
        if not isinstance(auth_token, str):
            raise InvalidArgumentError("auth_token must be a string")
        if auth_token.strip():
            return TokenAuth(auth_token)
    if service_account:
        return _ServiceAccountTokenFile.if_present()
    return None
