"""LocalAgentCube: a WorkloadManager and a Router on loopback, in this process."""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer

from ._agents import EchoAgent, ForwardingAgent, validate_agent_url
from ._faults import Fault, FaultInjector, FaultMiddleware, RequestRecord
from ._kinds import AGENT_RUNTIME, CODE_INTERPRETER, KINDS, Backend, LocalKind
from ._picod import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_OUTPUT_BYTES, BuiltinCodeInterpreter
from ._router import DEFAULT_MAX_IN_FLIGHT, DEFAULT_READ_TIMEOUT, RouterApp
from ._sandbox import Sandbox
from ._sandbox.isolation import MODES, IsolatedCodeInterpreter, Limits, Sandboxing, resolve_mode
from ._sandbox.picod_process import PicodProcess
from ._serving.keepalive import ConnectionTracker, serve
from ._store import (
    DEFAULT_GC_INTERVAL,
    DEFAULT_MAX_SESSION_DURATION,
    DEFAULT_SESSION_TIMEOUT,
    Lifetime,
    SessionInfo,
    SessionStore,
    TemplateRegistry,
)
from ._workload_manager import WorkloadManagerApp

if TYPE_CHECKING:
    from ._serving.jwt import Signer

logger = logging.getLogger(__name__)

WORKLOAD_MANAGER = "workload_manager"
ROUTER = "router"

_WARNING = (
    "agentcube.local: WARNING: sessions are NOT isolated: their commands run directly on this "
    "machine, as this user, and see its files, processes and network"
)


def _sandboxing_table(
    workspaces: Mapping[str, str] | None,
    networks: Mapping[str, str] | None,
    limits: Mapping[str, Limits] | None,
) -> Callable[[str], Sandboxing]:
    """How each template's sessions are built: per-name settings over the ``"*"`` ones."""
    for name, directory in (workspaces or {}).items():
        if not isinstance(directory, str) or not directory.startswith("/"):
            raise ValueError(f"workspace of {name!r} must be an absolute path, not {directory!r}")
    for name, network in (networks or {}).items():
        if network not in ("none", "host"):
            raise ValueError(f"network of {name!r} must be 'none' or 'host', not {network!r}")
    for name, value in (limits or {}).items():
        if not isinstance(value, Limits):
            raise ValueError(f"limits of {name!r} must be a Limits, not {type(value).__name__}")

    def pick(table: Mapping[str, Any] | None, name: str, default: Any) -> Any:
        table = table or {}
        return table.get(name, table.get("*", default))

    def sandboxing(name: str) -> Sandboxing:
        return Sandboxing(
            workspace=os.path.normpath(pick(workspaces, name, "/root")),
            network=pick(networks, name, "none"),
            limits=pick(limits, name, Limits()),
        )

    return sandboxing


def _loopback_host(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host {host!r} is not a loopback address") from None
    if not address.is_loopback:
        raise ValueError(
            f"host {host!r} is not a loopback address; LocalAgentCube binds loopback only"
        )
    return host


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number")
    return float(value)


class LocalAgentCube:
    """An embedded AgentCube: WorkloadManager and Router servers plus built-in sandboxes.

    ``code_interpreters`` are the CodeInterpreter template names; ``agents`` maps
    AgentRuntime template names to ``None`` (the built-in echo agent) or the URL of an
    agent server on loopback that requests are forwarded to. Templates exist in every
    namespace.

    Session lifetime is AgentCube's: ``max_session_duration`` after creation, or
    ``session_timeout`` without Router traffic (seconds; ``None`` = never), checked every
    ``gc_interval`` seconds; ``lifetimes`` overrides both per template name.

    ``max_body_bytes`` is PicoD's request body cap (32 MiB), ``max_output_bytes`` the local
    cap on each of a command's stdout and stderr, ``max_in_flight`` the Router's overload
    limit, ``read_timeout`` the Router's limit for receiving a whole request. ``picod``: the
    path of a real PicoD binary to run one process per code-interpreter session instead of
    the built-in one.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        router_port: int = 0,
        token: str | None = None,
        code_interpreters: Iterable[str] = CODE_INTERPRETER.default_templates,
        agents: Mapping[str, str | None] | None = None,
        root_dir: str | os.PathLike[str] | None = None,
        max_session_duration: float | None = DEFAULT_MAX_SESSION_DURATION,
        session_timeout: float | None = DEFAULT_SESSION_TIMEOUT,
        lifetimes: Mapping[str, Lifetime] | None = None,
        gc_interval: float = DEFAULT_GC_INTERVAL,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        picod: str | os.PathLike[str] | None = None,
        quiet: bool = False,
        isolation: str = "auto",
        workspaces: Mapping[str, str] | None = None,
        networks: Mapping[str, str] | None = None,
        limits: Mapping[str, Limits] | None = None,
    ) -> None:
        self._host = _loopback_host(host)
        if isolation not in MODES:
            raise ValueError(f"isolation must be one of {', '.join(MODES)}, not {isolation!r}")
        self._isolation_arg = isolation
        self._isolation = "none"
        self._isolation_reason: str | None = None
        self._sandboxing = _sandboxing_table(workspaces, networks, limits)
        if token is not None and not token:
            raise ValueError("token must be a non-empty string or None")
        self._gc_interval = _positive(gc_interval, "gc_interval")
        self._read_timeout = _positive(read_timeout, "read_timeout")
        for value, name in (
            (max_body_bytes, "max_body_bytes"),
            (max_output_bytes, "max_output_bytes"),
            (max_in_flight, "max_in_flight"),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        agent_map = (
            dict.fromkeys(AGENT_RUNTIME.default_templates) if agents is None else dict(agents)
        )
        for url in agent_map.values():
            if url is not None:
                validate_agent_url(url)
        self._picod = os.fspath(picod) if picod is not None else None
        if self._picod is not None and not os.access(self._picod, os.X_OK):
            raise ValueError(f"picod {self._picod!r} is not an executable file")
        self._port = port
        self._router_port = router_port
        self._token = token
        self._root_dir_arg = os.fspath(root_dir) if root_dir is not None else None
        self._max_body = max_body_bytes
        self._max_output = max_output_bytes
        self._max_in_flight = max_in_flight
        self._quiet = quiet

        given: dict[LocalKind, dict[str, str | None]] = {
            CODE_INTERPRETER: dict.fromkeys(code_interpreters),
            AGENT_RUNTIME: agent_map,
        }
        self._templates = TemplateRegistry(
            {kind: given.get(kind, dict.fromkeys(kind.default_templates)) for kind in KINDS},
            max_session_duration=max_session_duration,
            session_timeout=session_timeout,
            lifetimes=lifetimes,
        )
        self._store = SessionStore(self._templates, self._make_sandbox)
        self._faults = FaultInjector()
        self._trackers = {WORKLOAD_MANAGER: ConnectionTracker(), ROUTER: ConnectionTracker()}
        self._lock = threading.RLock()
        self._servers: dict[str, BaseWSGIServer] = {}
        self._threads: list[threading.Thread] = []
        self._root: str | None = None
        self._owns_root = False
        self._started = False
        self._signer: Signer | None = None
        self._signer_tried = False

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> LocalAgentCube:
        """Bind both servers and start serving on daemon threads."""
        with self._lock:
            if self._started:
                return self
            if self._root_dir_arg is None:
                self._root = os.path.realpath(tempfile.mkdtemp(prefix="agentcube-local-"))
                self._owns_root = True
            else:
                os.makedirs(self._root_dir_arg, exist_ok=True)
                self._root = os.path.realpath(self._root_dir_arg)
                self._owns_root = False
            self._store.reopen()
            self._faults.restart()
            try:
                self._isolation, self._isolation_reason = resolve_mode(self._isolation_arg)
                os.makedirs(self._staging_dir(), mode=0o700, exist_ok=True)
                if self._picod is not None and self._signer is None:
                    from ._serving.jwt import Signer

                    self._signer = Signer()
                    self._signer_tried = True
                control = WorkloadManagerApp(self._store, token=self._token)
                router = RouterApp(
                    self._store,
                    token=self._token,
                    max_in_flight=self._max_in_flight,
                    read_timeout=self._read_timeout,
                )
                self._servers[WORKLOAD_MANAGER], thread = serve(
                    self._host,
                    self._port,
                    FaultMiddleware(control, self._faults, WORKLOAD_MANAGER, "message"),
                    self._trackers[WORKLOAD_MANAGER],
                )
                self._threads.append(thread)
                self._servers[ROUTER], thread = serve(
                    self._host,
                    self._router_port,
                    FaultMiddleware(router, self._faults, ROUTER, "error"),
                    self._trackers[ROUTER],
                )
                self._threads.append(thread)
            except BaseException:
                self._shutdown()
                raise
            self._store.start_gc(self._gc_interval)
            self._started = True
            atexit.register(self.stop)
        if not self._quiet:
            print(self._banner(), file=sys.stderr, flush=True)
        if self._isolation_reason is not None:
            logger.warning("%s", self._isolation_reason)
        logger.info(
            "LocalAgentCube serving: WorkloadManager %s, Router %s",
            self.workload_manager_url,
            self.router_url,
        )
        return self

    def stop(self) -> None:
        """Stop both servers and delete every session (kills processes, removes workspaces)."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            self._shutdown()
            atexit.unregister(self.stop)

    def _shutdown(self) -> None:
        self._faults.stopping()
        for server in self._servers.values():
            server.shutdown()
        for tracker in self._trackers.values():
            tracker.close_all()
        for server in self._servers.values():
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        self._servers.clear()
        self._store.close()
        if self._root is not None:
            shutil.rmtree(
                self._root if self._owns_root else self._staging_dir(), ignore_errors=True
            )

    def __enter__(self) -> LocalAgentCube:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._started

    @property
    def isolation(self) -> str:
        """The isolation in effect: ``"namespaces"`` or ``"none"`` (known once started)."""
        return self._isolation

    def _banner(self) -> str:
        if self._isolation == "namespaces":
            return (
                "agentcube.local: code-interpreter sessions run isolated (Linux namespaces: "
                "own root filesystem, processes and network; limits per template)."
            )
        reason = f" ({self._isolation_reason})" if self._isolation_reason else ""
        return _WARNING + reason

    # -- addresses -----------------------------------------------------------------------------
    def _url(self, which: str) -> str:
        server = self._servers.get(which)
        if server is None or not self._started:
            raise RuntimeError("LocalAgentCube is not running; call start() first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{server.port}"

    @property
    def workload_manager_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the WorkloadManager."""
        return self._url(WORKLOAD_MANAGER)

    @property
    def router_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the Router."""
        return self._url(ROUTER)

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def root_dir(self) -> str | None:
        """The directory holding the session workspaces (while running)."""
        return self._root

    def _router_endpoint(self) -> str:
        return self.router_url.removeprefix("http://")

    # -- templates -----------------------------------------------------------------------------
    def register_agent(
        self, name: str, url: str | None = None, *, lifetime: Lifetime | None = None
    ) -> None:
        """Add (or replace) an AgentRuntime template: ``None`` = echo agent, else forward URL.

        The URL must be ``http://`` on a loopback address, else ``ValueError``. Sessions
        created before the call keep the agent they were created with. ``lifetime``
        overrides the cube's session lifetime for this template.
        """
        self._register(AGENT_RUNTIME, name, url, lifetime)

    def register_code_interpreter(self, name: str, *, lifetime: Lifetime | None = None) -> None:
        """Add a CodeInterpreter template name (``lifetime`` as for :meth:`register_agent`)."""
        self._register(CODE_INTERPRETER, name, None, lifetime)

    def _register(
        self, kind: LocalKind, name: str, url: str | None, lifetime: Lifetime | None
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{kind.label} name must be a non-empty string")
        if url is not None:
            validate_agent_url(url)
        self._templates.add(kind, name, url, lifetime)

    def _staging_dir(self) -> str:
        assert self._root is not None
        return os.path.join(self._root, ".agentcube-staging")

    def _agent_signer(self) -> Signer | None:
        """The key that signs forwarded agent requests (made on first use, if possible)."""
        with self._lock:
            if not self._signer_tried:
                self._signer_tried = True
                try:
                    from ._serving.jwt import Signer

                    self._signer = Signer()
                except ImportError:
                    logger.info("cryptography is not installed: agent requests go unsigned")
            return self._signer

    def _make_sandbox(self, kind: LocalKind, name: str, session_id: str) -> Sandbox:
        """The sandbox of a new session: what the kind's backend builds for the template."""
        if self._root is None:
            raise RuntimeError("LocalAgentCube is not running")
        if kind.backend is Backend.PICOD:
            return self._picod_sandbox(os.path.join(self._root, session_id), session_id, name)
        url = self._templates.target(kind, name)
        if url is None:
            return EchoAgent(self._router_endpoint)
        return ForwardingAgent(name, url, self._agent_signer)

    def _picod_sandbox(self, workspace: str, session_id: str, name: str) -> Sandbox:
        sandboxing = self._sandboxing(name)
        if self._isolation == "namespaces" and (
            self._picod is None or sandboxing.network == "none"
        ):
            return IsolatedCodeInterpreter(
                workspace,
                session_id,
                sandboxing,
                self._router_endpoint(),
                max_body_bytes=self._max_body,
                max_output_bytes=self._max_output,
                picod=self._picod,
                signer=self._signer,
            )
        if self._picod is not None:
            assert self._signer is not None
            return PicodProcess(self._picod, workspace, self._signer)
        return BuiltinCodeInterpreter(
            workspace,
            self._router_endpoint,
            max_body_bytes=self._max_body,
            max_output_bytes=self._max_output,
            staging_dir=self._staging_dir(),
        )

    # -- sessions ------------------------------------------------------------------------------
    def sessions(self) -> list[SessionInfo]:
        """Snapshots of the live sessions, oldest first."""
        return self._store.infos()

    def has_session(self, session_id: str) -> bool:
        return session_id in self._store

    def delete_session(self, session_id: str) -> bool:
        """Delete one session as DELETE would; False if there is no such session."""
        return self._store.delete(session_id)

    def delete_all_sessions(self) -> int:
        """Delete every session as DELETE would; returns how many there were."""
        return self._store.delete_all()

    def reap_now(self) -> int:
        """Run one garbage-collection pass now; returns how many sessions it deleted."""
        return self._store.gc_once()

    # -- faults --------------------------------------------------------------------------------
    def inject_fault(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        delay: float | None = None,
        drop: bool = False,
        after: bool = False,
        times: int = 1,
        body: dict[str, Any] | None = None,
        probability: float = 1.0,
        seed: int | None = None,
    ) -> Fault:
        """Make the next ``times`` requests matching ``method`` and the glob ``path`` misbehave.

        ``status``: answer that status with an error body (or ``body``), action not done.
        ``delay``: sleep first; if the client has gone meanwhile, drop the request unhandled.
        ``drop``: close the connection without answering, action not done;
        ``drop`` + ``after``: do the action, then close the connection without answering.
        ``probability``: each matching request is hit with this probability (drawn from a
        ``random.Random(seed)``), until the fault has fired ``times`` times.
        """
        return self._faults.add(
            Fault(
                method,
                path,
                status=status,
                delay=delay,
                drop=drop,
                after=after,
                times=times,
                body=body,
                probability=probability,
                seed=seed,
            )
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults_fired(self) -> dict[str, int]:
        """Counts by kind: ``"status:503"``, ``"delay"``, ``"cancelled"``, ``"drop"``, ..."""
        return self._faults.fired()

    # -- counters ------------------------------------------------------------------------------
    def connections_accepted(self) -> dict[str, int]:
        """TCP connections accepted: ``{"workload_manager": n, "router": n}``."""
        return {which: tracker.accepted for which, tracker in self._trackers.items()}

    def requests_seen(self) -> list[RequestRecord]:
        """Every request received, in order: ``(server, method, path)`` named tuples."""
        return self._faults.requests()

    def reset_counters(self) -> None:
        """Zero the connection counts, the request log and the fired-fault counts."""
        for tracker in self._trackers.values():
            tracker.reset()
        self._faults.reset_counters()

    def __repr__(self) -> str:
        if not self._started:
            return "LocalAgentCube(stopped)"
        return (
            f"LocalAgentCube(workload_manager_url={self.workload_manager_url!r}, "
            f"router_url={self.router_url!r}, sessions={len(self._store)})"
        )


ENV_VARS = ("WORKLOAD_MANAGER_URL", "ROUTER_URL")


@contextlib.contextmanager
def configured_or_local(**options: Any) -> Iterator[LocalAgentCube | None]:
    """Use the AgentCube the environment names, or run a local one for the ``with`` block.

    If ``WORKLOAD_MANAGER_URL`` or ``ROUTER_URL`` is set, nothing is started and ``None`` is
    yielded. Otherwise a ``LocalAgentCube(**options)`` is started, both variables point at
    it inside the block (they are removed again afterwards), one line on stderr says so, it
    is yielded, and it is stopped (every session deleted) when the block ends.
    """
    if any(os.environ.get(name) for name in ENV_VARS):
        yield None
        return
    options.setdefault("quiet", True)
    cube = LocalAgentCube(**options)
    cube.start()
    print(
        "agentcube.local: WORKLOAD_MANAGER_URL and ROUTER_URL are not set; running against a "
        f"local AgentCube in this process ({cube.workload_manager_url}, {cube.router_url}); "
        "its sandboxes run code on this machine without isolation.",
        file=sys.stderr,
        flush=True,
    )
    saved = {name: os.environ.get(name) for name in ENV_VARS}
    try:
        os.environ["WORKLOAD_MANAGER_URL"] = cube.workload_manager_url
        os.environ["ROUTER_URL"] = cube.router_url
        yield cube
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        cube.stop()
