"""The lifecycle every session client shares: owned or attached, stop, delete, detach, ``with``.

=====================  ======================  ===================  ========  ==================
client                 session came from       stop()               delete()  detach()
=====================  ======================  ===================  ========  ==================
CodeInterpreterClient  created (owned)         closes, deletes      deletes   stop() only closes
CodeInterpreterClient  session_id= (attached)  closes, deletes (*)  deletes   stop() only closes
AgentRuntimeClient     bootstrapped (owned)    closes, deletes      deletes   stop() only closes
AgentRuntimeClient     session_id= (attached)  closes only          deletes   stop() only closes
=====================  ======================  ===================  ========  ==================

(*) as CodeInterpreterClient always has, and existing callers rely on.

The difference between kinds is one class attribute, :attr:`delete_attached_on_stop`.
"""

from __future__ import annotations

import abc
import enum
import logging
import os
import threading
import warnings
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeVar

import requests

from . import _config, _exit_cleanup
from ._http import RetryPolicy, _never_sent, pooled_session
from ._logging import enable_verbose_logging
from .auth import AuthProvider, resolve_auth
from .clients.control_plane import ControlPlaneClient
from .exceptions import APIConnectionError, InvalidArgumentError, SessionError
from .kinds import ResourceKind

logger = logging.getLogger(__name__)

__all__ = ["ManagedSessionClient", "StopOutcome"]

_T = TypeVar("_T", bound="ManagedSessionClient")


class StopOutcome(str, enum.Enum):
    """What :meth:`ManagedSessionClient.stop` (or ``delete()``) did."""

    DELETED = "deleted"
    """The session was deleted by this call."""
    ALREADY_GONE = "already_gone"
    """The server no longer had the session (404): it is gone all the same."""
    KEPT = "kept"
    """The session was attached or detached, and the kind's policy keeps it running."""
    LEFT_RUNNING = "left_running"
    """To be deleted, but no WorkloadManager URL is configured; a warning names its id."""
    NOTHING_TO_DO = "nothing_to_do"
    """This client had already finished with its session; no request was sent."""

    def __str__(self) -> str:  # the same on every Python version (3.11 changed str-mixin enums)
        return self.value


class _Ownership(enum.Enum):
    OWNED = "owned"
    ATTACHED = "attached"
    DETACHED = "detached"


class _Closeable(Protocol):
    def close(self) -> None: ...


class ManagedSessionClient(abc.ABC):
    """Base of every session client: one sandbox session and its lifecycle.

    A subclass declares :attr:`kind`, opens its data plane in :meth:`_open_data_plane`, and
    may set :attr:`delete_attached_on_stop`. Creating a session goes through the
    WorkloadManager (``POST /v1/<segment>``) unless the subclass overrides
    :meth:`_create_session`; deleting always does (``DELETE /v1/<segment>/sessions/<id>``).

    Attributes:
        session_id: the session's id (kept until the session is known to be gone).
        name, namespace: the template the session comes from.
    """

    kind: ClassVar[ResourceKind]
    """The resource kind; one value from :mod:`agentcube.kinds`."""
    delete_attached_on_stop: ClassVar[bool] = False
    """Whether :meth:`stop` deletes a session this client attached to (and did not create)."""

    session_id: str | None

    def __init__(
        self,
        *,
        name: str,
        namespace: str = "default",
        session_id: str | None = None,
        workload_manager_url: str | None = None,
        router_url: str | None = None,
        auth_token: str | None = None,
        auth: AuthProvider | None = None,
        ttl: int | None = None,
        metadata: dict[str, Any] | None = None,
        verbose: bool = False,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        # The lifecycle state first, so that stop() and __del__ cope with a half-built object.
        self._lock = threading.RLock()
        self._ownership = _Ownership.ATTACHED
        self._closed = False  # connections closed: no more work through this client
        self._finished = False  # stop() has done what the policy asks; nothing more to do
        self._gone = False  # the session is deleted (or the server no longer had it)
        self._reported = False  # a warning already named a session left running
        self._pid = os.getpid()  # a forked child must not adopt its parent's sessions
        self._data_plane: _Closeable | None = None
        self._control_plane: ControlPlaneClient | None = None
        self.session_id = None
        if verbose:
            enable_verbose_logging()

        # Every check happens before any request is sent.
        self.name = _config.check_name(name, "name")
        self.namespace = _config.check_namespace(namespace)
        if session_id is not None:
            session_id = _config.check_session_id(session_id)
        self._auth = resolve_auth(auth, auth_token)
        self._timeout = _config.check_seconds(timeout, "timeout")
        self._connect_timeout = _config.check_seconds(connect_timeout, "connect_timeout")
        self._retry = retry
        self._ttl = ttl
        self._metadata = metadata
        self._http_session = pooled_session()  # for both planes: one requests.Session, not two
        self._router_url = _config.resolve_url(
            router_url, _config.ROUTER_URL_ENV, "router_url", required=True
        )
        wm_url = _config.resolve_url(
            workload_manager_url,
            _config.WORKLOAD_MANAGER_URL_ENV,
            "workload_manager_url",
            # Needed to create, and to honour a policy that deletes attached sessions.
            required=(
                self.delete_attached_on_stop
                if session_id is not None
                else self._creates_through_control_plane()
            ),
        )
        if wm_url is not None:
            self._control_plane = ControlPlaneClient(
                wm_url,
                auth=self._auth,
                connect_timeout=self._connect_timeout,
                retry=retry,
                session=self._http_session,
            )

        if session_id is not None:
            self.session_id = session_id
            self._data_plane = self._open_data_plane(session_id)
            return
        try:
            self.session_id = self._create_session()
        except APIConnectionError as exc:
            _say_maybe_created(exc)
            raise
        self._ownership = _Ownership.OWNED
        _exit_cleanup.track(self)
        try:
            self._data_plane = self._open_data_plane(self.session_id)
        except BaseException as exc:
            self._roll_back(exc)
            raise

    # -- hooks for subclasses ------------------------------------------------------------------

    @abc.abstractmethod
    def _open_data_plane(self, session_id: str) -> _Closeable:
        """Open the client(s) this kind uses to talk to its sandbox; return what stop() closes."""

    def _create_session(self) -> str:
        """Create a session and return its id (default: through the WorkloadManager)."""
        assert self._control_plane is not None
        created = self._control_plane.create(
            self.kind, self.name, self.namespace, ttl=self._ttl, metadata=self._metadata
        )
        return created.session_id

    @property
    def _service_options(self) -> dict[str, Any]:
        """Keyword arguments for a service client (see :mod:`agentcube.clients`) that shares this
        client's credentials, timeouts, retry policy and connections."""
        return {
            "auth": self._auth,
            "timeout": self._timeout,
            "connect_timeout": self._connect_timeout,
            "retry": self._retry,
            "session": self._http_session,
        }

    @classmethod
    def _creates_through_control_plane(cls) -> bool:
        return cls._create_session is ManagedSessionClient._create_session

    # -- the lifecycle -------------------------------------------------------------------------

    @property
    def owns_session(self) -> bool:
        """True when this client created the session and has not detached from it."""
        return self._ownership is _Ownership.OWNED

    def stop(self) -> StopOutcome:
        """Close this client's connections, then delete the session if the kind's policy says so.

        Owned sessions are deleted; attached ones only when :attr:`delete_attached_on_stop`;
        detached ones never. Calling it again (or from several threads) sends no second DELETE.

        Returns:
            What happened, as a :class:`StopOutcome`.
        Raises:
            APIError / APIConnectionError: the DELETE failed. ``session_id`` and ownership are
                kept, so a later ``stop()`` retries it.
        """
        return self._stop(None)

    def _stop(self, deadline: float | None) -> StopOutcome:
        """``stop()``, with all its requests bounded by ``deadline`` (``time.monotonic()``)."""
        with self._lock:
            self._closed = True
            self._close_data_plane()
            if self._finished or self._gone or self.session_id is None:
                return StopOutcome.NOTHING_TO_DO
            if self._ownership is _Ownership.OWNED or (
                self._ownership is _Ownership.ATTACHED and self.delete_attached_on_stop
            ):
                if self._control_plane is None:
                    self._finished = True
                    self._warn_left_running()
                    return StopOutcome.LEFT_RUNNING
                return self._delete_now(deadline)
            self._finished = True
            logger.debug("kept %s session %s (not owned)", self.kind.name, self.session_id)
            return StopOutcome.KEPT

    def delete(self) -> StopOutcome:
        """Close this client's connections and delete the session, owned or attached.

        This is how to end an attached agent-runtime session.

        Returns:
            ``DELETED``, ``ALREADY_GONE``, or ``NOTHING_TO_DO`` if this client already deleted it.
        Raises:
            InvalidArgumentError: no WorkloadManager URL is configured.
            APIError / APIConnectionError: the DELETE failed; a later call retries it.
        """
        with self._lock:
            if self._gone or self.session_id is None:
                return StopOutcome.NOTHING_TO_DO
            if self._control_plane is None:
                raise InvalidArgumentError(
                    f"cannot delete session {self.session_id}: no WorkloadManager URL; pass "
                    f"workload_manager_url=... or set {_config.WORKLOAD_MANAGER_URL_ENV}"
                )
            self._closed = True
            self._close_data_plane()
            return self._delete_now()

    def detach(self) -> str:
        """Give up ownership: ``stop()`` will then only close connections. Returns the session id.

        Raises:
            SessionError: this client has no session (it was already deleted).
        """
        with self._lock:
            if self.session_id is None or self._gone:
                raise SessionError("this client has no live session to detach from")
            self._ownership = _Ownership.DETACHED
            _exit_cleanup.untrack(self)
            return self.session_id

    def close(self) -> None:
        """Close local connections only; the session keeps running and the client stays usable
        (connections reopen on the next call). See :meth:`stop` to end the session."""
        with self._lock:
            self._close_data_plane()

    def _delete_now(self, deadline: float | None = None) -> StopOutcome:
        assert self._control_plane is not None and self.session_id is not None
        # A DELETE is idempotent and retried: it honours the client's read timeout, so a
        # stalled WorkloadManager cannot hold stop() (or exit cleanup) for minutes.
        deleted = self._control_plane.delete(
            self.kind, self.session_id, timeout=self._timeout, deadline=deadline
        )
        self._gone = self._finished = True
        _exit_cleanup.untrack(self)
        return StopOutcome.DELETED if deleted else StopOutcome.ALREADY_GONE

    def _roll_back(self, cause: BaseException) -> None:
        """The constructor failed after creating a session: delete it, or say which one leaked."""
        sid = self.session_id
        try:
            if self._control_plane is None:
                self._warn_left_running()
            else:
                self._delete_now()
        except Exception as exc:
            self._reported = True
            message = (
                f"could not delete session {sid} after a failed start ({type(exc).__name__}: "
                f"{exc}); the sandbox may still be running"
            )
            logger.error(message)
            _add_note(cause, message)
            # Notes need Python 3.11: a warning names the session on every version.
            warnings.warn(message, ResourceWarning, stacklevel=4)

    def _close_data_plane(self) -> None:
        # Best effort: a data plane that fails to close must not keep the session from being
        # deleted (or every later stop() would fail the same way).
        if self._data_plane is not None:
            try:
                self._data_plane.close()
            except Exception as exc:
                logger.warning(
                    "closing the data plane of session %s failed: %s", self.session_id, exc
                )

    def _warn_left_running(self) -> None:
        self._reported = True
        _exit_cleanup.untrack(self)
        message = (
            f"{type(self).__name__} cannot delete session {self.session_id}: no WorkloadManager "
            f"URL (workload_manager_url= or {_config.WORKLOAD_MANAGER_URL_ENV}); the sandbox "
            "keeps running until its idle timeout"
        )
        logger.warning(message)
        warnings.warn(message, ResourceWarning, stacklevel=3)

    def _require_open(self) -> None:
        if self._closed or self._data_plane is None:
            raise SessionError(f"{type(self).__name__} is stopped; open a new client")

    # -- context manager, repr, finalizer ------------------------------------------------------

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
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
            _add_note(exc, message)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"{type(self).__name__}(session_id={self.session_id!r}, name={self.name!r}, "
            f"namespace={self.namespace!r}, owns_session={self.owns_session}, state={state!r})"
        )

    def __del__(self) -> None:
        # No network from a finalizer: only say which sandbox may still be running.
        if (
            getattr(self, "_ownership", None) is _Ownership.OWNED
            and not getattr(self, "_gone", True)
            and not getattr(self, "_reported", True)
            and getattr(self, "session_id", None) is not None
        ):
            fate = "the sandbox may still be running"
            control_plane = getattr(self, "_control_plane", None)
            sid = self.session_id
            if (
                control_plane is not None
                and sid is not None
                and getattr(self, "_pid", None) == os.getpid()
                and _exit_cleanup.adopt(self.kind, sid, control_plane, self._timeout)
            ):
                fate = "exit cleanup will delete it when the process ends"
            warnings.warn(
                f"{type(self).__name__} owning session {self.session_id} was garbage-collected "
                f"without stop(), delete() or detach(); {fate}",
                ResourceWarning,
                stacklevel=2,
            )


def _say_maybe_created(exc: APIConnectionError) -> None:
    """A create that got no answer may still have made a sandbox: say so in the message."""
    cause = exc.__cause__
    if not isinstance(cause, requests.RequestException) or _never_sent(cause):
        return  # the create request itself never reached the server
    exc.args = (
        f"{exc}; the create may have reached the server, so a sandbox may be running that no "
        "client can name (it ends with its ttl or the server's idle timeout)",
        *exc.args[1:],
    )


def _add_note(exc: BaseException, note: str) -> None:
    add_note = getattr(exc, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(note)
