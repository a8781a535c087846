"""Credentials as the drivers see them: the one place a provider's token becomes an
``Authorization`` header.

The drivers import this module, never :mod:`agentcube.auth` (which defines the providers and
runs their token fetches on a driver): the import arrows all point one way.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from .exceptions import InvalidArgumentError

_T = TypeVar("_T", bound=type)

# Printable ASCII, no surrounding spaces: anything else would be refused (or mangled) by the
# HTTP stack, whose error messages quote the header value, token included.
SENDABLE_TOKEN = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def check_bearer_token(token: str) -> str:
    """Return ``token`` if it can be sent as ``Authorization: Bearer <token>``.

    Raises:
        InvalidArgumentError: it cannot (control characters, line breaks, non-ASCII, surrounding
            spaces). The message never contains the token.
    """
    if not isinstance(token, str) or SENDABLE_TOKEN.fullmatch(token) is None:
        raise InvalidArgumentError(
            "the auth provider returned a token that cannot be sent in an Authorization header "
            "(only printable ASCII is allowed, without line breaks or surrounding spaces); "
            "the token is not shown"
        )
    return token


def bearer_header_value(provider: Any) -> str | None:
    """The ``Authorization`` value for the provider's current token, or None for no header."""
    return _bearer(provider.get_token())


async def abearer_header_value(provider: Any) -> str | None:
    """:func:`bearer_header_value` under asyncio: a provider with ``aget_token()`` (as
    ``ServiceAccountAuth``) is awaited, one of an :func:`answers_at_once` type asked directly,
    and any other provider's ``get_token()`` runs in a thread (it may block: a file, a network
    fetch)."""
    aget = getattr(provider, "aget_token", None)
    if aget is not None:
        token = await aget()
    elif type(provider) in _ANSWERS_AT_ONCE:
        token = provider.get_token()
    else:
        import asyncio

        token = await asyncio.to_thread(provider.get_token)
    return _bearer(token)


def _bearer(token: str | None) -> str | None:
    if token is None or token == "":
        return None
    return "Bearer " + check_bearer_token(token)


_ANSWERS_AT_ONCE: set[type] = set()


def answers_at_once(cls: _T) -> _T:
    """Class decorator: this exact type's ``get_token()`` returns a fixed token without
    blocking, so the async driver asks it in the event loop rather than in a worker thread
    (a subclass is not included: it may override ``get_token()``)."""
    _ANSWERS_AT_ONCE.add(cls)
    return cls
