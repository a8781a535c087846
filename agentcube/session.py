"""ManagedSessionClient: the lifecycle every sync session client shares (see _lifecycle).

Owned or attached, ``stop()``, ``delete()``, ``detach()``, ``close()`` and ``with``. The rules
live in :class:`agentcube._lifecycle.SessionCore`; this class runs them with requests, under a
lock, so that concurrent ``stop()`` calls send one DELETE.
"""

from __future__ import annotations

import abc
import logging
import threading
from types import TracebackType
from typing import Any, TypeVar

from ._arguments import SessionArguments
from ._drivers._sync import SyncTransport, pooled_session, run
from ._flows._common import RouterTarget
from ._lifecycle import StopOutcome, add_note
from ._logging import verbose_scope
from ._protocol import Flow
from .clients.control_plane import ControlPlaneClient
from .exceptions import SessionNotFoundError

logger = logging.getLogger(__name__)

__all__ = ["ManagedSessionClient", "StopOutcome"]

_T = TypeVar("_T", bound="ManagedSessionClient")
T = TypeVar("T")


class ManagedSessionClient(SessionArguments, abc.ABC):
    """Base of every sync session client: one sandbox session and its lifecycle.

    A subclass declares :attr:`kind`, builds its data plane in :meth:`_open_data_plane`, and
    may set :attr:`delete_attached_on_stop`. Creating a session goes through the
    WorkloadManager (``POST /v1/<segment>``) unless the subclass overrides ``_create_flow``;
    deleting always does (``DELETE /v1/<segment>/sessions/<id>``).

    Credentials: ``auth`` (an AuthProvider) or ``auth_token`` go to both planes;
    ``workload_manager_auth`` and ``router_auth`` override them per plane (the WorkloadManager
    may want a Kubernetes service-account token and the Router an OIDC token). Without any,
    WorkloadManager requests use the Kubernetes service-account token file when present.

    Attributes:
        session_id: the session's id; None once the session is deleted.
        name, namespace: the template the session comes from.
        cp_client: the :class:`~agentcube.clients.ControlPlaneClient` (None without a
            WorkloadManager URL).
        dp_client: the data-plane client (None once stopped).
        router_url, timeout, connect_timeout, verbose.

    Raises:
        InvalidArgumentError: a bad argument or a missing URL (nothing is sent).
        APIError / APIConnectionError / SessionError: the create failed (nothing is left).
    """

    _data_target: RouterTarget | None = None

    def _init_driver(self) -> None:
        self.cp_client: ControlPlaneClient | None = None
        self._lock = threading.RLock()

    def _open(self, attach_to: str | None) -> None:
        # One requests.Session for both planes (its own cookies), on the process-wide pool.
        self._transport = SyncTransport(pooled_session())
        if self._control is not None:
            self.cp_client = ControlPlaneClient._from_endpoint(self._control, self._transport)
        self._run(self._start_flow(attach_to))

    @abc.abstractmethod
    def _open_data_plane(self, session_id: str) -> Any:
        """Build (no I/O) what this kind uses to talk to its sandbox; ``stop()`` closes it."""

    def _run(self, flow: Flow[T]) -> T:
        try:
            with verbose_scope(self.verbose):
                return run(flow, self._transport)
        except SessionNotFoundError as exc:
            with self._lock:
                self._forget_if_lost(exc)
            raise

    def _target(self) -> RouterTarget:
        """Where this session's data-plane requests go (SessionError once it is stopped)."""
        self._require_open()
        assert self._data_target is not None
        return self._data_target

    def _open_target(self, session_id: str) -> RouterTarget:
        """Build (no I/O) and keep the Router target of ``session_id`` for :meth:`_target`."""
        self._data_target = self._router_target(session_id)
        return self._data_target

    # -- the lifecycle -------------------------------------------------------------------------

    def stop(self) -> StopOutcome:
        """Close this client's data plane, then delete the session if the kind's policy says so.

        Owned sessions are deleted; attached ones only when :attr:`delete_attached_on_stop`;
        detached ones never. After a delete, ``session_id`` is None. Calling it again (or from
        several threads) sends no second DELETE.

        Returns:
            What happened, as a :class:`StopOutcome`.
        Raises:
            APIError / APIConnectionError: the DELETE failed. ``session_id`` and ownership are
                kept, so a later ``stop()`` retries it.
        """
        with self._lock:
            return self._run(self._stop_flow())

    def delete(self) -> StopOutcome:
        """Close this client's data plane and delete the session, owned or attached.

        This is how to end an attached agent-runtime session.

        Returns:
            ``DELETED``, ``ALREADY_GONE``, or ``NOTHING_TO_DO`` if it is already deleted.
        Raises:
            InvalidArgumentError: no WorkloadManager URL is configured.
            APIError / APIConnectionError: the DELETE failed; a later call retries it.
        """
        with self._lock:
            return self._run(self._delete_flow())

    def detach(self) -> str:
        """Give up ownership: ``stop()`` will then only close connections. Returns the id.

        Raises:
            SessionError: this client has no session (it was already deleted).
        """
        with self._lock:
            return self._detach()

    def close(self) -> None:
        """Close local connections only: the session keeps running and the client stays usable
        (connections reopen on the next call). See :meth:`stop` to end the session."""
        with self._lock:
            close = getattr(self.dp_client, "close", None)
            if close is not None:
                close()

    # -- context manager -----------------------------------------------------------------------

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is None:
            self.stop()
            return
        try:
            self.stop()
        except Exception as cleanup:
            # Never let a cleanup failure replace the body's exception; report it alongside.
            message = (
                f"stop() failed while handling {exc_type.__name__ if exc_type else 'an error'}: "
                f"{type(cleanup).__name__}: {cleanup}"
            )
            logger.error(message)
            add_note(exc_val, message)
