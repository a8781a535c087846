"""Background processes a session started with ``execute_command(..., background=True)``:
:class:`BackgroundProcess` (sync) and :class:`AsyncBackgroundProcess`, each bound to the client
that started or listed it, over the flows of :mod:`agentcube._flows.processes`."""

from __future__ import annotations

import signal as signals
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from ._flows import processes
from ._flows._common import RouterTarget, Started, Status
from ._protocol import Flow
from .exceptions import SessionError

__all__ = ["AsyncBackgroundProcess", "BackgroundProcess"]

_P = TypeVar("_P", bound="_Process")


class _Fields(NamedTuple):
    pid: int
    log_file: str


class _Process(_Fields):
    """The fields and the binding both kinds share (no I/O here)."""

    _state: str
    _runner: Callable[[Flow[Any]], Any] | None = None
    _where: Callable[[], RouterTarget] | None = None

    @classmethod
    def _bind(
        cls: type[_P],
        started: Started,
        runner: Callable[[Flow[Any]], Any],
        where: Callable[[], RouterTarget],
    ) -> _P:
        process = cls(started.pid, started.log_file)
        process._state, process._runner, process._where = started.state, runner, where
        return process

    def _go(self, make: Callable[[RouterTarget, str], Flow[Any]]) -> Any:
        if self._runner is None or self._where is None:
            raise SessionError(
                "this process is not bound to a client: use the one execute_command(..., "
                "background=True) or list_processes() returned"
            )
        return self._runner(make(self._where(), self._state))


def _exit_code(status: Status, timeout: float | None) -> int:
    if status.state == "running":
        raise TimeoutError(f"the process was still running after {timeout} s")
    return -1 if status.exit_code is None else status.exit_code


class BackgroundProcess(_Process):
    """A command started with ``execute_command(..., background=True)``; a tuple
    ``(pid, log_file)`` as before, with methods that ask the sandbox about it.

    Attributes:
        pid: its process id in the sandbox; it leads its own process group when the sandbox
            has ``setsid``.
        log_file: the workspace file receiving its stdout and stderr.
    """

    def is_running(self) -> bool:
        """Whether it still runs (one ``api/execute``)."""
        status: Status = self._go(processes.process_status)
        return status.state == "running"

    def wait(self, timeout: float | None = None) -> int:
        """Wait until it ends and return its exit code (-1 when it was killed by SIGKILL, or
        is gone with the sandbox's restart). It waits in the sandbox: one ``api/execute`` per
        minute of waiting.

        Raises:
            TimeoutError: it still runs after ``timeout`` seconds.
        """
        return _exit_code(self._go(lambda t, s: processes.wait_process(t, s, timeout)), timeout)

    def kill(self, signal: int = signals.SIGTERM) -> None:
        """Send ``signal`` to its whole process group (without ``setsid`` in the sandbox: to it
        and its children), one ``api/execute``; nothing when it has already ended. After
        SIGTERM, :meth:`wait` gives ``143`` for a command that did not handle it."""
        name = processes.signal_name(signal)
        self._go(lambda t, s: processes.kill_process(t, s, name))

    def output(self) -> str:
        """Its log so far, stdout and stderr together (one ``GET api/files``)."""
        data: bytes = self._go(lambda t, s: processes.read_file(t, self.log_file))
        return data.decode("utf-8", "replace")


class AsyncBackgroundProcess(_Process):
    """The async twin of :class:`BackgroundProcess` (from the async clients): the same tuple
    and the same methods, as coroutines."""

    async def is_running(self) -> bool:
        """Whether it still runs (one ``api/execute``)."""
        status: Status = await self._go(processes.process_status)
        return status.state == "running"

    async def wait(self, timeout: float | None = None) -> int:
        """As :meth:`BackgroundProcess.wait`."""
        return _exit_code(
            await self._go(lambda t, s: processes.wait_process(t, s, timeout)), timeout
        )

    async def kill(self, signal: int = signals.SIGTERM) -> None:
        """As :meth:`BackgroundProcess.kill`."""
        name = processes.signal_name(signal)
        await self._go(lambda t, s: processes.kill_process(t, s, name))

    async def output(self) -> str:
        """As :meth:`BackgroundProcess.output`."""
        data: bytes = await self._go(lambda t, s: processes.read_file(t, self.log_file))
        return data.decode("utf-8", "replace")
