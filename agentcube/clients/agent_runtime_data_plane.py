"""Client of an agent-runtime sandbox, through the Router: bootstrap a session and invoke it."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import requests

from .._config import check_server_session_id, check_session_id, check_timeout
from .._http import RetryPolicy
from ..auth import AuthProvider
from ..exceptions import SESSION_HEADER, InvalidArgumentError, SessionError, error_from_response
from ..kinds import AGENT_RUNTIME
from ._data_plane import RouterClient

logger = logging.getLogger(__name__)

__all__ = ["AgentRuntimeDataPlaneClient"]

# The read timeout of a create (WorkloadManager POST or Router bootstrap): longer than the
# 2 minutes after which the WorkloadManager answers 504 for a sandbox that is not ready.
CREATE_READ_TIMEOUT = 150.0

# A bare GET may be answered 4xx or 5xx by the agent itself: the session exists all the same,
# and the router's session header names it.
_BOOTSTRAP_OK = frozenset(range(400, 600))


class AgentRuntimeDataPlaneClient(RouterClient):
    """Invokes one agent-runtime session through the Router.

    Args:
        agent_name: the AgentRuntime template.
        namespace: its namespace.
        router_url: base URL; defaults to the ``ROUTER_URL`` env var.
        session_id: an existing session; without one, call :meth:`bootstrap_session`.
        timeout: read timeout in seconds for :meth:`invoke`.
        connect_timeout: connect timeout in seconds.

    Raises:
        InvalidArgumentError: bad names, session id or URL (nothing is sent).
    """

    def __init__(
        self,
        agent_name: str,
        namespace: str = "default",
        router_url: str | None = None,
        session_id: str | None = None,
        auth_token: str | None = None,
        *,
        auth: AuthProvider | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(
            AGENT_RUNTIME,
            agent_name,
            namespace,
            router_url,
            auth_token=auth_token,
            auth=auth,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            session=session,
        )
        if session_id is not None:
            self._set_session_id(check_session_id(session_id))

    @property
    def agent_name(self) -> str:
        return self.name

    def bootstrap_session(self) -> str:
        """Create a session with a bare ``GET invocations/`` and return its id.

        The id is read from the ``x-agentcube-session-id`` header, also when the agent answered
        4xx or 5xx for that path (the session exists all the same). Not retried once sent (a
        retry could create a second session).

        Raises:
            SessionError: a success answer without a valid session id.
            APIError: the router refused or failed without opening a session (no session
                header; an unknown agent is NotFoundError).
            APIConnectionError: the router could not be reached.
        """
        # The router creates the sandbox before it answers; like a create through the
        # WorkloadManager, wait out its 2-minute bound: giving up earlier would leave a sandbox
        # being created that no client can name.
        response = self._http.request(
            "GET",
            self._prefix,
            ok_statuses=_BOOTSTRAP_OK,
            idempotent=False,
            timeout=max(self._http.read_timeout, CREATE_READ_TIMEOUT),
        )
        response.close()
        header = response.headers.get(SESSION_HEADER)
        if not header and response.status_code >= 400:
            # The router itself refused (unknown agent, bad token): no session was opened.
            raise error_from_response(response)
        if not header:
            raise SessionError(
                f"the router answered HTTP {response.status_code} without an "
                f"{SESSION_HEADER} header; no session was opened"
            )
        session_id = check_server_session_id(header)
        self._set_session_id(session_id)
        logger.info("bootstrapped agent-runtime session %s", session_id)
        return session_id

    def invoke(self, payload: Any, timeout: float | None = None, path: str = "") -> Any:
        """POST ``payload`` as JSON to ``invocations/<path>``; return the JSON answer, or its
        text when it is not JSON. Not retried once sent.

        Raises:
            InvalidArgumentError: bad path or timeout (nothing is sent).
            SessionError: no session yet.
            APIError: the agent or the router answered 4xx/5xx (a requests.HTTPError).
            APIConnectionError / APITimeoutError: no answer.
        """
        if self.session_id is None:
            raise SessionError("no session: call bootstrap_session() first")
        response = self._http.request(
            "POST",
            self._prefix + encode_invoke_path(path),
            json=payload,
            headers=self._headers,
            timeout=check_timeout(timeout, "timeout"),
            session_id=self.session_id,
            session_scoped=True,
        )
        try:
            return response.json()
        except ValueError:
            return response.text


def encode_invoke_path(path: str) -> str:
    """Encode the path (and optional query) an agent is invoked at; refuse dot segments."""
    if not isinstance(path, str):
        raise InvalidArgumentError("path must be a string")
    if not path:
        return ""
    if any(c in path for c in "\0\r\n#"):
        raise InvalidArgumentError("path must not contain NUL, line breaks or '#'")
    route, sep, query = path.partition("?")
    segments = route.lstrip("/").split("/")
    if any(s in (".", "..") for s in segments):
        raise InvalidArgumentError(f"path must not contain '.' or '..' segments: {path!r}")
    encoded = quote(route.lstrip("/"), safe="/:@!$&'()*+,;=-._~")
    return encoded + sep + quote(query, safe="=&:@!$'()*+,;/?-._~")
