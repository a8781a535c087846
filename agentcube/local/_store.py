"""The session registry: templates and their lifetimes, sessions, and garbage collection.

As in AgentCube, a session ends when its template's ``maxSessionDuration`` has passed since
it was created, when it has been idle for the template's ``sessionTimeout`` (a Router
request counts as activity when it starts and when it ends), or when it is deleted. The
garbage collector looks every ``gc_interval`` seconds (15 s by default).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._kinds import LocalKind
from ._sandbox import Sandbox

logger = logging.getLogger(__name__)

DEFAULT_MAX_SESSION_DURATION = 8 * 3600.0
DEFAULT_SESSION_TIMEOUT = 15 * 60.0
DEFAULT_GC_INTERVAL = 15.0
_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class Lifetime:
    """A template's session lifetime, in seconds.

    ``max_session_duration``: a session ends this long after it was created.
    ``session_timeout``: a session ends after this long without Router traffic.
    ``None`` takes the LocalAgentCube's default; ``math.inf`` means never.
    """

    max_session_duration: float | None = None
    session_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_session_duration", "session_timeout"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
            ):
                raise ValueError(f"{name} must be a positive number of seconds, inf or None")


@dataclass(frozen=True)
class SessionInfo:
    """A snapshot of one session. Times are Unix timestamps (``time.time()``).

    ``workspace``: where this machine reaches the session's workspace (code interpreters
    only). For an isolated session it is a path through its sandbox's root
    (``/proc/PID/root/root``), good while the session lives, for tests to look inside.
    """

    session_id: str
    kind: str
    name: str
    namespace: str
    created_at: float
    last_used: float
    workspace: str | None


SandboxFactory = Callable[[LocalKind, str, str], Sandbox]
"""``factory(kind, template_name, session_id)`` builds the sandbox of a new session."""


class UnknownTemplate(LookupError):
    """No template of that kind and name."""


class StoreClosed(RuntimeError):
    """The server is shutting down."""


class TemplateRegistry:
    """Each kind's templates (name -> an agent's forward URL, else None) and their lifetimes."""

    def __init__(
        self,
        templates: Mapping[LocalKind, Mapping[str, str | None]],
        *,
        max_session_duration: float | None = DEFAULT_MAX_SESSION_DURATION,
        session_timeout: float | None = DEFAULT_SESSION_TIMEOUT,
        lifetimes: Mapping[str, Lifetime] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        #: the kinds served, in the table's order
        self.kinds = tuple(templates)
        self._targets = {kind: dict(names) for kind, names in templates.items()}
        self._default = (
            _seconds(max_session_duration, "max_session_duration"),
            _seconds(session_timeout, "session_timeout"),
        )
        self._lifetimes: dict[tuple[LocalKind, str], Lifetime] = {}
        for name, lifetime in (lifetimes or {}).items():
            if not isinstance(lifetime, Lifetime):
                raise ValueError(f"the lifetime of {name!r} must be a Lifetime")
            for kind in self.kinds:
                self._lifetimes[(kind, name)] = lifetime

    def exists(self, kind: LocalKind, name: str) -> bool:
        with self._lock:
            return name in self._targets.get(kind, ())

    def names(self, kind: LocalKind) -> list[str]:
        with self._lock:
            return sorted(self._targets.get(kind, ()))

    def target(self, kind: LocalKind, name: str) -> str | None:
        """The URL a template's requests are forwarded to; None: the built-in sandbox."""
        with self._lock:
            targets = self._targets.get(kind, {})
            if name not in targets:
                raise UnknownTemplate(name)
            return targets[name]

    def add(
        self, kind: LocalKind, name: str, target: str | None, lifetime: Lifetime | None = None
    ) -> None:
        with self._lock:
            self._targets[kind][name] = target
            if lifetime is not None:
                self._lifetimes[(kind, name)] = lifetime

    def lifetime(self, kind: LocalKind, name: str) -> tuple[float, float]:
        """(max session duration, session timeout) in seconds; ``inf`` = never."""
        with self._lock:
            lifetime = self._lifetimes.get((kind, name), Lifetime())
        maximum = lifetime.max_session_duration
        timeout = lifetime.session_timeout
        return (
            self._default[0] if maximum is None else float(maximum),
            self._default[1] if timeout is None else float(timeout),
        )


def _seconds(value: float | None, name: str) -> float:
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None")
    return float(value)


class Session:
    """One live session. Mutable fields are guarded by the store's lock."""

    def __init__(
        self,
        session_id: str,
        kind: LocalKind,
        name: str,
        namespace: str,
        sandbox: Sandbox,
        lifetime: tuple[float, float],
    ) -> None:
        now, mono = time.time(), time.monotonic()
        self.session_id = session_id
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.sandbox = sandbox
        self.sandbox_id = str(uuid.uuid4())
        self.sandbox_name = f"{name}-{''.join(secrets.choice(_NAME_ALPHABET) for _ in range(8))}"
        self.created_at = now
        self.last_used = now
        self.last_used_mono = mono
        self.expires_mono = mono + lifetime[0]
        self.session_timeout = lifetime[1]

    def info(self) -> SessionInfo:
        return SessionInfo(
            session_id=self.session_id,
            kind=self.kind.name,
            name=self.name,
            namespace=self.namespace,
            created_at=self.created_at,
            last_used=self.last_used,
            workspace=self.sandbox.workspace,
        )


class SessionStore:
    """Thread-safe registry of sessions, with the garbage collector."""

    def __init__(self, templates: TemplateRegistry, factory: SandboxFactory) -> None:
        self.templates = templates
        self._factory = factory
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._closed = False
        self._gc: threading.Thread | None = None
        self._gc_stop = threading.Event()

    # -- create / find / delete ------------------------------------------------------------
    def create(self, kind: LocalKind, name: str, namespace: str) -> Session:
        """Create a session of a template; raises UnknownTemplate, StoreClosed, or the
        sandbox's start error."""
        if not self.templates.exists(kind, name):
            # The answer is the real service's (it names nothing); the log says what to do.
            how = f"start the server with --{kind.cli_option} {name}" if kind.cli_option else ""
            logger.warning(
                "no %s template %r (there are: %s)%s",
                kind.name,
                name,
                ", ".join(self.templates.names(kind)) or "none",
                f"; {how} to add it" if how else "",
            )
            raise UnknownTemplate(f"{kind.name} {name!r}")
        if self._closed:
            raise StoreClosed("the server is shutting down")
        session_id = str(uuid.uuid4())
        sandbox = self._factory(kind, name, session_id)
        session = Session(
            session_id, kind, name, namespace, sandbox, self.templates.lifetime(kind, name)
        )
        with self._lock:
            closed = self._closed
            if not closed:
                self._sessions[session_id] = session
        if closed:
            sandbox.close()
            raise StoreClosed("the server is shutting down")
        logger.info("created %s session %s (%s/%s)", kind.name, session_id, namespace, name)
        return session

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id)

    def touch(self, session: Session) -> None:
        """Record Router activity on ``session`` (at a request's start and at its end)."""
        with self._lock:
            session.last_used = time.time()
            session.last_used_mono = time.monotonic()

    def delete(self, session_id: str) -> bool:
        """Delete a session and its sandbox; False if there is no such session."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        self._close_sandbox(session)
        logger.info("deleted session %s", session_id)
        return True

    def delete_all(self) -> int:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            self._close_sandbox(session)
        return len(sessions)

    def close(self) -> int:
        """Refuse new sessions, stop the garbage collector and delete every session."""
        with self._lock:
            self._closed = True
        self.stop_gc()
        return self.delete_all()

    def reopen(self) -> None:
        with self._lock:
            self._closed = False

    @staticmethod
    def _close_sandbox(session: Session) -> None:
        try:
            session.sandbox.close()
        except Exception:
            logger.exception("failed to clean up the sandbox of session %s", session.session_id)

    # -- introspection -----------------------------------------------------------------------
    def infos(self) -> list[SessionInfo]:
        with self._lock:
            sessions = sorted(self._sessions.values(), key=lambda s: s.created_at)
            return [session.info() for session in sessions]

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return session_id in self._sessions

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    # -- garbage collection ------------------------------------------------------------------
    def expired(self, now: float | None = None) -> list[str]:
        """Sessions past their maximum duration or idle longer than their timeout."""
        mono = time.monotonic() if now is None else now
        with self._lock:
            return [
                session.session_id
                for session in self._sessions.values()
                if mono >= session.expires_mono
                or mono - session.last_used_mono > session.session_timeout
            ]

    def gc_once(self) -> int:
        """Delete expired and idle sessions, exactly as a DELETE would."""
        count = 0
        for session_id in self.expired():
            if self.delete(session_id):
                logger.info("garbage-collected session %s", session_id)
                count += 1
        return count

    def start_gc(self, interval: float) -> None:
        if self._gc is not None:
            return
        self._gc_stop.clear()

        def loop() -> None:
            while not self._gc_stop.wait(interval):
                try:
                    self.gc_once()
                except Exception:
                    logger.exception("session garbage collection failed")

        self._gc = threading.Thread(target=loop, name="agentcube-local-gc", daemon=True)
        self._gc.start()

    def stop_gc(self) -> None:
        self._gc_stop.set()
        gc, self._gc = self._gc, None
        if gc is not None and gc is not threading.current_thread():
            gc.join(timeout=10)
