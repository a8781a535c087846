"""Client of the WorkloadManager (control plane): create and delete sessions of any kind."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import requests

from .._config import (
    WORKLOAD_MANAGER_URL_ENV,
    check_name,
    check_namespace,
    check_server_session_id,
    check_session_id,
)
from .._http import RetryPolicy, ServiceClient
from ..auth import AuthProvider
from ..exceptions import InvalidArgumentError, SessionError, error_from_response
from ..kinds import CODE_INTERPRETER, ResourceKind

if TYPE_CHECKING:
    from ..models import CreateSessionResponse

logger = logging.getLogger(__name__)

_NOT_FOUND = frozenset({404})


def _is_workload_manager_error(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("message"), str)


__all__ = ["ControlPlaneClient"]


class ControlPlaneClient(ServiceClient):
    """Creates and deletes sandbox sessions through the WorkloadManager.

    Args:
        workload_manager_url: base URL; defaults to the ``WORKLOAD_MANAGER_URL`` env var.
        auth_token: a fixed bearer token (see also ``auth``).
        auth: an :class:`~agentcube.auth.AuthProvider`; wins over ``auth_token``. With neither,
            the Kubernetes service-account token file is used when present.
        timeout, connect_timeout: read and connect timeouts in seconds.
        retry: retry policy for DELETE (creates are never retried once sent).

    Raises:
        InvalidArgumentError: no URL configured (names the argument and the env var) or bad URL.
    """

    def __init__(
        self,
        workload_manager_url: str | None = None,
        auth_token: str | None = None,
        *,
        auth: AuthProvider | None = None,
        timeout: float = 150.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._connect(
            workload_manager_url,
            WORKLOAD_MANAGER_URL_ENV,
            "workload_manager_url",
            auth=auth,
            auth_token=auth_token,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            session=session,
        )

    @property
    def base_url(self) -> str:
        return self._http.base_url

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

        Sends ``{"name", "namespace", "ttl", "metadata"}``. Not retried once the request may
        have reached the server (a retry could create a second sandbox).

        Raises:
            InvalidArgumentError: bad name, namespace, ttl or metadata (nothing is sent).
            NotFoundError: no template of that name in that namespace.
            SessionError: the answer has no valid ``sessionId``.
            APIError / APIConnectionError: any other failure.
        """
        from pydantic import ValidationError

        from ..models import CreateSessionRequest, CreateSessionResponse

        check_name(name, "name")
        check_namespace(namespace)
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
            raise InvalidArgumentError(f"ttl must be a positive number of seconds, not {ttl!r}")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidArgumentError("metadata must be a dict")
        body = CreateSessionRequest(
            name=name, namespace=namespace, ttl=ttl, metadata=metadata or {}
        )
        response = self._http.request("POST", kind.create_path, json=body.model_dump())
        try:
            created = CreateSessionResponse.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise SessionError(
                f"the WorkloadManager created a {kind.name} session but its answer has no valid "
                f"sessionId (HTTP {response.status_code}); the sandbox may be running"
            ) from exc
        check_server_session_id(created.session_id)
        logger.info("created %s session %s", kind.name, created.session_id)
        return created

    def delete(
        self,
        kind: ResourceKind,
        session_id: str,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> bool:
        """Delete a session of any kind: ``DELETE /v1/<segment>/sessions/<id>``.

        Retried on connection errors and 502/503/504 per the retry policy. ``timeout`` is the
        read timeout of each attempt (default: this client's); ``deadline`` (a
        ``time.monotonic()`` value) bounds all attempts together.

        Returns:
            True if this call deleted it, False if the server no longer had it (404).
        Raises:
            InvalidArgumentError: invalid session id (nothing is sent).
            APIError / APIConnectionError: the delete failed; the session may still exist.
        """
        check_session_id(session_id)
        response = self._http.request(
            "DELETE",
            kind.session_path(session_id),
            session_id=session_id,
            timeout=timeout,
            deadline=deadline,
            ok_statuses=_NOT_FOUND,
        )
        response.close()
        if response.status_code == 404:
            # Only the WorkloadManager's own answer ({"message": ...}) means "already gone"; a
            # 404 from anything else (a router or proxy at that URL) must not drop the session.
            if not _is_workload_manager_error(response):
                raise error_from_response(response, session_id=session_id)
            logger.info("%s session %s was already gone", kind.name, session_id)
            return False
        logger.info("deleted %s session %s", kind.name, session_id)
        return True

    # -- the historic code-interpreter API -------------------------------------------------

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
        """Delete a code-interpreter session; True once it is gone (404 counts as gone)."""
        self.delete(CODE_INTERPRETER, session_id)
        return True
