"""The session registry: templates, sessions, and the background reaper."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from werkzeug.wrappers import Request, Response

logger = logging.getLogger(__name__)

CODE_INTERPRETER = "CodeInterpreter"
AGENT_RUNTIME = "AgentRuntime"

#: control-plane path segment -> kind
CONTROL_SEGMENTS: dict[str, str] = {
    "code-interpreter": CODE_INTERPRETER,
    "agent-runtime": AGENT_RUNTIME,
}
#: router path segment -> kind
ROUTER_SEGMENTS: dict[str, str] = {
    "code-interpreters": CODE_INTERPRETER,
    "agent-runtimes": AGENT_RUNTIME,
}
KIND_TO_ROUTER_SEGMENT = {kind: segment for segment, kind in ROUTER_SEGMENTS.items()}


@dataclass(frozen=True)
class SessionInfo:
    """A snapshot of one session. Times are Unix timestamps (``time.time()``)."""

    session_id: str
    kind: str
    name: str
    namespace: str
    created_at: float
    last_used: float
    workspace: str | None


class Sandbox(Protocol):
    """What the router forwards to."""

    @property
    def workspace(self) -> str | None: ...

    def handle(self, request: Request, subpath: str, session_id: str) -> Response: ...

    def close(self) -> None: ...


SandboxFactory = Callable[[str, str, str], Sandbox]
"""``factory(kind, template_name, session_id)`` builds the sandbox of a new session."""


class UnknownTemplate(LookupError):
    """No template of that kind and name."""


class StoreClosed(RuntimeError):
    """The server is shutting down."""


class TemplateRegistry:
    """Code-interpreter names and agents (name -> forward URL, or None for the echo agent)."""

    def __init__(self, code_interpreters: Iterable[str], agents: Mapping[str, str | None]) -> None:
        self._lock = threading.Lock()
        self._code_interpreters = set(code_interpreters)
        self._agents = dict(agents)

    def exists(self, kind: str, name: str) -> bool:
        with self._lock:
            if kind == CODE_INTERPRETER:
                return name in self._code_interpreters
            if kind == AGENT_RUNTIME:
                return name in self._agents
            return False

    def agent_url(self, name: str) -> str | None:
        with self._lock:
            if name not in self._agents:
                raise UnknownTemplate(name)
            return self._agents[name]

    def add_agent(self, name: str, url: str | None) -> None:
        with self._lock:
            self._agents[name] = url

    def add_code_interpreter(self, name: str) -> None:
        with self._lock:
            self._code_interpreters.add(name)

    def code_interpreters(self) -> list[str]:
        with self._lock:
            return sorted(self._code_interpreters)

    def agents(self) -> dict[str, str | None]:
        with self._lock:
            return dict(self._agents)


class Session:
    """One live session. Mutable fields are guarded by the store's lock."""

    def __init__(
        self,
        session_id: str,
        kind: str,
        name: str,
        namespace: str,
        sandbox: Sandbox,
        ttl: float | None,
    ) -> None:
        now, mono = time.time(), time.monotonic()
        self.session_id = session_id
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.sandbox = sandbox
        self.sandbox_id = str(uuid.uuid4())
        self.sandbox_name = f"{name}-{session_id[:8]}"
        self.created_at = now
        self.last_used = now
        self.last_used_mono = mono
        self.expires_mono = mono + ttl if ttl is not None else None
        self.active = 0

    def info(self) -> SessionInfo:
        return SessionInfo(
            session_id=self.session_id,
            kind=self.kind,
            name=self.name,
            namespace=self.namespace,
            created_at=self.created_at,
            last_used=self.last_used,
            workspace=self.sandbox.workspace,
        )


class SessionStore:
    """Thread-safe registry of sessions, with a reaper for TTL and idle timeout."""

    def __init__(
        self,
        templates: TemplateRegistry,
        factory: SandboxFactory,
        *,
        default_ttl: float | None,
        idle_timeout: float | None,
    ) -> None:
        self.templates = templates
        self._factory = factory
        self._default_ttl = default_ttl
        self._idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._closed = False
        self._reaper: threading.Thread | None = None
        self._reaper_stop = threading.Event()

    # -- create / find / delete ------------------------------------------------------------
    def create(self, kind: str, name: str, namespace: str, ttl: float | None = None) -> Session:
        """Create a session of a template; raises :class:`UnknownTemplate`."""
        if not self.templates.exists(kind, name):
            raise UnknownTemplate(f"{kind} {name!r}")
        if self._closed:
            raise StoreClosed("the server is shutting down")
        session_id = str(uuid.uuid4())
        sandbox = self._factory(kind, name, session_id)
        session = Session(
            session_id, kind, name, namespace, sandbox, ttl if ttl else self._default_ttl
        )
        with self._lock:
            closed = self._closed
            if not closed:
                self._sessions[session_id] = session
        if closed:
            sandbox.close()
            raise StoreClosed("the server is shutting down")
        logger.info("created %s session %s (%s/%s)", kind, session_id, namespace, name)
        return session

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id)

    def acquire(
        self,
        session_id: str,
        kind: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
    ) -> Session | None:
        """Find a session (matching kind/name/namespace when given), mark it in use."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if (
                (kind is not None and session.kind != kind)
                or (name is not None and session.name != name)
                or (namespace is not None and session.namespace != namespace)
            ):
                return None
            session.active += 1
            self._touch(session)
            return session

    def release(self, session: Session) -> None:
        """The request that acquired ``session`` is finished."""
        with self._lock:
            session.active = max(0, session.active - 1)
            self._touch(session)

    @staticmethod
    def _touch(session: Session) -> None:
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
        """Refuse new sessions, stop the reaper and delete every session."""
        with self._lock:
            self._closed = True
        self.stop_reaper()
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

    # -- reaping -------------------------------------------------------------------------------
    def expired(self, now: float | None = None) -> list[str]:
        mono = time.monotonic() if now is None else now
        idle = self._idle_timeout
        with self._lock:
            return [
                session.session_id
                for session in self._sessions.values()
                if (session.expires_mono is not None and mono >= session.expires_mono)
                or (
                    idle is not None
                    and session.active == 0
                    and mono - session.last_used_mono >= idle
                )
            ]

    def reap_once(self) -> int:
        """Delete expired and idle sessions, exactly as a DELETE would."""
        count = 0
        for session_id in self.expired():
            if self.delete(session_id):
                logger.info("reaped session %s", session_id)
                count += 1
        return count

    def start_reaper(self, interval: float) -> None:
        if self._reaper is not None:
            return
        self._reaper_stop.clear()

        def loop() -> None:
            while not self._reaper_stop.wait(interval):
                try:
                    self.reap_once()
                except Exception:
                    logger.exception("session reaper failed")

        self._reaper = threading.Thread(target=loop, name="agentcube-local-reaper", daemon=True)
        self._reaper.start()

    def stop_reaper(self) -> None:
        self._reaper_stop.set()
        reaper, self._reaper = self._reaper, None
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join(timeout=10)
