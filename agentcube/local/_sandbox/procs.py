"""Starting and ending the processes a session runs: the one place processes are spawned/killed.

Every command starts in a session (and process group) of its own, umask 022, with Go's start
errors; a timeout kills only the command itself, and its answer waits for whatever holds its
output pipes (PicoD's semantics, unchanged). What "every process a session started ends with
it, and nothing else" rests on depends on the platform:

**Linux with ``prctl(PR_SET_CHILD_SUBREAPER)`` and pidfds (kernel 5.3 or later):**
:class:`SubreaperSupervisor`. Each session that runs a command gets a supervisor process
(``_reaper.py``): forked, in about a millisecond, from one "zygote" per server process (which
is started once, in about 20 ms, at the first command). A supervisor is a child subreaper, so
every process the session starts stays in its subtree whatever it does (``setsid``, double
forks: an orphan is reparented to the supervisor, never to init). Commands are its children
(``posix_spawn``, no process start per command beyond the command's own): the server sends
argv, cwd, environment and umask over a socket pair, with the standard streams and a socket of
the command's own as SCM_RIGHTS; the supervisor tells the pid or the start error (Go's texts
are made from its errno) and later the wait status on the command's socket, which the thread
serving the request reads itself. A timeout kills only the direct child, by pid, from its
parent (which has not reaped it, so that pid cannot have been reused). When the session is
deleted, the supervisor walks ``/proc`` for its descendants (parent links up to itself), opens
a pidfd for each, checks again (a fresh walk up from the pid) that the process behind the pidfd
descends from it, sends SIGKILL through the pidfd, and repeats until none is left, reaping them
all; then it exits, and the server waits for that on a pidfd of it. No process outside its
subtree is ever signalled and no process group id is ever used. The zygote is a subreaper too:
if a command kills its own supervisor (it runs as the same user), the rest of the subtree is
reparented to the zygote, which kills it the same way, and the session's next command gets a
new supervisor. If the server dies, the supervisors and the zygote read end of file and do the
same.

What remains on Linux: a process that leaves the subtree by a path that is not a fork (a
command asking systemd, cron, ``at``, a container engine or an ssh server to start something
for it) is not the session's to kill; a command that kills the zygote and then its supervisor
orphans the rest of its subtree to init; a process stuck in uninterruptible sleep is given up
after 10 s; the zygote stays (idle, about 10 MB) until the server process exits.

**Elsewhere (or when no supervisor can start):** :class:`GroupSupervisor`. Commands are
started by the server itself; deleting the session SIGKILLs the process group of every command.
A command's group is remembered only while its leader is a process this supervisor started and
has not reaped: the leader is kept as a zombie (its exit status is read with ``WNOWAIT``), so
the group id cannot be reused by the system while we remember it; before signalling, the leader
is checked to be ours and unreaped, and a group whose leader is not is never signalled. What
remains there: a process that leaves its group (``setsid``, ``setpgid``) survives the session;
at most 256 ended groups are remembered per session (older ones are reaped and forgotten, their
background processes then survive the session); if anything else in the server process reaps
our children (``os.wait()``), their groups are forgotten; without ``os.waitid`` (not every
platform has it) leaders are reaped at once and only running commands' groups are killed.
"""

from __future__ import annotations

import array
import atexit
import errno
import functools
import logging
import marshal
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .paths import UMASK

logger = logging.getLogger(__name__)

_REAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_reaper.py")
_MAX_INLINE = 48 * 1024
_START_TIMEOUT = 15.0
_REPLY_TIMEOUT = 30.0
_MAX_KEPT_GROUPS = 256
_LOST = -int(signal.SIGKILL)  # what a child whose supervisor died is reported as


class SupervisorClosed(Exception):
    """The session is being deleted: no new process may start."""


class Child(Protocol):
    """A started process: ``returncode`` as :class:`subprocess.Popen` reports it."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def start_error(self) -> OSError | None:
        """None once it has started; the error (``chdir``/``execve``) when it could not."""
        ...


class Supervisor(Protocol):
    """The processes of one session."""

    @property
    def closed(self) -> bool: ...

    def spawn(
        self,
        argv: Sequence[bytes],
        *,
        executable: bytes,
        cwd: bytes,
        env: Mapping[bytes, bytes] | None,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> Child:
        """Start a process; standard streams are descriptors (None: ``/dev/null``).

        Raises :class:`SupervisorClosed`, or OSError; whether the command itself could start
        (``chdir``, ``execve``) may be told only later, by :meth:`Child.start_error`, so
        that reading its output need not wait for that answer.
        """
        ...

    def kill(self, child: Child) -> None:
        """SIGKILL the process itself (not its group), as ``exec.CommandContext`` does."""
        ...

    def finished(self, child: Child) -> None:
        """The caller has the child's status and is done with it."""
        ...

    def close(self, grace: float = 0.0) -> None:
        """End every process of the session (SIGTERM ``grace`` seconds before SIGKILL)."""
        ...


@functools.cache
def descendant_tracking_available() -> bool:
    """Whether :class:`SubreaperSupervisor` can work here (checked once)."""
    if not sys.platform.startswith("linux") or not sys.executable:
        return False
    needed = (
        hasattr(os, "pidfd_open"),
        hasattr(signal, "pidfd_send_signal"),
        hasattr(os, "memfd_create"),
        hasattr(socket, "SOCK_SEQPACKET"),
        hasattr(socket, "MSG_CMSG_CLOEXEC"),
        os.path.isfile(_REAPER),
        os.path.isdir("/proc/self/fd"),
    )
    if not all(needed):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        value = ctypes.c_int(0)
        return int(libc.prctl(37, ctypes.byref(value), 0, 0, 0)) == 0  # PR_GET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def ProcessSupervisor() -> Supervisor:  # the factory keeps the old class name
    """The best supervisor this platform allows."""
    if descendant_tracking_available():
        return SubreaperSupervisor()
    return GroupSupervisor()


# -- Linux: a subreaper process per session -------------------------------------------------------


class _RemoteChild:
    """A command the supervisor started: its start and its exit come on a socket of its own,
    read by the thread that waits for it (no hand-over between threads on the way)."""

    def __init__(self, ident: int, reply: socket.socket) -> None:
        self.ident = ident
        self.pid = 0
        self.returncode: int | None = None
        self._reply = reply
        self._started = False
        self._start_error: OSError | None = None
        self._lock = threading.Lock()

    def _receive(self, timeout: float | None) -> bool:
        """Take one message if it comes within ``timeout``; False when none came."""
        with self._lock:
            if self._reply.fileno() < 0:
                return False
            try:  # most often the message is there already: no select for it
                data = self._reply.recv(256, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if timeout is not None and timeout <= 0:
                    return False
                readable, _, _ = select.select([self._reply], [], [], timeout)
                if not readable:
                    return False
                try:
                    data = self._reply.recv(256, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return True  # woken for nothing: the caller looks again
                except OSError:
                    data = b""
            except OSError:
                data = b""
            if not data:  # the supervisor went away: nothing more will be heard of it
                if not self._started:
                    self._started = True
                    self._start_error = OSError(errno.ECHILD, "the process supervisor exited")
                if self.returncode is None:
                    self.returncode = _LOST
                self._reply.close()
                return True
            message = marshal.loads(data)  # noqa: S302 - our own supervisor, private socket
            if message[0] == "started":
                self.pid = int(message[1])
                self._started = True
            elif message[0] == "failed":
                code = int(message[1])
                self._start_error = OSError(code, os.strerror(code))
                self._started = True
                self.returncode = _LOST
                self._reply.close()
            elif message[0] == "exited":
                self.returncode = os.waitstatus_to_exitcode(int(message[1]))
                self._reply.close()
            return True

    def start_error(self) -> OSError | None:
        """Wait until the command has started (None) or failed to (the error)."""
        deadline = time.monotonic() + _REPLY_TIMEOUT
        while not self._started:
            if not self._receive(max(0.0, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    raise OSError(errno.ETIMEDOUT, "the process supervisor did not answer")
        return self._start_error

    def poll(self) -> int | None:
        while self.returncode is None and self._receive(0):
            pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            self._receive(remaining)
        return self.returncode

    def close(self) -> None:
        with self._lock:
            self._reply.close()


def _receive_ready(sock: socket.socket, timeout: float) -> tuple[int, int | None]:
    """A supervisor's first message: (its pid, a pidfd of it); OSError when it cannot work."""
    fds = array.array("i")
    try:
        sock.settimeout(timeout)
        data, ancillary, _, _ = sock.recvmsg(
            65536, socket.CMSG_SPACE(fds.itemsize), socket.MSG_CMSG_CLOEXEC
        )
        sock.settimeout(None)
    except OSError as exc:
        raise OSError(errno.ECHILD, f"the process supervisor did not start: {exc}") from None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    pidfd = fds[0] if fds else None
    for extra in fds[1:]:
        os.close(extra)
    try:
        ready = marshal.loads(data)  # noqa: S302 - our own supervisor, private socket pair
        if ready[0] != "ready" or ready[2] is not None:
            raise OSError(errno.ECHILD, f"the process supervisor cannot work here: {ready[2]}")
        return int(ready[1]), pidfd
    except BaseException:
        if pidfd is not None:
            os.close(pidfd)
        raise OSError(errno.ECHILD, "the process supervisor did not start") from None


class _Zygote:
    """The one process per server that forks a supervisor for each session.

    Forking a small, already running process costs about a millisecond, where starting a
    Python for every session would cost 15 to 30 ms. The zygote is a subreaper too: what a
    killed session supervisor leaves behind is reparented to it, and it kills that.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._owner = os.getpid()

    def _start(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _REAPER, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                cwd="/",
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        try:
            _, pidfd = _receive_ready(ours, _START_TIMEOUT)
        except OSError:
            self._stop()
            raise
        if pidfd is not None:
            os.close(pidfd)
        return ours

    def _stop(self) -> None:
        sock, self._sock = self._sock, None
        proc, self._proc = self._proc, None
        if sock is not None:
            sock.close()  # end of file: it kills what is left below it and exits
        if proc is not None:
            try:
                proc.wait(15.0)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child, not reaped: its pid is still its own
                proc.wait()

    def supervisor(self) -> _Link:
        """A new supervisor process for one session."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                if self._owner != os.getpid():  # a forked copy of the server: start afresh
                    self._owner, self._proc, self._sock = os.getpid(), None, None
                message = [marshal.dumps(("fork",))]
                ancillary = [
                    (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))
                ]
                try:
                    self._start().sendmsg(message, ancillary)
                except OSError:  # the zygote went away: once more with a new one
                    self._stop()
                    self._start().sendmsg(message, ancillary)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return _Link(ours)

    def close(self) -> None:
        with self._lock:
            if self._owner == os.getpid():
                self._stop()


class _Link:
    """One session's supervisor process: its socket and a pidfd of it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.send_lock = threading.Lock()
        try:
            self.pid, self.pidfd = _receive_ready(sock, _START_TIMEOUT)
        except OSError:
            sock.close()
            raise

    @property
    def dead(self) -> bool:
        """It has exited (killed from inside the session, say)."""
        if self.pidfd is None:
            return self.sock.fileno() < 0
        readable, _, _ = select.select([self.pidfd], [], [], 0)
        return bool(readable)

    def send(self, message: tuple[Any, ...], fds: Sequence[int] = ()) -> None:
        data = marshal.dumps(message)
        memfd = None
        if len(data) > _MAX_INLINE:
            memfd = os.memfd_create("agentcube-spawn", os.MFD_CLOEXEC)
            _write_all(memfd, data)
            os.lseek(memfd, 0, os.SEEK_SET)
            data = marshal.dumps(("big",))
            fds = [*fds, memfd]
        try:
            ancillary = []
            if fds:
                ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            with self.send_lock:
                self.sock.sendmsg([data], ancillary)
        finally:
            if memfd is not None:
                os.close(memfd)

    def close(self, grace: float) -> None:
        """Have it end every process below it, then wait until it has exited itself."""
        try:
            self.send(("close", grace))
        except OSError:
            pass
        # its answer ("closed", n) once every process below it is gone, or end of file
        answered, _, _ = select.select([self.sock.fileno()], [], [], grace + 15.0)
        if answered:
            try:
                self.sock.recv(256)
            except OSError:
                pass
        if self.pidfd is not None:
            exited, _, _ = select.select([self.pidfd], [], [], 5.0)  # readable once it exited
            if not exited:
                logger.warning("process supervisor %s did not exit; killing it", self.pid)
                try:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                except OSError:
                    pass
            os.close(self.pidfd)
            self.pidfd = None
        self.sock.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_ZYGOTE = _Zygote()
atexit.register(_ZYGOTE.close)


def link_to(sock: socket.socket) -> _Link:
    """A link to a supervisor this process forked itself (inside a sandbox: its PID 1 did)."""
    return _Link(sock)


class SubreaperSupervisor:
    """Processes of one session, run by a subreaper supervisor process (see the module docs).

    ``link``: a supervisor already running (a sandbox's); when it dies, commands fall back to
    process groups instead of asking the zygote for another.
    """

    def __init__(self, link: _Link | None = None) -> None:
        self._lock = threading.Lock()
        self._link: _Link | None = link
        self._own_zygote = link is None
        self._fallback: GroupSupervisor | None = None
        self._closed = False
        self._next = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pid(self) -> int | None:
        """The supervisor process's pid (None before the first command)."""
        link = self._link
        return None if link is None else link.pid

    def _current(self) -> _Link | GroupSupervisor:
        with self._lock:
            if self._closed:
                raise SupervisorClosed()
            if self._fallback is not None:
                return self._fallback
            if self._link is not None and not self._link.dead:
                return self._link
            if self._link is not None:  # killed from inside the session: start another
                logger.warning("process supervisor %s died; starting another", self._link.pid)
                self._link.close(0.0)
                if not self._own_zygote:
                    self._link = None
                    self._fallback = GroupSupervisor()
                    return self._fallback
            try:
                self._link = _ZYGOTE.supervisor()
            except OSError as exc:
                logger.warning("%s; processes fall back to process groups", exc)
                self._link = None
                self._fallback = GroupSupervisor()
                return self._fallback
            return self._link

    def spawn(
        self,
        argv: Sequence[bytes],
        *,
        executable: bytes,
        cwd: bytes,
        env: Mapping[bytes, bytes] | None,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> Child:
        link = self._current()
        if isinstance(link, GroupSupervisor):
            return link.spawn(
                argv, executable=executable, cwd=cwd, env=env, stdin=stdin, stdout=stdout,
                stderr=stderr,
            )  # fmt: skip
        with self._lock:
            self._next += 1
            ident = self._next
        reply, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        child = _RemoteChild(ident, reply)
        streams = (stdin, stdout, stderr)
        message = (
            "spawn",
            ident,
            [bytes(arg) for arg in argv],
            bytes(executable),
            bytes(cwd),
            dict(os.environb if env is None else env),
            UMASK,
            tuple(fd is not None for fd in streams),
        )
        try:
            link.send(message, [*(fd for fd in streams if fd is not None), theirs.fileno()])
        except OSError:
            child.close()
            if self._closed:
                raise SupervisorClosed() from None
            raise
        finally:
            theirs.close()
        return child

    def kill(self, child: Child) -> None:
        if isinstance(child, _RemoteChild):
            link = self._link
            if link is not None and child.returncode is None:
                try:
                    link.send(("signal", child.ident, int(signal.SIGKILL)))
                except OSError:
                    pass
        elif self._fallback is not None:
            self._fallback.kill(child)

    def finished(self, child: Child) -> None:
        if isinstance(child, _RemoteChild):
            child.close()
        elif self._fallback is not None:
            self._fallback.finished(child)

    def close(self, grace: float = 0.0) -> None:
        with self._lock:
            self._closed = True
            link, self._link = self._link, None
            fallback = self._fallback
        if link is not None:
            link.close(grace)
        if fallback is not None:
            fallback.close(grace)


# -- elsewhere: process groups, checked before they are signalled ---------------------------------

_HAVE_WNOWAIT = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")


class _LocalChild:
    """A process the server started itself; its status is read without reaping it."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.returncode: int | None = None
        self.reaped = False

    def start_error(self) -> OSError | None:
        return None  # Popen raised it already

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if not _HAVE_WNOWAIT:
            code = self.proc.poll()
            self.reaped = code is not None
            self.returncode = code
            return code
        try:
            result = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # someone else reaped it
            self.reaped = True
            self.returncode = _LOST
            return self.returncode
        if result is None or result.si_pid == 0:
            return None
        if result.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
            self.returncode = -result.si_status
        else:
            self.returncode = result.si_status
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None and _HAVE_WNOWAIT and self.returncode is None and not self.reaped:
            try:  # block until it has ended, still without reaping it
                os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0002
        while True:
            code = self.poll()
            if code is not None:
                return code
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(delay if deadline is None else min(delay, deadline - time.monotonic()))
            delay = min(delay * 2, 0.02)

    def ours(self) -> bool:
        """Started by us and not reaped: its pid (and group id) cannot name anyone else."""
        if self.reaped:
            return False
        if not _HAVE_WNOWAIT:
            return self.proc.returncode is None
        try:
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            self.reaped = True
            return False
        return True

    def reap(self) -> None:
        if self.reaped:
            return
        try:
            self.proc.wait(5.0)  # sets Popen's returncode, so it never waits again
        except subprocess.TimeoutExpired:
            logger.warning("process %s did not exit", self.pid)
            return
        except ChildProcessError:
            pass
        self.reaped = True


class GroupSupervisor:
    """Processes of one session, ended by process group (see the module docs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, _LocalChild] = {}
        #: ended leaders kept unreaped, so that their group ids stay ours: pgid -> leader
        self._groups: OrderedDict[int, _LocalChild] = OrderedDict()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def spawn(
        self,
        argv: Sequence[bytes],
        *,
        executable: bytes,
        cwd: bytes,
        env: Mapping[bytes, bytes] | None,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> Child:
        with self._lock:
            if self._closed:
                raise SupervisorClosed()
        proc = subprocess.Popen(
            list(argv),
            executable=executable,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.DEVNULL if stdout is None else stdout,
            stderr=subprocess.DEVNULL if stderr is None else stderr,
            start_new_session=True,
            umask=UMASK,
        )
        child = _LocalChild(proc)
        with self._lock:
            closed = self._closed
            self._running[child.pid] = child
        if closed:
            self._kill_group(child.pid, child)
        return child

    def kill(self, child: Child) -> None:
        if isinstance(child, _LocalChild) and child.ours():
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def finished(self, child: Child) -> None:
        """Keep an ended leader unreaped while its group may live on; reap what we forget."""
        if not isinstance(child, _LocalChild):
            return
        forget: list[_LocalChild] = []
        with self._lock:
            self._running.pop(child.pid, None)
            if self._closed or not _HAVE_WNOWAIT:
                forget.append(child)
            else:
                self._groups[child.pid] = child
                while len(self._groups) > _MAX_KEPT_GROUPS:
                    forget.append(self._groups.popitem(last=False)[1])
        for old in forget:
            old.reap()

    @staticmethod
    def _kill_group(pgid: int, leader: _LocalChild, signo: int = signal.SIGKILL) -> None:
        """Signal the group ``pgid`` only if its leader is still ours (checked first)."""
        if leader.pid != pgid or not leader.ours():
            return
        try:
            os.killpg(pgid, signo)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self, grace: float = 0.0) -> None:
        with self._lock:
            self._closed = True
            leaders = list(self._running.items()) + list(self._groups.items())
            self._running.clear()
            self._groups.clear()
        if grace > 0 and leaders:
            for pgid, leader in leaders:
                self._kill_group(pgid, leader, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(
                leader.poll() is None for _, leader in leaders
            ):
                time.sleep(0.02)
        for pgid, leader in leaders:
            self._kill_group(pgid, leader)
        for _, leader in leaders:
            leader.reap()
