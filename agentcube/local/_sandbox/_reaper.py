"""The process supervisors (Linux): a small program of its own, run by :mod:`procs`.

Started once per server process as ``python -I -S _reaper.py FD`` (FD: its end of a
``SOCK_SEQPACKET`` socket pair), it is the *zygote*: for each session that runs a command, the
server sends it ``("fork",)`` with a new socket, and it forks a *supervisor* for that session
(a fork of this small process costs about a millisecond). It imports only C modules of the
standard library, and nothing here may import ``agentcube``.

A supervisor makes itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), so every
process the session starts stays in its subtree whatever it does (``setsid``, double forks): an
orphaned descendant is reparented to it, not to init. It starts the session's commands as its
own children and, when the session ends, kills exactly its descendants: found by walking
``/proc`` (parent links up to itself), signalled through a pidfd (so a pid reused between
finding and killing is never hit), again until none is left, all reaped; then it exits. The
zygote is a subreaper as well: what a killed supervisor leaves is reparented to it and killed.

Messages are ``marshal``-encoded tuples. To a supervisor: ``("spawn", id, argv, executable,
cwd, env, umask, slots)`` with the standard streams that are not ``/dev/null`` (``slots`` says
which) and then the command's own reply socket as SCM_RIGHTS (a message too large for one
packet comes as ``("big",)`` with its bytes in a memfd, last), ``("signal", id, signo)`` (the
direct child only), ``("close", grace_seconds)``. On the reply socket: ``("started", pid)`` or
``("failed", errno)``, then ``("exited", wait_status)``. On the main socket: ``("ready", pid,
error)`` first (with a pidfd of the supervisor), ``("closed", count)`` last. End of file from
the server counts as ``("close", 0)``.
"""

from __future__ import annotations

import _socket
import errno
import marshal
import os
import select
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

#: ``signal``'s C half: the module itself would import ``enum`` (slow to start)
_signal: Any = __import__("_signal")

PR_SET_CHILD_SUBREAPER = 36
_MAX_MESSAGE = 64 * 1024
_MAX_FDS = 4
_INT = 4  # bytes of one descriptor in SCM_RIGHTS
#: how long the final sweep may take before giving up on processes that will not die (D state)
_SWEEP_LIMIT = 10.0


def _set_subreaper() -> str | None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            return f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}"
    except (OSError, AttributeError) as exc:
        return f"prctl unavailable: {exc}"
    if not hasattr(os, "pidfd_open") or not hasattr(_signal, "pidfd_send_signal"):
        return "pidfd_open/pidfd_send_signal unavailable"
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as exc:
        return f"pidfd_open: {exc}"
    return None


# -- the process table ---------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of ``pid`` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[1]), fields[0].decode("ascii", "replace")
    except (IndexError, ValueError):
        return None


def descendants(root: int, skip: frozenset[int] = frozenset()) -> dict[int, str]:
    """Every process whose parent chain leads to ``root`` (not through ``skip``): pid -> state."""
    table: dict[int, tuple[int, str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            entry = _stat(int(name))
            if entry is not None:
                table[int(name)] = entry
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    stack = [pid for pid in children.get(root, ()) if pid not in skip]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found[pid] = table[pid][1]
            stack.extend(children.get(pid, ()))
    return found


def _still_descends(pid: int, root: int, skip: frozenset[int]) -> bool:
    """A fresh walk up the parent links of ``pid``: does it reach ``root`` (not via ``skip``)?"""
    current = pid
    for _ in range(65536):
        entry = _stat(current)
        if entry is None:
            return False
        parent = entry[0]
        if parent == root:
            return current not in skip
        if parent <= 1:
            return False
        current = parent
    return False


def signal_descendants(root: int, signo: int, skip: frozenset[int] = frozenset()) -> int:
    """Send ``signo`` to every live descendant of ``root`` (not under ``skip``), each through a
    pidfd; how many."""
    sent = 0
    for pid, state in descendants(root, skip).items():
        if state in ("Z", "X"):
            continue
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue  # gone already
        try:
            # the pidfd names one process for good: if the pid was reused before it was
            # opened, this fresh walk sees the new process, which does not descend from us
            if _still_descends(pid, root, skip):
                _signal.pidfd_send_signal(pidfd, signo)
                sent += 1
        except OSError:
            pass
        finally:
            os.close(pidfd)
    return sent


# -- the supervisor ------------------------------------------------------------------------------


def _exec_child(streams: list[int], argv: list[bytes], executable: bytes, cwd: bytes,
                env: dict[bytes, bytes], umask: int, report: int) -> None:  # fmt: skip
    """In the forked child: become the command, or write the errno to ``report`` and exit."""
    try:
        os.setsid()
        for target, fd in enumerate(streams):
            os.dup2(fd, target)  # inheritable; every other descriptor here is close-on-exec
        os.umask(umask)
        for name in ("SIGPIPE", "SIGXFSZ"):  # what Python ignores, as subprocess restores
            if hasattr(_signal, name):
                _signal.signal(getattr(_signal, name), _signal.SIG_DFL)
        os.chdir(cwd)
        os.execve(executable, argv, env)  # noqa: S606 - the session's command, as PicoD runs it
    except OSError as exc:
        os.write(report, str(exc.errno or errno.EIO).encode())
    except BaseException:
        os.write(report, str(errno.EINVAL).encode())
    finally:
        os._exit(255)


def _tell(sock: _socket.socket, message: tuple[Any, ...]) -> None:
    try:
        sock.send(marshal.dumps(message), _socket.MSG_NOSIGNAL)
    except OSError:
        pass  # the server is gone (or stopped waiting): the main loop sees end of file


class Supervisor:
    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.pid = os.getpid()
        #: pid -> the socket its start and exit are told on
        self.children: dict[int, tuple[int, _socket.socket]] = {}
        self.sessions: set[int] = set()  # the zygote's: pids of the session supervisors
        self.ending = False
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.posix_spawn = hasattr(os, "posix_spawn")
        #: what Python ignores and a command must not inherit (as subprocess restores)
        self.default_signals = tuple(
            getattr(_signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(_signal, name)
        )
        _signal.signal(_signal.SIGCHLD, lambda *_: None)
        _signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        # no signal is ignored here (commands would inherit that); being in a session of its
        # own keeps terminal signals away, and the server ends it by message or end of file

    def send(self, message: tuple[Any, ...]) -> None:
        _tell(self.sock, message)

    def reap(self) -> None:
        """Collect every child that has ended: ours to report, orphans silently."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            known = self.children.pop(pid, None)
            if known is not None:
                _tell(known[1], ("exited", status))
                known[1].close()
            elif pid in self.sessions:
                self.sessions.discard(pid)
                if os.waitstatus_to_exitcode(status) != 0 and not self.ending:
                    self.sweep_orphans()  # it was killed: what it ran is now ours

    def _drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def spawn(self, message: tuple[Any, ...], fds: list[int]) -> None:
        _, ident, argv, executable, cwd, env, umask, slots = message
        if not fds:
            return
        reply = _socket.socket(fileno=fds.pop())  # the command's own socket to the server
        taken = iter(fds)
        streams = [next(taken) if present else self.devnull for present in slots]
        try:
            pid = self._start(streams, argv, executable, cwd, env, umask)
        except OSError as exc:
            _tell(reply, ("failed", exc.errno or errno.EIO))
            reply.close()
        except Exception:  # a malformed request must not end the supervisor
            _tell(reply, ("failed", errno.EINVAL))
            reply.close()
        else:
            self.children[pid] = (ident, reply)
            _tell(reply, ("started", pid))
        finally:
            for fd in fds:
                os.close(fd)

    def _start(
        self,
        streams: list[int],
        argv: list[bytes],
        executable: bytes,
        cwd: bytes,
        env: dict[bytes, bytes],
        umask: int,
    ) -> int:
        """Start the command in a session of its own; OSError as chdir or execve failed."""
        if self.posix_spawn:
            # posix_spawn (vfork speed) has no chdir/umask of its own: this process is
            # single-threaded, so it takes them itself for the moment of the spawn
            os.umask(umask)
            os.chdir(cwd)
            try:
                return os.posix_spawn(
                    executable,
                    argv,
                    env,
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(streams)
                    ],
                    setsid=True,
                    setsigdef=self.default_signals,
                )
            except NotImplementedError:
                self.posix_spawn = False
            finally:
                os.chdir("/")
        report_r, report_w = os.pipe()
        try:
            pid = os.fork()
            if pid == 0:
                _exec_child(streams, argv, executable, cwd, env, umask, report_w)
        finally:
            os.close(report_w)
        chunks = []
        try:
            while chunk := os.read(report_r, 64):  # end of file: execve closed it
                chunks.append(chunk)
        finally:
            os.close(report_r)
        if chunks:
            os.waitpid(pid, 0)
            code = int(b"".join(chunks))
            raise OSError(code, os.strerror(code))
        return pid

    def fork_session(self, fd: int) -> None:
        """The zygote: fork a new session's supervisor, talking to the server on ``fd``."""
        try:
            pid = os.fork()
        except OSError:
            os.close(fd)  # the server sees end of file and falls back
            return
        if pid == 0:
            try:
                self.sock.close()
                for own in (self.wake_r, self.wake_w, self.devnull):
                    os.close(own)
                serve(_socket.socket(fileno=fd))
            finally:
                os._exit(0)
        os.close(fd)
        self.sessions.add(pid)

    def sweep_orphans(self) -> None:
        """The zygote: kill what a dead session supervisor left (it was reparented here)."""
        skip = frozenset(self.sessions)
        deadline = time.monotonic() + _SWEEP_LIMIT
        while descendants(self.pid, skip) and time.monotonic() < deadline:
            signal_descendants(self.pid, _signal.SIGKILL, skip)
            self._wait(0.005)
            while True:  # reap without recursing into this sweep
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                self.sessions.discard(pid)
            skip = frozenset(self.sessions)

    def signal_child(self, ident: int, signo: int) -> None:
        for pid, (known, _) in self.children.items():
            if known == ident:  # not reaped yet, so the pid is still that child
                try:
                    os.kill(pid, signo)
                except OSError:
                    pass
                return

    def receive(self) -> tuple[tuple[Any, ...] | None, list[int]]:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(
                _MAX_MESSAGE, _socket.CMSG_SPACE(_MAX_FDS * _INT), _socket.MSG_CMSG_CLOEXEC
            )
        except InterruptedError:
            return ("noop",), []
        except OSError:
            return None, []
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                for start in range(0, len(payload) - len(payload) % _INT, _INT):
                    fds.append(int.from_bytes(payload[start : start + _INT], sys.byteorder))
        if not data:
            return None, fds
        message = marshal.loads(data)  # noqa: S302 - the server's, over a private socket pair
        if message[0] == "big":  # the message itself is in the last descriptor (a memfd)
            memfd = fds.pop()
            with os.fdopen(memfd, "rb") as handle:
                message = marshal.loads(handle.read())  # noqa: S302 - as above
        return message, fds

    def sweep(self, grace: float) -> int:
        """End every descendant: SIGTERM first when ``grace``, then SIGKILL until none is left."""
        self.ending = True
        killed = 0
        deadline = time.monotonic() + _SWEEP_LIMIT + grace
        self.reap()
        if grace > 0 and self.has_children():
            signal_descendants(self.pid, _signal.SIGTERM)
            until = time.monotonic() + grace
            while time.monotonic() < until:
                self.reap()
                if not self.has_children() or not descendants(self.pid):
                    break
                self._wait(0.01)
        while True:
            self.reap()
            if not self.has_children() or not descendants(self.pid):
                return killed
            killed += signal_descendants(self.pid, _signal.SIGKILL)
            if time.monotonic() > deadline:
                return killed
            self._wait(0.005)

    @staticmethod
    def has_children() -> bool:
        """Whether any process is our child. A subreaper without children has no
        descendants at all (an orphan below it would have become its child): no need to
        read /proc to know that."""
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return True

    def _wait(self, seconds: float) -> None:
        try:
            select.select([self.wake_r], [], [], seconds)
        except InterruptedError:
            pass
        self._drain_wake()

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        grace = 0.0
        while True:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            if any(fd == self.wake_r for fd, _ in events):
                self._drain_wake()
            self.reap()
            if not any(fd == self.sock.fileno() for fd, _ in events):
                continue
            message, fds = self.receive()
            if message is None:
                for fd in fds:
                    os.close(fd)
                break
            kind = message[0]
            if kind == "spawn":
                self.spawn(message, fds)
                continue
            if kind == "fork" and fds:
                for extra in fds[1:]:
                    os.close(extra)
                self.fork_session(fds[0])
                continue
            for fd in fds:
                os.close(fd)
            if kind == "signal":
                self.signal_child(int(message[1]), int(message[2]))
            elif kind == "close":
                grace = float(message[1])
                break
        killed = self.sweep(grace)
        self.send(("closed", killed))


def serve(sock: _socket.socket) -> None:
    """Be a supervisor on ``sock``: announce it (with a pidfd of this process), run, exit."""
    error = _set_subreaper()
    fds = []
    if error is None:
        pidfd = os.pidfd_open(os.getpid())
        fds.append(pidfd)
    ancillary = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, b"".join(
        fd.to_bytes(_INT, sys.byteorder) for fd in fds
    ))] if fds else []  # fmt: skip
    try:
        sock.sendmsg(
            [marshal.dumps(("ready", os.getpid(), error))], ancillary, _socket.MSG_NOSIGNAL
        )
    except OSError:
        error = "the server is gone"
    for fd in fds:
        os.close(fd)
    if error is None:
        Supervisor(sock).run()
    sock.close()
    os._exit(0)  # every descendant is gone and reaped: no interpreter teardown to wait for


def main() -> None:
    """The zygote: one per server process; it forks a supervisor for each session (a fork of
    this small process costs about a millisecond, where starting a Python costs 15 or more).
    It is a subreaper too: what a killed session supervisor leaves is reparented to it and
    killed; when the server goes, it kills everything below it."""
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)
    serve(_socket.socket(fileno=fd))


if __name__ == "__main__":
    main()
