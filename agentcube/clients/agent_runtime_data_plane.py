"""Client of an agent-runtime sandbox, through the Router: bootstrap a session and invoke it."""

from __future__ import annotations

import logging
from typing import Any

import requests

from .._config import ROUTER_URL_ENV, check_session_id
from .._drivers._sync import SyncTransport, detached
from .._flows import agent_runtime
from .._flows._common import RouterTarget
from .._protocol import Endpoint, RetryPolicy
from .._wire import SESSION_HEADER
from ..auth import AuthProvider
from ..exceptions import InvalidArgumentError
from ..kinds import AGENT_RUNTIME
from ._base import ServiceClient

__all__ = ["AgentRuntimeDataPlaneClient"]

_LOGGER = logging.getLogger(f"{__name__}.AgentRuntimeDataPlaneClient")


class AgentRuntimeDataPlaneClient(ServiceClient):
    """Talks to the sessions of one AgentRuntime template through the Router.

    Args:
        router_url: the Router (``ROUTER_URL`` when None). A path prefix in it is kept.
        namespace: the template's namespace.
        agent_name: the AgentRuntime template.
        timeout: read timeout in seconds for :meth:`invoke` (bootstraps wait at least 150 s).
        connect_timeout: connect timeout in seconds.
        pool_connections, pool_maxsize: as for :class:`~agentcube.clients.ControlPlaneClient`.
        auth: an :class:`~agentcube.auth.AuthProvider` for the Router (none by default).
        retry, session: the retry policy and a ``requests.Session`` to send through.

    Attributes:
        router_url, namespace, agent_name, base_url, timeout, connect_timeout, session, logger.

    Raises:
        InvalidArgumentError: bad names or URL (a ValueError). Nothing is sent.
    """

    SESSION_HEADER = SESSION_HEADER

    def __init__(
        self,
        router_url: str | None,
        namespace: str,
        agent_name: str,
        timeout: float = 120,
        connect_timeout: float = 5.0,
        pool_connections: int = 10,
        pool_maxsize: int = 10,
        auth: AuthProvider | None = None,
        *,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.logger = _LOGGER
        self.namespace = namespace
        self.agent_name = agent_name
        if auth is not None and not callable(getattr(auth, "get_token", None)):
            raise InvalidArgumentError("auth must have a get_token() method (an AuthProvider)")
        self._setup(
            router_url,
            ROUTER_URL_ENV,
            "router_url",
            auth=auth,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            session=session,
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
        )
        self._target = RouterTarget.of(self._endpoint, AGENT_RUNTIME, namespace, agent_name)
        self.router_url = self._endpoint.base_url
        self.base_url = self.router_url + self._target.prefix

    def __repr__(self) -> str:
        return f"AgentRuntimeDataPlaneClient(base_url={self.base_url!r})"

    def target(self, session_id: str | None) -> RouterTarget:
        """Where requests about ``session_id`` go (for the session clients)."""
        if session_id is None:
            return self._target
        return RouterTarget.with_prefix(
            self._endpoint, self._target.prefix, check_session_id(session_id)
        )

    def bootstrap_session_id(self) -> str:
        """Create a session with a bare ``GET invocations/`` and return its id.

        The id comes from the ``x-agentcube-session-id`` header, also when the agent answered
        4xx or 5xx for that path (the session exists all the same). Sent once.

        Raises:
            SessionError: a success answer without a valid session id (also a ValueError).
            APIError: the Router refused without opening a session (an unknown agent is a
                NotFoundError; a requests.HTTPError).
            APIConnectionError: the Router could not be reached.
        """
        return self._run(agent_runtime.bootstrap(self._target))

    def invoke(
        self,
        session_id: str,
        payload: Any,
        timeout: float | None = None,
        path: str = "",
    ) -> requests.Response:
        """POST ``payload`` as JSON to ``invocations/<path>`` of ``session_id`` and return the
        ``requests.Response`` whatever its status (call ``raise_for_status()`` on it).

        The response is detached: its body is read, and its ``request`` keeps no credential.

        Raises:
            InvalidArgumentError: bad session id, path, timeout or payload (nothing is sent).
            APIConnectionError / APITimeoutError: no answer.
        """
        reply = self._run(
            agent_runtime.invoke(
                self.target(session_id), payload, timeout, path, raise_errors=False
            )
        )
        if reply.status < 300:  # an error answer is detached already
            return detached(reply.raw, reply.content)
        response = reply.raw
        assert isinstance(response, requests.Response)
        return response


def for_session(
    endpoint: Endpoint, transport: SyncTransport, namespace: str, agent_name: str
) -> AgentRuntimeDataPlaneClient:
    """The data plane of a session client, which validated every part already (its
    Router endpoint and names) and shares its transport."""
    client = AgentRuntimeDataPlaneClient.__new__(AgentRuntimeDataPlaneClient)
    client.logger = _LOGGER
    client.namespace = namespace
    client.agent_name = agent_name
    client._adopt(endpoint, transport)
    client._target = RouterTarget.with_prefix(
        endpoint, AGENT_RUNTIME.invocations_path(namespace, agent_name)
    )
    client.router_url = endpoint.base_url
    client.base_url = client.router_url + client._target.prefix
    return client
