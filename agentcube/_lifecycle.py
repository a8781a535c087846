"""The session lifecycle, in one place for the sync and the async clients.

=====================  ======================  ===================  ========  ==================
client                 session came from       stop()               delete()  detach()
=====================  ======================  ===================  ========  ==================
CodeInterpreterClient  created (owned)         closes, deletes      deletes   stop() only closes
CodeInterpreterClient  session_id= (attached)  closes, deletes (*)  deletes   stop() only closes
AgentRuntimeClient     bootstrapped (owned)    closes, deletes      deletes   stop() only closes
AgentRuntimeClient     session_id= (attached)  closes only          deletes   stop() only closes
=====================  ======================  ===================  ========  ==================

(*) as CodeInterpreterClient always has, and existing callers rely on.

Without a WorkloadManager URL, a ``stop()`` that would delete leaves the session running and
names it in a warning, and ``delete()`` is refused. The two kinds differ in one class attribute,
:attr:`SessionCore.delete_attached_on_stop`.

A session the Router or the WorkloadManager said it does not know (a
:class:`~agentcube.exceptions.SessionNotFoundError` of the service's own, not a sandbox's 404)
has ended: the client forgets it (``session_id`` None, no exit cleanup, no warning), and
``stop()`` / ``delete()`` send nothing (the first says ``ALREADY_GONE``), as upstream's SDK does
since volcano-sh/agentcube#460 (no implicit recreation, no retry).

This table is prose; the source of truth is data: :data:`STOP_RULES` (relation x whether the
kind deletes attached sessions x whether a WorkloadManager URL is configured -> action),
:data:`DELETE_RULES`, :data:`FINISHED_IN` (the phases in which a call has nothing to send, and
what it answers there) and :data:`ON_SESSION_NOT_FOUND` (the phase a lost session leaves).

A client's state is two things kept apart: its *relation* to the session (owned, attached,
detached) and the *phase* of the client (open, stopping, done, lost, ended). :class:`SessionCore`
holds the state, the configuration and the flows (create, stop, delete, roll back); the sync
and async base classes only run those flows under their own lock.
"""

from __future__ import annotations

import enum
import logging
import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from . import _config, _exit_cleanup
from ._flows._common import RouterTarget
from ._flows.agent_runtime import bootstrap, bootstrapped_session_id
from ._flows.control_plane import create_session, created_session_id, delete_session
from ._logging import enable_verbose_logging
from ._protocol import DEFAULT_RETRY, Call, Endpoint, Flow, RetryPolicy
from .auth import AuthProvider, resolve_auth
from .exceptions import (
    APIConnectionError,
    APIError,
    InvalidArgumentError,
    InvalidResponseError,
    SessionError,
    SessionNotFoundError,
)

if TYPE_CHECKING:
    from .kinds import ResourceKind

logger = logging.getLogger("agentcube.session")


class StopOutcome(str, enum.Enum):
    """What ``stop()`` (or ``delete()``) did."""

    DELETED = "deleted"
    """The session was deleted by this call."""
    ALREADY_GONE = "already_gone"
    """The WorkloadManager no longer had the session (404): it is gone all the same."""
    KEPT = "kept"
    """The session was attached or detached, and the kind's policy keeps it running."""
    LEFT_RUNNING = "left_running"
    """To be deleted, but no WorkloadManager URL is configured; a warning names its id."""
    NOTHING_TO_DO = "nothing_to_do"
    """This client had already finished with its session; no request was sent."""

    def __str__(self) -> str:  # the same on every Python version (3.11 changed str-mixin enums)
        return self.value


class Relation(enum.Enum):
    OWNED = "owned"  # this client created the session
    ATTACHED = "attached"  # the caller passed session_id=
    DETACHED = "detached"  # ownership given up with detach()


class Phase(enum.Enum):
    OPEN = "open"  # usable
    STOPPING = "stopping"  # closed for work; the policy's DELETE is still to be done (retry)
    DONE = "done"  # stop() did what the policy asks; the session may still be running
    ENDED = "ended"  # the session is gone
    LOST = "lost"  # the session is gone (a service said so); stop() has yet to report it


class Action(enum.Enum):
    KEEP = "keep"  # the session is not this client's to delete: it keeps running
    LEAVE_RUNNING = "leave_running"  # to be deleted, but no WorkloadManager URL: a warning
    DELETE = "delete"  # the WorkloadManager deletes it
    REFUSE = "refuse"  # delete() without a WorkloadManager URL: InvalidArgumentError


# stop() of a live session: (relation, the kind's delete_attached_on_stop, a WorkloadManager
# URL configured) -> action. Every combination is listed.
STOP_RULES: dict[tuple[Relation, bool, bool], Action] = {
    (Relation.OWNED, False, True): Action.DELETE,
    (Relation.OWNED, False, False): Action.LEAVE_RUNNING,
    (Relation.OWNED, True, True): Action.DELETE,
    (Relation.OWNED, True, False): Action.LEAVE_RUNNING,
    (Relation.ATTACHED, False, True): Action.KEEP,
    (Relation.ATTACHED, False, False): Action.KEEP,
    (Relation.ATTACHED, True, True): Action.DELETE,
    (Relation.ATTACHED, True, False): Action.LEAVE_RUNNING,  # _configure requires the URL
    (Relation.DETACHED, False, True): Action.KEEP,
    (Relation.DETACHED, False, False): Action.KEEP,
    (Relation.DETACHED, True, True): Action.KEEP,
    (Relation.DETACHED, True, False): Action.KEEP,
}

# delete() of a live session, whatever the relation and the kind: (a WorkloadManager URL
# configured) -> action.
DELETE_RULES: dict[bool, Action] = {True: Action.DELETE, False: Action.REFUSE}

# The phases in which a call has nothing left to send: phase -> (what it answers, the phase
# after it). So has a client without a session (NOTHING_TO_DO). delete() after a stop() that
# kept the session still deletes it; the first call after a lost session reports it gone.
FINISHED_IN: dict[str, dict[Phase, tuple[StopOutcome, Phase]]] = {
    "stop": {
        Phase.DONE: (StopOutcome.NOTHING_TO_DO, Phase.DONE),
        Phase.ENDED: (StopOutcome.NOTHING_TO_DO, Phase.ENDED),
        Phase.LOST: (StopOutcome.ALREADY_GONE, Phase.ENDED),
    },
    "delete": {
        Phase.ENDED: (StopOutcome.NOTHING_TO_DO, Phase.ENDED),
        Phase.LOST: (StopOutcome.ALREADY_GONE, Phase.ENDED),
    },
}

# A SessionNotFoundError of the Router's or the WorkloadManager's own about this client's
# session: phase -> the phase after it. Whatever the client was doing, the session has ended.
ON_SESSION_NOT_FOUND: dict[Phase, Phase] = {
    Phase.OPEN: Phase.LOST,
    Phase.STOPPING: Phase.LOST,  # a DELETE still to retry: nothing is left to delete
    Phase.DONE: Phase.LOST,  # kept running by stop(), then lost: delete() has nothing to do
    Phase.LOST: Phase.LOST,
    Phase.ENDED: Phase.ENDED,
}


class SessionCore:
    """State, configuration and flows of a session client (no I/O; see the module docstring).

    A subclass declares :attr:`kind`, builds its data plane in :meth:`_open_data_plane`, and
    may set :attr:`delete_attached_on_stop`; creating goes through the WorkloadManager unless
    it overrides :meth:`_create_flow`.
    """

    kind: ClassVar[ResourceKind]
    """The resource kind; one value from :mod:`agentcube.kinds`."""
    delete_attached_on_stop: ClassVar[bool] = False
    """Whether ``stop()`` deletes a session this client attached to (and did not create)."""
    bootstraps_through_router: ClassVar[bool] = False
    """Whether a session is created by a bare ``GET`` of the Router's invocations URL (agent
    runtimes) instead of through the WorkloadManager."""

    session_id: str | None
    dp_client: Any

    def _init_state(self) -> None:
        # First, so that stop(), repr() and __del__ cope with a half-built object.
        self._relation = Relation.ATTACHED
        self._phase = Phase.OPEN
        self._reported = False  # a warning already named a session left running
        self._lost_id: str | None = None  # the session a service said it does not know
        self._pid = os.getpid()  # a forked child must not adopt its parent's sessions
        self._cleanup_key = object()
        self._control: Endpoint | None = None
        self.session_id = None
        self.dp_client = None

    def _configure(
        self,
        *,
        name: str,
        namespace: str,
        session_id: str | None,
        workload_manager_url: str | None,
        router_url: str | None,
        auth_token: str | None,
        auth: AuthProvider | None,
        workload_manager_auth: AuthProvider | None,
        router_auth: AuthProvider | None,
        ttl: int | None,
        metadata: Mapping[str, Any] | None,
        verbose: bool,
        timeout: float,
        connect_timeout: float,
        retry: RetryPolicy | None,
    ) -> str | None:
        """Check and resolve every argument (nothing is sent); return the session id to
        attach to, or None to create one."""
        self.verbose = verbose
        if verbose:
            enable_verbose_logging()
        self.name = _config.check_name(name, "name")
        self.namespace = _config.check_namespace(namespace)
        if session_id == "":
            session_id = None  # as the historic API: an empty id means "create one"
        if session_id is not None:
            session_id = _config.check_session_id(session_id)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgumentError("retry must be a RetryPolicy")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidArgumentError("metadata must be a dict")
        self.timeout = _config.check_seconds(timeout, "timeout")
        self.connect_timeout = _config.check_seconds(connect_timeout, "connect_timeout")
        self._ttl = ttl
        self._metadata = metadata
        shared = resolve_auth(auth, auth_token)
        router_credential = resolve_auth(router_auth, None) or shared
        policy = retry or DEFAULT_RETRY
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
        router = _config.resolve_url(
            router_url, _config.ROUTER_URL_ENV, "router_url", required=True
        )
        assert router is not None
        self.router_url = router
        self._router = Endpoint(
            router, router_credential, self.connect_timeout, self.timeout, policy
        )
        if wm_url is not None:
            wm_credential = resolve_auth(workload_manager_auth, None) or shared
            if wm_credential is None:
                wm_credential = resolve_auth(None, None, service_account=True)
            self._control = Endpoint(
                wm_url, wm_credential, self.connect_timeout, self.timeout, policy
            )
        return session_id

    # -- hooks for subclasses ------------------------------------------------------------------

    def _open_data_plane(self, session_id: str) -> Any:
        """Build (no I/O) what this kind uses to talk to its sandbox (not None); ``stop()``
        calls its ``close()`` if it has one."""
        raise NotImplementedError

    def _create_flow(self) -> Flow[str]:
        """Create a session and return its id (default: through the WorkloadManager).

        An override appends its create call to ``self._create_calls`` and hands the id to
        ``self._claim`` the moment it reads it (as :func:`.control_plane.create_session` does),
        so that nothing can interrupt the client between the answer and its ownership.
        """
        if self.bootstraps_through_router:
            return (
                yield from bootstrap(
                    self._router_target(None),
                    sent=self._create_calls,
                    on_id=self._claim,
                    template=(self.kind, self.name, self.namespace),
                )
            )
        assert self._control is not None
        return (
            yield from create_session(
                self._control,
                self.kind,
                self.name,
                self.namespace,
                ttl=self._ttl,
                metadata=self._metadata,
                sent=self._create_calls,
                on_id=self._claim,
            )
        )

    @classmethod
    def _creates_through_control_plane(cls) -> bool:
        return cls._create_flow is SessionCore._create_flow and not cls.bootstraps_through_router

    def _router_target(self, session_id: str | None) -> RouterTarget:
        """Where this client's data-plane requests go (for ``session_id``, when given)."""
        return RouterTarget.of(self._router, self.kind, self.namespace, self.name, session_id)

    # -- the lifecycle, as flows ---------------------------------------------------------------

    def _start_flow(self, session_id: str | None) -> Flow[None]:
        """Attach to ``session_id``, or create a session and take ownership of it.

        Whatever interrupts a create after it was sent (an error, Ctrl-C, a cancelled task)
        leaves no unnamed sandbox behind: an id already read is owned and the session deleted
        again (or named in a note and a warning if that fails); without an id, the exception
        says that a sandbox may be running.
        """
        if session_id is not None:
            self.session_id = session_id
            logger.info("Reusing existing session: %s", session_id)
            self.dp_client = self._open_data_plane(session_id)
            return
        logger.info("Creating new %s session...", self.kind.name)
        self._create_calls: list[Call] = []
        try:
            created = yield from self._create_flow()
            self._claim(created)
            logger.info("Session created: %s", created)
            self.dp_client = self._open_data_plane(created)
        except GeneratorExit:
            raise
        except BaseException as exc:
            if self.session_id is None:
                answered = self._answered_id()
                if answered is not None:
                    self._claim(answered)
            if self.session_id is not None:
                yield from self._roll_back_flow(exc)
            else:
                self._say_maybe_created(exc)
            raise

    def _claim(self, session_id: str) -> None:
        """Take ownership of the session a create just made (idempotent)."""
        if self.session_id is None:
            self.session_id = session_id
            self._relation = Relation.OWNED
            self._register_for_exit_cleanup()
            if self._control is None:
                self._tell_cannot_delete()

    def _answered_id(self) -> str | None:
        """The id of the session the last create made, read from its recorded answer."""
        calls = getattr(self, "_create_calls", [])
        if not calls:
            return None
        reply = calls[-1].answer
        return created_session_id(reply) or bootstrapped_session_id(reply)

    def _say_maybe_created(self, exc: BaseException) -> None:
        """The create may have made a sandbox no client can name: say so where it is seen."""
        calls = getattr(self, "_create_calls", [])
        if not calls:
            return  # it failed before sending
        if isinstance(exc, APIConnectionError):
            if exc.reached_server is True:  # False: it never left; None: not our request
                exc.args = (f"{exc}; {_MAYBE_CREATED}", *exc.args[1:])
            return
        if isinstance(exc, (APIError, InvalidArgumentError, InvalidResponseError)):
            return  # answered with an error (no sandbox), or the message says it already
        message = f"{self.kind.name} create interrupted ({type(exc).__name__}): {_MAYBE_CREATED}"
        logger.error(message)
        add_note(exc, message)
        warnings.warn(message, ResourceWarning, stacklevel=6)

    def _stop_rule(self) -> Action:
        """What :data:`STOP_RULES` says ``stop()`` does with this client's session."""
        return STOP_RULES[self._relation, self.delete_attached_on_stop, self._control is not None]

    def _finished(self, call: str) -> StopOutcome | None:
        """What ``call`` ("stop" or "delete") answers without sending anything (and the phase
        it leaves, from :data:`FINISHED_IN`); None: it has work to do."""
        answer = FINISHED_IN[call].get(self._phase)
        if answer is not None:
            outcome, self._phase = answer
            return outcome
        return StopOutcome.NOTHING_TO_DO if self.session_id is None else None

    def _plan_stop(self) -> Action:
        self._phase = Phase.STOPPING
        self._close_data_plane()
        action = self._stop_rule()
        if action is not Action.DELETE:
            self._phase = Phase.DONE
        return action

    def _stop_flow(self, deadline: float | None = None) -> Flow[StopOutcome]:
        """Close the data plane, then do what the policy asks; every request is bounded by
        ``deadline`` (``time.monotonic()``) when given."""
        finished = self._finished("stop")
        if finished is not None:
            return finished
        action = self._plan_stop()
        if action is Action.KEEP:
            logger.debug("kept %s session %s (not owned)", self.kind.name, self.session_id)
            return StopOutcome.KEPT
        if action is Action.LEAVE_RUNNING:
            self._warn_left_running()
            return StopOutcome.LEFT_RUNNING
        return (yield from self._delete_now_flow(deadline))

    def _delete_flow(self) -> Flow[StopOutcome]:
        finished = self._finished("delete")
        if finished is not None:
            return finished
        if DELETE_RULES[self._control is not None] is Action.REFUSE:
            raise InvalidArgumentError(
                f"cannot delete session {self.session_id}: no WorkloadManager URL; pass "
                f"workload_manager_url=... or set {_config.WORKLOAD_MANAGER_URL_ENV}"
            )
        self._phase = Phase.STOPPING
        self._close_data_plane()
        return (yield from self._delete_now_flow(None))

    def _delete_now_flow(self, deadline: float | None) -> Flow[StopOutcome]:
        assert self._control is not None and self.session_id is not None
        logger.info("Deleting session %s...", self.session_id)
        # Idempotent and retried, with the client's read timeout: a stalled WorkloadManager
        # cannot hold stop() (or exit cleanup) for minutes.
        deleted = yield from delete_session(
            self._control, self.kind, self.session_id, timeout=self.timeout, deadline=deadline
        )
        self._phase = Phase.ENDED
        _exit_cleanup.unregister(self._cleanup_key)
        self.session_id = None
        return StopOutcome.DELETED if deleted else StopOutcome.ALREADY_GONE

    def _roll_back_flow(self, cause: BaseException) -> Flow[None]:
        """The start failed after the create: delete the session, or say which one leaked."""
        sid = self.session_id
        try:
            if self._control is None:
                self._warn_left_running()
            else:
                yield from self._delete_now_flow(None)
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._reported = True
            message = (
                f"could not delete session {sid} after a failed start ({type(exc).__name__}: "
                f"{exc}); the sandbox may still be running"
            )
            logger.error(message)
            add_note(cause, message)
            warnings.warn(message, ResourceWarning, stacklevel=6)
            if not isinstance(exc, Exception):  # interrupted again: that one propagates
                add_note(exc, message)
                raise

    def _name_left_running(self, exc: BaseException, what: str) -> None:
        """A delete was interrupted before its answer: say which session may be running (it
        stays owned and registered for exit cleanup, so a later ``stop()`` retries)."""
        self._reported = True
        message = (
            f"{what} before session {self.session_id} was deleted; the sandbox may still be "
            "running (call stop() again to delete it)"
        )
        logger.error(message)
        add_note(exc, message)
        warnings.warn(message, ResourceWarning, stacklevel=4)

    def _forget_if_lost(self, exc: BaseException) -> None:
        """After ``exc``: if it is a :class:`SessionNotFoundError` about this client's session
        (the Router or the WorkloadManager answered it itself; a sandbox's 404 is a plain
        NotFoundError), the session has ended: forget it, sending nothing
        (:data:`ON_SESSION_NOT_FOUND`). The caller re-raises ``exc``."""
        if not isinstance(exc, SessionNotFoundError) or exc.session_id is None:
            return
        if exc.session_id != self.session_id:
            return  # another session's, or this one is forgotten already
        self._phase = ON_SESSION_NOT_FOUND[self._phase]
        if self._phase is not Phase.LOST:
            return
        logger.info(
            "%s session %s was not found: it has ended; the client forgets it",
            self.kind.name,
            self.session_id,
        )
        self._lost_id = self.session_id
        self.session_id = None
        _exit_cleanup.unregister(self._cleanup_key)
        self._close_data_plane()

    def _detach(self) -> str:
        if self.session_id is None or self._phase is Phase.ENDED:
            raise SessionError("this client has no live session to detach from")
        self._relation = Relation.DETACHED
        _exit_cleanup.unregister(self._cleanup_key)
        return self.session_id

    def _tell_cannot_delete(self) -> None:
        """Said once, on stderr, the moment an owned session turns out undeletable."""
        self._reported = True
        _exit_cleanup.tell(
            f"{type(self).__name__} created session {self.session_id} but has no "
            f"WorkloadManager URL to delete it with: stop() will leave it running until the "
            f"template's idle timeout. Pass workload_manager_url=... or set "
            f"{_config.WORKLOAD_MANAGER_URL_ENV} so that stop() and `with` delete it"
        )

    def _register_for_exit_cleanup(self) -> None:
        if self._control is not None and self.session_id is not None:
            _exit_cleanup.register(self._cleanup_key, self.kind, self.session_id, self._control)

    def _close_data_plane(self) -> None:
        # Best effort: a data plane that fails to close must not keep the session from being
        # deleted (or every later stop() would fail the same way).
        dp, self.dp_client = self.dp_client, None
        close = getattr(dp, "close", None)  # a kind's data plane may hold nothing to close
        if close is not None:
            try:
                close()
            except Exception as exc:
                logger.warning(
                    "closing the data plane of session %s failed: %s", self.session_id, exc
                )

    def _warn_left_running(self) -> None:
        self._reported = True
        _exit_cleanup.unregister(self._cleanup_key)
        message = (
            f"{type(self).__name__} cannot delete session {self.session_id}: no WorkloadManager "
            f"URL (workload_manager_url= or {_config.WORKLOAD_MANAGER_URL_ENV}); the sandbox "
            "keeps running until its idle timeout"
        )
        logger.warning(message)
        warnings.warn(message, ResourceWarning, stacklevel=5)

    def _require_open(self) -> Any:
        dp = self.dp_client
        if self._phase is not Phase.OPEN or dp is None:
            name = type(self).__name__
            if self._lost_id is not None:
                raise SessionError(
                    f"{name} has ended: session {self._lost_id} was not found (deleted, "
                    "expired or never created); open a new client"
                )
            raise SessionError(f"{name} is stopped; open a new client")
        return dp

    # -- state, repr, finalizer ----------------------------------------------------------------

    @property
    def owns_session(self) -> bool:
        """True when this client created the session and has not detached from it."""
        return self._relation is Relation.OWNED

    def __repr__(self) -> str:
        state = "open" if getattr(self, "_phase", None) is Phase.OPEN else "closed"
        return (
            f"{type(self).__name__}(session_id={self.session_id!r}, "
            f"name={getattr(self, 'name', None)!r}, "
            f"namespace={getattr(self, 'namespace', None)!r}, owns_session={self.owns_session}, "
            f"state={state!r})"
        )

    def __del__(self) -> None:
        # No network from a finalizer: only say which sandbox may still be running.
        if (
            getattr(self, "_relation", None) is not Relation.OWNED
            or getattr(self, "_phase", Phase.ENDED) is Phase.ENDED
            or getattr(self, "_reported", True)
            or getattr(self, "session_id", None) is None
        ):
            return
        if getattr(self, "_pid", None) == os.getpid() and _exit_cleanup.is_enabled():
            if not _exit_cleanup.is_registered(self._cleanup_key):
                return  # exit cleanup has deleted it already
            fate = "exit cleanup will delete it when the process ends"
        else:
            fate = "the sandbox may still be running"
            if getattr(self, "_pid", None) == os.getpid():
                _exit_cleanup.collected(self._cleanup_key)  # named again at exit
            else:
                _exit_cleanup.unregister(self._cleanup_key)
        warnings.warn(
            f"{type(self).__name__} owning session {self.session_id} was garbage-collected "
            f"without stop(), delete() or detach(); {fate}",
            ResourceWarning,
            stacklevel=2,
        )


_MAYBE_CREATED = (
    "the create may have reached the server, so a sandbox may be running that no client can "
    "name (it ends with the server's idle timeout)"
)


def add_note(exc: BaseException, note: str) -> None:
    add = getattr(exc, "add_note", None)  # Python 3.11+
    if add is not None:
        add(note)
