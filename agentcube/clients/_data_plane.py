"""What both data-plane clients share: the router URL, the session header, path encoding."""

from __future__ import annotations

from urllib.parse import quote

import requests

from .._config import ROUTER_URL_ENV, check_name, check_namespace
from .._http import RetryPolicy, ServiceClient
from ..auth import AuthProvider
from ..exceptions import SESSION_HEADER, InvalidArgumentError
from ..kinds import ResourceKind


class RouterClient(ServiceClient):
    """Talks to the sandboxes of one template through the Router."""

    def __init__(
        self,
        kind: ResourceKind,
        name: str,
        namespace: str,
        router_url: str | None,
        *,
        auth_token: str | None,
        auth: AuthProvider | None,
        timeout: float,
        connect_timeout: float,
        retry: RetryPolicy | None,
        session: requests.Session | None,
    ) -> None:
        self.kind = kind
        self.name = check_name(name, "name")
        self.namespace = check_namespace(namespace)
        self._connect(
            router_url,
            ROUTER_URL_ENV,
            "router_url",
            auth=auth,
            auth_token=auth_token,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            session=session,
        )
        self._prefix = kind.invocations_path(self.namespace, self.name)
        self.session_id: str | None = None
        self._headers: dict[str, str] = {}

    def _set_session_id(self, session_id: str) -> None:
        self.session_id = session_id
        self._headers = {SESSION_HEADER: session_id}

    @property
    def router_url(self) -> str:
        return self._http.base_url

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(router_url={self.router_url!r}, namespace={self.namespace!r}, "
            f"name={self.name!r}, session_id={self.session_id!r})"
        )


def encode_subpath(path: str, what: str) -> str:
    """Percent-encode a path below ``invocations/``, one segment at a time.

    Empty segments are dropped (``a//b`` is ``a/b``, a leading ``/`` is dropped: the server takes
    absolute paths relative to the sandbox). ``.`` and ``..`` segments are encoded so that no
    HTTP library normalises them away: the path reaches the server as written.
    """
    if not isinstance(path, str):
        raise InvalidArgumentError(f"{what} must be a string, not {type(path).__name__}")
    if "\0" in path:
        raise InvalidArgumentError(f"{what} must not contain a NUL character")
    out = []
    for segment in path.split("/"):
        if not segment:
            continue
        if segment in (".", ".."):
            out.append(segment.replace(".", "%2E"))
        else:
            out.append(quote(segment, safe=""))
    return "/".join(out)
