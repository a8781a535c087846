"""Isolated code-interpreter sessions, seen from the server: modes, limits, the sandbox itself.

The one place the server decides whether sessions are isolated and asks for a sandbox. The
kernel work happens in other processes (:mod:`.jail_zygote`, :mod:`._jail`); here:

* :func:`resolve_mode`: ``"auto"`` isolates where the kernel allows it and otherwise runs
  unisolated with the reason; ``"namespaces"`` refuses to start without isolation; ``"none"``.
* :class:`Limits` and :class:`Cgroups`: per-template limits, enforced through the cgroup
  controllers this machine grants (v2, or v1), and through rlimits where none are granted.
* :class:`IsolatedCodeInterpreter`: one session's sandbox. The Router reaches the PicoD inside
  over a unix socket in the session's directory (the sandbox has no network of its own).
"""

from __future__ import annotations

import array
import atexit
import errno
import logging
import marshal
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._go.gin import Request, Response
from . import SandboxStartError
from .picod_process import free_port, to_picod

if TYPE_CHECKING:
    from .._serving.jwt import Signer

logger = logging.getLogger(__name__)

MODES = ("auto", "namespaces", "none")
#: the port PicoD listens on inside a sandbox (its own network: every sandbox has it free)
PICOD_PORT = 8080
_START_TIMEOUT = 30.0
_READY_TIMEOUT = 15.0
_HOW_TO_ENABLE = (
    "user namespaces are needed (Linux; on Ubuntu 23.10 and later, "
    "sysctl kernel.apparmor_restrict_unprivileged_userns=0; in a container, run it with "
    "user namespaces allowed)"
)


@dataclass(frozen=True)
class Limits:
    """A template's sandbox limits; the defaults are the example CodeInterpreter CR's.

    ``memory`` and ``disk`` in bytes (the writable layer is memory-backed: what a session
    writes counts toward its memory limit too), ``cpu`` in cores, ``pids`` processes.
    """

    memory: int = 512 << 20
    cpu: float = 0.5
    pids: int = 512
    disk: int = 1 << 30


@dataclass(frozen=True)
class Sandboxing:
    """How one template's sessions are built (``workspace`` inside, ``network`` none|host)."""

    workspace: str = "/root"
    network: str = "none"
    limits: Limits = Limits()


# -- modes ------------------------------------------------------------------------------------


def resolve_mode(mode: str) -> tuple[str, str | None]:
    """The mode in effect for ``mode`` and, when it is ``"none"`` against the caller's wish,
    why. Raises RuntimeError for ``"namespaces"`` where the kernel refuses."""
    if mode not in MODES:
        raise ValueError(f"isolation must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "none":
        return "none", None
    reason = ZYGOTE.start_error() or _trial_error()
    if reason is None:
        sweep_stale_cgroups()
        return "namespaces", None
    text = f"sessions cannot be isolated here: {reason}; {_HOW_TO_ENABLE}"
    if mode == "namespaces":
        raise RuntimeError(text)
    return "none", text


_TRIAL: list[str | None] = []  # this process's trial sandbox: its error, once known


def _trial_error() -> str | None:
    """Build one whole sandbox and end it (once per process): whether this kernel allows every
    step (namespaces, mounts, ``pivot_root``) is known only by trying, and a server that
    isolates must not learn it from its first session's 500."""
    if not _TRIAL:
        scratch = tempfile.mkdtemp(prefix="agentcube-trial-")
        try:
            sandbox = IsolatedCodeInterpreter(
                os.path.join(scratch, "trial"),
                "trial-sandbox",
                Sandboxing(),
                "",
                max_body_bytes=1 << 20,
                max_output_bytes=1 << 20,
            )
            sandbox.close()
            _TRIAL.append(None)
        except (OSError, SandboxStartError) as exc:
            _TRIAL.append(str(exc) or type(exc).__name__)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return _TRIAL[0]


# -- cgroups ----------------------------------------------------------------------------------

_CGROUP_ROOT = "/sys/fs/cgroup"


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller, or under ``""`` for v2."""
    found: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            for line in handle:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for name in controllers.split(",") if controllers else [""]:
                    found[name] = path
    except OSError:
        pass
    return found


def _enable_children(parent: str) -> None:
    """cgroup v2: offer the controllers to the children of ``parent`` (where it is ours to)."""
    try:
        with open(os.path.join(parent, "cgroup.subtree_control"), "w") as handle:
            handle.write("+memory +pids +cpu")
    except OSError:
        pass  # granted already, or not ours to grant: what the child offers decides


class Cgroups:
    """The cgroups of one session: made with its limits, joined by its sandbox, removed after.

    Per hierarchy, a session's cgroup holds the limits of the whole sandbox (processes, CPU,
    and memory: the memory limit plus the disk cap, since the writable layer is memory) and two
    children: ``picod`` (PID 1 and PicoD, no limit of their own) and ``commands`` (the
    supervisor and every command, with the memory limit). So a command past the memory limit is
    what the kernel kills, never the PicoD that answers for it; v2's rule that a cgroup with
    controllers for its children holds no process of its own is kept too.
    """

    def __init__(self, name: str, limits: Limits) -> None:
        self.dirs: list[str] = []
        self.procs: list[str] = []  # joined by the sandbox's PID 1 (the picod children)
        self.command_procs: list[str] = []  # joined by the command supervisor
        self.rlimits: dict[str, int] = {}
        self.enforced: dict[str, str] = {}
        own = _own_cgroups()
        quota = int(limits.cpu * 100_000)
        whole = limits.memory + limits.disk
        if os.path.exists(os.path.join(_CGROUP_ROOT, "cgroup.controllers")):
            base = os.path.join(_CGROUP_ROOT, own.get("", "/").lstrip("/"))
            session = [("cgroup.subtree_control", "+memory +pids +cpu"), ("memory.max", whole),
                       ("memory.swap.max", 0), ("pids.max", limits.pids),
                       ("cpu.max", f"{quota} 100000")]  # fmt: skip
            commands = [("memory.max", limits.memory), ("memory.swap.max", 0)]
            _enable_children(base)
            if self._make_session(os.path.join(base, name), session, commands):
                for controller in ("memory", "pids", "cpu"):
                    self.enforced[controller] = "cgroup v2"
        else:
            memory = [("memory.limit_in_bytes", limits.memory),
                      ("memory.memsw.limit_in_bytes", limits.memory)]  # fmt: skip
            settings = {
                "memory": ([("memory.limit_in_bytes", whole),
                            ("memory.memsw.limit_in_bytes", whole)], memory),
                "pids": ([("pids.max", limits.pids)], []),
                "cpu": ([("cpu.cfs_period_us", 100_000), ("cpu.cfs_quota_us", quota)], []),
            }  # fmt: skip
            for controller, (session_values, command_values) in settings.items():
                hierarchy = os.path.join(_CGROUP_ROOT, controller)
                if controller not in own or not os.path.isdir(hierarchy):
                    continue
                path = os.path.join(hierarchy, own[controller].lstrip("/"), name)
                if self._make_session(path, session_values, command_values):
                    self.enforced[controller] = "cgroup v1"
        if "memory" not in self.enforced:
            self.rlimits["data"] = limits.memory
            self.enforced["memory"] = "RLIMIT_DATA (per process)"
        if "pids" not in self.enforced:
            self.rlimits["nproc"] = limits.pids
            self.enforced["pids"] = "RLIMIT_NPROC"

    def _make_session(
        self,
        path: str,
        session: Sequence[tuple[str, object]],
        commands: Sequence[tuple[str, object]],
    ) -> bool:
        if not self._make(path, session):
            return False
        picod, command = os.path.join(path, "picod"), os.path.join(path, "commands")
        if not (self._make(picod, []) and self._make(command, commands)):
            return False
        self.procs.append(os.path.join(picod, "cgroup.procs"))
        self.command_procs.append(os.path.join(command, "cgroup.procs"))
        return True

    def _make(self, path: str, values: Sequence[tuple[str, object]]) -> bool:
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        except OSError:
            return False
        self.dirs.append(path)
        ok = not values
        for filename, value in values:
            try:
                with open(os.path.join(path, filename), "w") as handle:
                    handle.write(str(value))
                ok = True
            except OSError:
                if filename.startswith(("memory.memsw", "memory.swap")):
                    continue  # no swap accounting: the memory limit alone
                return False
        return ok

    def remove(self) -> None:
        """Remove the session's cgroups (they empty as the sandbox's last processes exit)."""
        for path, exc in remove_cgroups(list(reversed(self.dirs)), wait=5.0).items():
            logger.warning("cannot remove cgroup %s: %s", path, exc)
        self.dirs.clear()


def session_cgroups(config: dict[str, Any]) -> list[str]:
    """The cgroup directories of a sandbox's ``config``, children first."""
    children = [os.path.dirname(path) for key in ("cgroups", "command_cgroups")
                for path in config.get(key, [])]  # fmt: skip
    sessions = list(dict.fromkeys(os.path.dirname(child) for child in children))
    return children + sessions


def remove_cgroups(paths: list[str], wait: float = 0.0) -> dict[str, OSError]:
    """``rmdir`` each of ``paths`` in order, retrying those still in use for up to ``wait``
    seconds; what could not be removed, and why (a vanished one counts as removed)."""
    deadline = time.monotonic() + wait
    left: dict[str, OSError] = {}
    for path in paths:
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                    left[path] = exc
                    break
                time.sleep(0.01)
    return left


_STALE_AFTER = 60.0  # seconds: an agentcube-* cgroup older than this, and empty, is a leftover


def sweep_stale_cgroups() -> int:
    """Remove the empty ``agentcube-*`` cgroups a server that died left under this process's
    cgroups (a live sandbox's are never empty, so rmdir refuses them); how many went."""
    own = _own_cgroups()
    bases = {os.path.join(_CGROUP_ROOT, path.lstrip("/")) if not name
             else os.path.join(_CGROUP_ROOT, name, path.lstrip("/"))
             for name, path in own.items() if name in ("", "memory", "pids", "cpu")}  # fmt: skip
    removed = 0
    now = time.time()
    for base in bases:
        try:
            names = [n for n in os.listdir(base) if n.startswith("agentcube-")]
        except OSError:
            continue
        for name in names:
            session = os.path.join(base, name)
            try:
                if now - os.stat(session).st_mtime < _STALE_AFTER:
                    continue
            except OSError:
                continue
            paths = [os.path.join(session, "picod"), os.path.join(session, "commands"), session]
            if not remove_cgroups(paths):
                removed += 1
    return removed


# -- the zygote ---------------------------------------------------------------------------------


def send_message(sock: socket.socket, message: tuple[Any, ...], fds: Sequence[int] = ()) -> None:
    """One marshal-encoded message between the server, the zygote and a sandbox, with ``fds``."""
    ancillary = []
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
    sock.sendmsg([marshal.dumps(message)], ancillary)


def receive_message(
    sock: socket.socket, timeout: float | None = None
) -> tuple[tuple[Any, ...], list[int]]:
    """The next message and its descriptors; ConnectionResetError at end of file."""
    sock.settimeout(timeout)
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(
        1 << 16, socket.CMSG_SPACE(4 * fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data:
        for fd in fds:
            os.close(fd)
        raise ConnectionResetError(errno.ECONNRESET, "end of file")
    return marshal.loads(data), list(fds)  # noqa: S302 - our own processes, a private pair


class _JailZygote:
    """The process that forks every sandbox of this server process (see :mod:`.jail_zygote`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._error: str | None = None
        self._owner = os.getpid()

    def start_error(self) -> str | None:
        """Start it if needed; None when it runs and can build sandboxes, else why not."""
        with self._lock:
            return self._start()

    def _start(self) -> str | None:
        if self._owner != os.getpid():
            self._owner, self._proc, self._sock, self._error = os.getpid(), None, None, None
        if self._proc is not None and self._proc.poll() is None:
            return None
        if not sys.platform.startswith("linux"):
            return f"{sys.platform} has no Linux namespaces"
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        path = os.pathsep.join(os.path.abspath(entry) for entry in sys.path if entry)
        # sys.path travels in the environment, not the command line a sandbox's ps shows; the
        # rest of this process's environment (secrets, say) stays out of the zygote
        boot = (
            "import os, sys; sys.path[:] = os.environ.pop('AGENTCUBE_PATH').split(os.pathsep); "
            "from agentcube.local._sandbox.jail_zygote import main; main()"
        )
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-c", boot, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env={"AGENTCUBE_PATH": path, "LC_CTYPE": "C.UTF-8"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
                cwd="/",
            )
        except OSError as exc:
            ours.close()
            return f"cannot start the sandbox zygote: {exc}"
        finally:
            theirs.close()
        try:
            message, fds = receive_message(ours, _START_TIMEOUT)
        except OSError as exc:
            message, fds = ("ready", 0, f"the sandbox zygote did not start: {exc}"), []
        for fd in fds:
            os.close(fd)
        error = message[2] if message[0] == "ready" else "the sandbox zygote did not start"
        self._sock = ours
        if error is not None:
            self._stop()
            return str(error)
        return None

    def _stop(self) -> None:
        sock, self._sock = self._sock, None
        proc, self._proc = self._proc, None
        if sock is not None:
            sock.close()
        if proc is not None:
            try:
                proc.wait(10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def sandbox(self, config: dict[str, Any], listener: socket.socket) -> socket.socket:
        """Ask for one sandbox; returns the reply socket (its answers come there)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                error = self._start()
                if error is not None or self._sock is None:
                    raise SandboxStartError(f"cannot isolate the session: {error}")
                send_message(self._sock, ("sandbox", config), [theirs.fileno(), listener.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

    def close(self) -> None:
        with self._lock:
            if self._owner == os.getpid():
                self._stop()


ZYGOTE = _JailZygote()
atexit.register(ZYGOTE.close)


# -- one session's sandbox --------------------------------------------------------------------


class IsolatedCodeInterpreter:
    """A code-interpreter session in a sandbox of its own, served by the built-in PicoD inside.

    ``directory`` is the session's (empty) host directory: it holds the unix socket the Router
    connects to and the mount point of the sandbox's tmpfs (which exists only inside).
    """

    def __init__(
        self,
        directory: str,
        session_id: str,
        sandboxing: Sandboxing,
        endpoint: str,
        *,
        max_body_bytes: int,
        max_output_bytes: int,
        picod: str | None = None,
        signer: Signer | None = None,
    ) -> None:
        self._directory = directory
        self._signer = signer
        self._endpoint = endpoint
        self._sandboxing = sandboxing
        self._closed = False
        self._pidfd: int | None = None
        self._outside = 0
        os.makedirs(os.path.join(directory, "layer"), mode=0o700)
        # a unix socket's path is limited to 107 bytes: named through a held directory handle
        self._dir_fd: int | None = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._socket_path = f"/proc/self/fd/{self._dir_fd}/picod.sock"
        self.cgroups = Cgroups(f"agentcube-{session_id}", sandboxing.limits)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self._socket_path)
            listener.listen(socket.SOMAXCONN)
            config = {
                "layer": os.path.join(directory, "layer"),
                "disk": sandboxing.limits.disk,
                "workspace": sandboxing.workspace,
                "network": sandboxing.network,
                "hostname": f"sandbox-{session_id[:8]}",
                "cgroups": self.cgroups.procs,
                "command_cgroups": self.cgroups.command_procs,
                "rlimits": self.cgroups.rlimits,
                "uid": os.getuid(),
                "gid": os.getgid(),
                "max_body": max_body_bytes,
                "max_output": max_output_bytes,
            }
            self._port = PICOD_PORT
            if picod is not None:
                assert signer is not None
                if sandboxing.network == "host":  # the machine's ports: one that is free
                    self._port = free_port()
                config.update(picod=picod, picod_port=self._port, picod_key=signer.public_pem)
            reply = ZYGOTE.sandbox(config, listener)
        except BaseException:
            listener.close()
            self._discard()
            raise
        listener.close()
        try:
            self._wait_ready(reply)
        except BaseException:
            self.close()
            raise
        finally:
            reply.close()

    def _wait_ready(self, reply: socket.socket) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            try:
                message, fds = receive_message(reply, max(0.01, deadline - time.monotonic()))
            except OSError as exc:
                raise SandboxStartError(f"the sandbox did not start: {exc}") from None
            if message[0] == "forked":
                self._outside = int(message[1])
                self._pidfd = fds[0] if fds else None
                for extra in fds[1:]:
                    os.close(extra)
                continue
            for fd in fds:
                os.close(fd)
            if message[0] == "ready":
                if message[1] is not None:
                    raise SandboxStartError(f"the sandbox did not start: {message[1]}")
                return

    @property
    def workspace(self) -> str | None:
        """The workspace as the host can reach it (through the sandbox's root, for tests)."""
        if not self._outside:
            return None
        return f"/proc/{self._outside}/root" + self._sandboxing.workspace.rstrip("/")

    @property
    def closed(self) -> bool:
        return self._closed

    def endpoint(self) -> str:
        return self._endpoint

    def handle(self, request: Request, session_id: str) -> Response:
        return to_picod(
            self._closed, self._port, request, session_id, self._signer, self._socket_path
        )

    def close(self) -> None:
        """Kill the sandbox (everything in it dies with its PID 1), then remove what is left."""
        self._closed = True
        pidfd, self._pidfd = self._pidfd, None
        if pidfd is not None:
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except OSError:
                pass
            select.select([pidfd], [], [], 10.0)
            os.close(pidfd)
        self._discard()

    def _discard(self) -> None:
        dir_fd, self._dir_fd = self._dir_fd, None
        if dir_fd is not None:
            os.close(dir_fd)
        self.cgroups.remove()
        shutil.rmtree(self._directory, ignore_errors=True)
