"""Starting and ending the processes a session runs: the one place processes are spawned/killed.

Each process starts in a new process group (session); deleting the session kills every group
it started, including groups whose leader has exited but whose members still run.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any

from ._paths import UMASK

logger = logging.getLogger(__name__)


class SupervisorClosed(Exception):
    """The session is being deleted: no new process may start."""


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class ProcessSupervisor:
    """The processes of one session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._groups: set[int] = set()
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
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
    ) -> subprocess.Popen[bytes]:
        """Start a process in its own group, umask 022; OSError as from ``execve``/``chdir``."""
        with self._lock:
            if self._closed:
                raise SupervisorClosed()
        proc = subprocess.Popen(
            list(argv),
            executable=executable,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            umask=UMASK,
        )
        with self._lock:
            closed = self._closed
            self._running.add(proc)
        if closed:
            _kill_group(proc.pid)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process itself (not its group), as ``exec.CommandContext`` does."""
        try:
            proc.kill()
        except ProcessLookupError:
            pass

    def terminate_group(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the process's group (a graceful stop)."""
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def finished(self, proc: subprocess.Popen[bytes]) -> None:
        """``proc`` was waited for; remember its group if members of it still run."""
        with self._lock:
            self._running.discard(proc)
            if not self._closed and _group_alive(proc.pid):
                self._groups.add(proc.pid)

    def close(self) -> None:
        """Kill every group this session started; no new process starts afterwards."""
        with self._lock:
            self._closed = True
            pgids = {proc.pid for proc in self._running} | self._groups
            self._groups.clear()
        for pgid in pgids:
            _kill_group(pgid)
