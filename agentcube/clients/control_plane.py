"""Client of the WorkloadManager (control plane): create and delete sessions of any kind."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import requests

from .._config import WORKLOAD_MANAGER_URL_ENV
from .._drivers._sync import SyncTransport
from .._flows import control_plane
from .._protocol import Call, Endpoint, RetryPolicy
from ..auth import AuthProvider, resolve_auth
from ..exceptions import AgentCubeError
from ..kinds import CODE_INTERPRETER, ResourceKind
from ._base import ServiceClient

if TYPE_CHECKING:
    from ..models import CreateSessionResponse

__all__ = ["ControlPlaneClient"]

_LOGGER = logging.getLogger(f"{__name__}.ControlPlaneClient")


class ControlPlaneClient(ServiceClient):
    """Creates and deletes sandbox sessions through the WorkloadManager.

    Args:
        workload_manager_url: base URL; defaults to the ``WORKLOAD_MANAGER_URL`` env var.
        auth_token: a fixed bearer token (see also ``auth``).
        timeout: read timeout in seconds (creates always wait at least 150 s, past the
            server's own 2-minute bound).
        connect_timeout: connect timeout in seconds.
        pool_connections, pool_maxsize: without them the client uses the process-wide
            keep-alive pool; with other values it gets connections of its own, sized so.
        auth: an :class:`~agentcube.auth.AuthProvider`; wins over ``auth_token``. With neither,
            the Kubernetes service-account token file is used when present.
        retry: retry policy (creates are never retried once sent).
        session: a ``requests.Session`` to send through (it stays yours).

    Attributes:
        base_url: the WorkloadManager URL (without a trailing ``/``).

    Raises:
        InvalidArgumentError: no URL configured (the message names the argument and the env
            var), a bad URL or a bad timeout. Nothing is sent.
    """

    def __init__(
        self,
        workload_manager_url: str | None = None,
        auth_token: str | None = None,
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
        self._auth = resolve_auth(auth, auth_token, service_account=True)
        self._setup(
            workload_manager_url,
            WORKLOAD_MANAGER_URL_ENV,
            "workload_manager_url",
            auth=self._auth,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            session=session,
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
        )

    @classmethod
    def _from_endpoint(cls, endpoint: Endpoint, transport: SyncTransport) -> ControlPlaneClient:
        """The control-plane client of a session client (which resolved the endpoint)."""
        client = cls.__new__(cls)
        client.logger = _LOGGER
        client._auth = endpoint.auth
        client._adopt(endpoint, transport)
        return client

    @property
    def base_url(self) -> str:
        return self._endpoint.base_url

    def __repr__(self) -> str:
        return f"ControlPlaneClient(workload_manager_url={self.base_url!r})"

    def create(
        self,
        kind: ResourceKind,
        name: str,
        namespace: str = "default",
        *,
        ttl: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> CreateSessionResponse:
        """Create a session of ``kind`` from template ``name``: ``POST /v1/<segment>``.

        Sends ``{"name", "namespace", "ttl", "metadata"}`` once: a create is never retried
        after it may have reached the server (a retry could make a second sandbox).

        Raises:
            InvalidArgumentError: bad name, namespace, ttl or metadata (nothing is sent).
            NotFoundError: no template of that name in that namespace.
            SessionError: the answer has no valid ``sessionId``.
            APIError / APIConnectionError: any other failure.
        """
        sent: list[Call] = []
        self._run(
            control_plane.create_session(
                self._endpoint, kind, name, namespace, ttl=ttl, metadata=metadata, sent=sent
            )
        )
        answer = sent[-1].answer
        assert answer is not None
        return control_plane.parse_create_answer(answer, kind)

    def delete(
        self,
        kind: ResourceKind,
        session_id: str,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> bool:
        """Delete a session of any kind: ``DELETE /v1/<segment>/sessions/<id>``.

        Retried on connection errors and 502/503/504. ``timeout`` is the read timeout of each
        attempt (default: this client's); ``deadline`` (``time.monotonic()``) bounds them all.

        Returns:
            True if this call deleted it, False if the WorkloadManager no longer had it.
        Raises:
            InvalidArgumentError: invalid session id (nothing is sent).
            APIError / APIConnectionError: the delete failed; the session may still exist.
        """
        return self._run(
            control_plane.delete_session(
                self._endpoint, kind, session_id, timeout=timeout, deadline=deadline
            )
        )

    # -- the historic code-interpreter API -----------------------------------------------------

    def create_session(
        self,
        name: str = "my-interpreter",
        namespace: str = "default",
        metadata: dict[str, Any] | None = None,
        ttl: int = 3600,
    ) -> str:
        """Create a code-interpreter session and return its id (see :meth:`create`)."""
        return self.create(CODE_INTERPRETER, name, namespace, ttl=ttl, metadata=metadata).session_id

    def delete_session(self, session_id: str) -> bool:
        """Delete a code-interpreter session.

        Returns:
            True once it is gone (also when the WorkloadManager no longer had it); False when
            the delete failed (the failure is logged at ERROR): the session may still exist.
        Raises:
            InvalidArgumentError: invalid session id (nothing is sent).
        """
        try:
            self.delete(CODE_INTERPRETER, session_id)
        except (AgentCubeError, requests.RequestException) as exc:
            if isinstance(exc, ValueError):  # bad input is the caller's to fix, not a failure
                raise
            self.logger.error("Failed to delete session %s: %s", session_id, exc)
            return False
        return True
