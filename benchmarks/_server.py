"""A LocalAgentCube in a child process, with its counters reachable over a pipe.

The benchmark client and the server must not share a GIL or an RSS, so the server runs in a
``multiprocessing`` child (spawned, not forked). The parent asks it for its counters
(``connections_accepted()``, ``requests_seen()``, ``sessions()``) through a pipe; that
round trip happens only between measurements, never inside a timed region.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any


def _serve(conn: Connection, root_dir: str) -> None:
    from agentcube.local import LocalAgentCube

    cube = LocalAgentCube(
        quiet=True,
        root_dir=root_dir,
        session_timeout=None,
        max_body_bytes=4 * 1024**3,
    )
    cube.start()
    conn.send((cube.workload_manager_url, cube.router_url))
    try:
        while True:
            try:
                command, arg = conn.recv()
            except EOFError:
                return
            if command == "stop":
                conn.send(None)
                return
            answer: Any
            if command == "connections":
                answer = cube.connections_accepted()
            elif command == "requests":
                answer = [(r[0], r[1], r[2]) for r in cube.requests_seen()]
            elif command == "reset":
                cube.reset_counters()
                answer = None
            elif command == "sessions":
                answer = [s.session_id for s in cube.sessions()]
            elif command == "delete_all":
                answer = cube.delete_all_sessions()
            elif command == "fault":
                cube.inject_fault(**arg)
                answer = None
            else:
                answer = ValueError(f"unknown command {command!r}")
            conn.send(answer)
    finally:
        cube.stop()


class ServerProcess:
    """Starts the server child; ``call(command)`` asks it something between measurements."""

    def __init__(self, root_dir: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(
            target=_serve, args=(child_conn, root_dir), name="agentcube-bench-server", daemon=True
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

    def call(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
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
            try:
                self.call("stop")
            except (EOFError, OSError):
                pass
            self.process.join(30)
        if self.process.is_alive():
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server (used to break a transfer half-way)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
