"""A LocalAgentCube in a child process, with its counters reachable over a pipe.

The benchmark client and the server must not share a GIL or an RSS, so the server runs in a
``multiprocessing`` child (spawned, not forked). The parent asks it for its counters
(``connections_accepted()``, ``requests_seen()``, ``sessions()``), injects faults and reads
their hits through a pipe; that round trip happens only between measurements, never inside a
timed region. The benchmarks (``bench*.py``) and the soak test (``soak.py``) all use it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


def _serve(conn: Connection, root_dir: str | None, options: dict[str, Any]) -> None:
    from agentcube.local import LocalAgentCube

    cube = LocalAgentCube(quiet=True, root_dir=root_dir, **options)
    cube.start()
    faults: list[Any] = []

    def fault(**spec: Any) -> int:
        faults.append(cube.inject_fault(**spec))
        return len(faults) - 1  # the index "hits" answers for

    commands: dict[str, Callable[..., Any]] = {
        "connections": cube.connections_accepted,
        "requests": lambda: [(r[0], r[1], r[2]) for r in cube.requests_seen()],
        "reset": cube.reset_counters,
        "sessions": lambda: [s.session_id for s in cube.sessions()],
        "has": cube.has_session,
        "delete_all": cube.delete_all_sessions,
        "fault": fault,
        "hits": lambda: [f.hits for f in faults],
        "fired": cube.faults_fired,
        "clear": cube.clear_faults,
    }
    conn.send((cube.workload_manager_url, cube.router_url))
    try:
        while True:
            try:
                command, args = conn.recv()
            except EOFError:
                return
            if command == "stop":
                conn.send(None)
                return
            answer: Any
            if command in commands:
                answer = commands[command](**args)
            else:
                answer = ValueError(f"unknown command {command!r}")
            conn.send(answer)
    finally:
        cube.stop()


class ServerProcess:
    """Starts the server child (``LocalAgentCube(quiet=True, root_dir=..., **options)``);
    ``call(command, **args)`` asks it something between measurements, from any thread."""

    def __init__(self, root_dir: str | None = None, **options: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._lock = threading.Lock()
        self.process = ctx.Process(
            target=_serve,
            args=(child_conn, root_dir, options),
            name="agentcube-bench-server",
            daemon=True,
        )
        self.process.start()
        child_conn.close()
        try:
            if not self._conn.poll(60):
                raise EOFError
            self.workload_manager_url, self.router_url = self._conn.recv()
        except EOFError:
            self.kill()
            raise RuntimeError("the benchmark server did not start (see its stderr)") from None

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def call(self, command: str, **args: Any) -> Any:
        with self._lock:
            self._conn.send((command, args))
            answer = self._conn.recv()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def connections(self) -> dict[str, int]:
        result: dict[str, int] = self.call("connections")
        return result

    def requests(self) -> list[tuple[str, str, str]]:
        result: list[tuple[str, str, str]] = self.call("requests")
        return result

    def reset(self) -> None:
        self.call("reset")

    def sessions(self) -> list[str]:
        result: list[str] = self.call("sessions")
        return result

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(EOFError, OSError):
                self.call("stop")
            self.process.join(30)
        if self.process.is_alive():
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server (used to break a transfer half-way)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
