"""AgentRuntimeClient: invoke an agent running in an agent-runtime sandbox."""

from __future__ import annotations

import logging
from typing import Any

from ._arguments import AgentRuntimeArguments
from ._flows.agent_runtime import answer_of, invoke
from .clients import agent_runtime_data_plane
from .clients.agent_runtime_data_plane import AgentRuntimeDataPlaneClient
from .kinds import AGENT_RUNTIME
from .session import ManagedSessionClient

__all__ = ["AgentRuntimeClient"]


class AgentRuntimeClient(AgentRuntimeArguments, ManagedSessionClient):
    """An agent-runtime sandbox session.

    Without ``session_id`` it bootstraps a session with a bare ``GET`` to the Router's
    invocations URL and owns it; ``stop()`` (and ``with``) then deletes it through the
    WorkloadManager. With ``session_id`` it attaches (no request), and ``stop()`` keeps the
    session running; ``delete()`` ends it explicitly.

    Args:
        agent_name: the AgentRuntime template.
        namespace: its Kubernetes namespace.
        router_url: defaults to ``ROUTER_URL``.
        verbose: log the SDK's requests (never tokens) to stderr.
        session_id: attach to this session instead of bootstrapping one.
        timeout: read timeout in seconds for :meth:`invoke` (bootstraps wait at least 150 s).
        connect_timeout: connect timeout in seconds.
        auth_token, auth: credentials for both planes, as for
            :class:`~agentcube.CodeInterpreterClient`.
        workload_manager_url: defaults to ``WORKLOAD_MANAGER_URL``. Optional: without it the
            client works, but ``stop()`` of an owned session cannot delete it and warns with
            its id, and ``delete()`` raises.
        retry, workload_manager_auth, router_auth: as for the code-interpreter client.

    Raises:
        InvalidArgumentError: bad argument or missing router URL (nothing is sent).
        SessionError: the router's answer carried no valid session id.
        APIError / APIConnectionError: the bootstrap failed.
    """

    kind = AGENT_RUNTIME
    delete_attached_on_stop = False
    bootstraps_through_router = True
    dp_client: AgentRuntimeDataPlaneClient | None
    logger = logging.getLogger(__name__)

    def _open_data_plane(self, session_id: str) -> AgentRuntimeDataPlaneClient:
        self._open_target(session_id)
        return agent_runtime_data_plane.for_session(
            self._router, self._transport, self.namespace, self.name
        )

    def invoke(self, payload: Any, timeout: float | None = None, path: str = "") -> Any:
        """POST ``payload`` as JSON to the agent at ``invocations/<path>``.

        Returns:
            The JSON answer, or its text when the answer is not JSON.
        Raises:
            APIError: the agent or router answered 4xx/5xx (also a requests.HTTPError).
            APIConnectionError / APITimeoutError: no answer. Not retried (invoke is not
                idempotent) unless the request never reached the Router, or the Router shed it
                (429).
            SessionError: the client is stopped.
        """
        return answer_of(self._run(invoke(self._target(), payload, timeout, path)))
