"""Credentials: where the bearer token sent to AgentCube comes from.

An :class:`AuthProvider` is anything with ``get_token() -> str | None``. The SDK calls it before
every request and sends ``Authorization: Bearer <token>`` when it returns a token.
Tokens never appear in ``repr()``, ``str()``, logs or error messages.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from typing import Protocol, runtime_checkable

import requests

from ._config import SERVICE_ACCOUNT_TOKEN_PATH, check_seconds, validate_url
from .exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    InvalidArgumentError,
)

__all__ = ["AuthProvider", "ServiceAccountAuth", "TokenAuth"]

# Printable ASCII, no surrounding spaces: anything else would be refused (or mangled) by the
# HTTP stack, whose error messages quote the header value, token included.
_SENDABLE_TOKEN = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def _check_bearer_token(token: str) -> str:
    """Return ``token`` if it can be sent as ``Authorization: Bearer <token>``.

    Raises:
        InvalidArgumentError: it cannot (control characters, line breaks, non-ASCII, surrounding
            spaces). The message never contains the token.
    """
    if not isinstance(token, str) or _SENDABLE_TOKEN.fullmatch(token) is None:
        raise InvalidArgumentError(
            "the auth provider returned a token that cannot be sent in an Authorization header "
            "(only printable ASCII is allowed, without line breaks or surrounding spaces); "
            "the token is not shown"
        )
    return token


def bearer_header_value(provider: AuthProvider) -> str | None:
    """The ``Authorization`` value for the provider's current token, or None for no header."""
    token = provider.get_token()
    if token is None or token == "":
        return None
    return "Bearer " + _check_bearer_token(token)


@runtime_checkable
class AuthProvider(Protocol):
    """Supplies the bearer token for each request (``None`` sends no Authorization header)."""

    def get_token(self) -> str | None:
        """Return the token to send now, or None."""
        ...


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
        self._token = _check_bearer_token(token.strip())

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


class ServiceAccountAuth:
    """OAuth2 client-credentials: fetches a token from ``token_url`` and caches it.

    Sends ``POST token_url`` with form fields ``grant_type=client_credentials``, ``client_id``,
    ``client_secret`` and, if given, ``scope``. The token is reused until ``refresh_margin``
    seconds before it expires (``expires_in``; one hour when the server does not say), then
    fetched again. Safe to share between threads: concurrent callers wait for one refresh.

    Raises (from :meth:`get_token`):
        AuthenticationError: the token endpoint refused the credentials or answered badly.
        APIConnectionError / APITimeoutError: the token endpoint could not be reached.
    The client secret and the tokens never appear in messages, logs or ``repr()``.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        refresh_margin: float = 60.0,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.token_url = validate_url(token_url, "token_url")
        if not isinstance(client_id, str) or not client_id:
            raise InvalidArgumentError("ServiceAccountAuth needs a client_id")
        if not isinstance(client_secret, str) or not client_secret:
            raise InvalidArgumentError("ServiceAccountAuth needs a client_secret")
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.refresh_margin = float(refresh_margin)
        self.timeout = check_seconds(timeout, "timeout")
        self._session = session or requests.Session()
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def get_token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._refresh_at:
                self._token, lifetime = self._fetch()
                # Refresh refresh_margin early, but never sooner than half-way through the
                # token's life (a short-lived token would otherwise be fetched for every request).
                early = min(self.refresh_margin, lifetime / 2)
                self._refresh_at = time.monotonic() + lifetime - early
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token so that the next request fetches a new one."""
        with self._lock:
            self._token = None

    def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
        }
        if self.scope:
            form["scope"] = self.scope
        try:
            response = self._session.post(
                self.token_url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise APITimeoutError(f"token endpoint {self.token_url} timed out") from None
        except requests.RequestException as exc:
            raise APIConnectionError(
                f"cannot reach token endpoint {self.token_url}: {type(exc).__name__}"
            ) from None
        token, lifetime, problem = self._parse(response)
        if token is None:
            raise AuthenticationError(
                f"token endpoint {self.token_url} refused the client credentials "
                f"(HTTP {response.status_code}{': ' + problem if problem else ''})",
                response=response,
                status_code=response.status_code,
                server_message=problem,
            )
        return token, lifetime

    def _parse(self, response: requests.Response) -> tuple[str | None, float, str | None]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return None, 0.0, "the answer is not a JSON object"
        token = body.get("access_token")
        if response.ok and isinstance(token, str) and token:
            if _SENDABLE_TOKEN.fullmatch(token) is None:
                return None, 0.0, "the access_token cannot be sent in an HTTP header"
            expires_in = body.get("expires_in")
            try:
                lifetime = float(expires_in) if isinstance(expires_in, (int, float)) else 3600.0
            except OverflowError:  # an integer too large for a float
                lifetime = 3600.0
            if not math.isfinite(lifetime):  # NaN or Infinity would cache the token forever
                lifetime = 3600.0
            return token, max(lifetime, 0.0), None
        # Only the standard error code is echoed: a description might repeat what we sent.
        code = body.get("error")
        if isinstance(code, str) and code.isascii() and len(code) <= 64:
            return None, 0.0, self._scrub(code)
        return None, 0.0, None

    def _scrub(self, text: str) -> str:
        return text.replace(self._client_secret, "[secure]")

    def __repr__(self) -> str:
        return (
            f"ServiceAccountAuth(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            "client_secret='[secure]')"
        )


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
