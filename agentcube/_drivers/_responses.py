"""What an error keeps of an HTTP answer, whichever transport received it.

Both drivers hand errors a *detached* ``requests.Response`` (so that every ``APIError`` is also
a ``requests.HTTPError`` with a working ``.response``, sync or async): status, headers and body
scrubbed of the credentials that were sent, and a request with its method and URL but no
credential header and no body.

Relies on: ``Response._content`` / ``_content_consumed`` (a response built with its body
already read, as requests builds none itself); traceback frames' ``clear()`` to drop the
library frames' locals, which hold the request and its credential.
"""

from __future__ import annotations

import base64
import datetime
import os
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from ..exceptions import _scrub

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def sent_secrets(authorization: str | None, url: str | None) -> tuple[str, ...]:
    """What was sent as a credential: the ``Authorization`` value (and its token alone), and
    the credentials of the proxy the environment names for ``url`` (a proxy may echo its
    ``Proxy-Authorization``)."""
    found: list[str] = []
    if authorization:
        found += [authorization, authorization.partition(" ")[2]]
    if url:
        found += _proxy_secrets(url)
    return tuple(s for s in found if s)


def _proxy_secrets(url: str) -> list[str]:
    try:
        proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    except Exception:
        return []
    if not proxy or "@" not in proxy:
        return []
    parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    userinfo = f"{user}:{password}"
    basic = base64.b64encode(userinfo.encode("utf-8")).decode("ascii")
    # A short password alone is not scrubbed: it would blank out ordinary words.
    return [userinfo, basic, parts.netloc.rpartition("@")[0]] + (
        [password] if len(password) >= 4 else []
    )


def scrub_bytes(content: bytes, secrets: Iterable[str]) -> bytes:
    for secret in secrets:
        encoded = secret.encode("utf-8")
        if encoded and encoded in content:
            content = content.replace(encoded, b"[secure]")
    return content


def detached_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    url: str | None,
    reason: str | None,
    encoding: str | None = None,
    elapsed: datetime.timedelta | None = None,
    method: str | None = None,
    request_url: str | None = None,
    request_headers: Mapping[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> requests.Response:
    """A ``requests.Response`` for an error (or a caller) to keep; see the module docstring."""
    copy = requests.Response()
    copy.status_code = status
    copy.headers = CaseInsensitiveDict(
        {k: _scrub(v, secrets) for k, v in headers.items()} if secrets else headers
    )
    copy._content = scrub_bytes(content, secrets)
    copy._content_consumed = True  # type: ignore[attr-defined]
    copy.encoding = encoding
    copy.url = url  # type: ignore[assignment]
    copy.reason = reason  # type: ignore[assignment]
    if elapsed is not None:
        copy.elapsed = elapsed
    if method is not None:
        request = requests.PreparedRequest()
        request.method = method
        request.url = request_url
        request.headers = CaseInsensitiveDict(
            {k: v for k, v in (request_headers or {}).items() if k.lower() not in _SECRET_HEADERS}
        )
        request.body = None
        copy.request = request
    return copy


def library_prefixes(*modules: object) -> tuple[str, ...]:
    """Source directories of HTTP library modules (whose frames hold requests in locals)."""
    return tuple(os.path.dirname(getattr(m, "__file__", None) or "") + os.sep for m in modules)


def forget_library_locals(exc: BaseException, prefixes: tuple[str, ...]) -> None:
    """Clear the locals of the finished library frames (files under ``prefixes``) in ``exc``'s
    traceback and its chain: they hold the request, credential included, and traceback printers
    show locals."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.startswith(prefixes):
                try:
                    tb.tb_frame.clear()
                except RuntimeError:  # still executing
                    pass
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
