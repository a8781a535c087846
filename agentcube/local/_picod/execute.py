"""PicoD's ``POST api/execute``: run a command in the workspace and answer its output.

As PicoD: argv[0] is resolved as ``exec.Command`` does, the environment is the server's plus
the request's, a timeout (60 s by default) kills the command itself and answers exit code 124,
and the answer waits for whatever still holds the command's output pipes. Locally each of
stdout and stderr is kept up to ``max_output_bytes`` (see the package docs).
"""

from __future__ import annotations

import errno
import os
import selectors
import subprocess
import time
from typing import Any

from .._go.binding import EXECUTE_REQUEST
from .._go.gin import GoResponse
from .._go.osexec import dedup_env, look_path
from .._go.stdlib import (
    errno_text,
    format_seconds_rounded,
    go_string,
    parse_duration,
    rfc3339_nano,
)
from .._sandbox import SandboxGone
from .._sandbox.paths import PathDenied, Workspace
from .._sandbox.procs import Child, Supervisor, SupervisorClosed
from .context import PicodContext, bind_body

DEFAULT_TIMEOUT_NS = 60 * 1_000_000_000
_READ_CHUNK = 64 * 1024


class _Capture:
    """Keeps at most ``limit`` bytes of a stream (the local safety cap on output)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self._limit - self._size
        kept = chunk[: max(room, 0)]
        if kept:
            self._parts.append(kept)
            self._size += len(kept)
        self.dropped += len(chunk) - len(kept)

    def text(self) -> str:
        out = go_string(b"".join(self._parts))
        if self.dropped:
            out += f"\n[agentcube.local: {self.dropped} more bytes of output were discarded]\n"
        return out


def _chdir_error(cwd: str) -> str | None:
    """``os.StartProcess`` stats the directory before it forks: Go's text when that fails
    (a path over ``PATH_MAX``, say; a directory that is a file fails later, in the child)."""
    try:
        os.stat(cwd)
    except OSError as exc:
        return f"chdir {cwd}: {errno_text(exc.errno)}"
    except ValueError:
        return f"chdir {cwd}: {errno_text(errno.EINVAL)}"
    return None


class Execute:
    """The handler, over the session's workspace and process supervisor."""

    def __init__(self, workspace: Workspace, processes: Supervisor, max_output_bytes: int) -> None:
        self.workspace = workspace
        self.processes = processes
        self._max_output = max_output_bytes

    def __call__(self, c: PicodContext) -> GoResponse:
        body = bind_body(c, EXECUTE_REQUEST)
        if isinstance(body, GoResponse):
            return body
        command: list[str] = body["command"]
        if not command:
            return c.error(400, "command cannot be empty")
        timeout_ns = DEFAULT_TIMEOUT_NS
        if body["timeout"]:
            try:
                timeout_ns = parse_duration(body["timeout"])
            except ValueError as exc:
                return c.error(400, f"Invalid timeout format: {exc}")
        cwd = self.workspace.root
        if body["working_dir"]:
            try:
                cwd = self.workspace.sanitize(body["working_dir"])
            except PathDenied as exc:
                return c.error(400, f"Invalid working directory: {exc}")
            try:
                os.stat(cwd)
                missing = False
            except FileNotFoundError:
                missing = True
            except (OSError, ValueError):
                missing = False
            if missing:
                try:
                    self.workspace.mkdir_safe(cwd)
                except (PathDenied, OSError) as exc:
                    message = exc.args[0] if isinstance(exc, OSError) and exc.args else str(exc)
                    return c.error(500, f"Failed to create working directory: {message}")
        env: dict[str, str] | None = body["env"] or None
        result = self._run(command, cwd, env, timeout_ns)
        return c.json(200, result)

    def _run(
        self, argv: list[str], cwd: str, extra_env: dict[str, str] | None, timeout_ns: int
    ) -> dict[str, Any]:
        start_ns = time.time_ns()
        clock = time.monotonic_ns()
        deadline = clock + timeout_ns
        stdout = _Capture(self._max_output)
        stderr = _Capture(self._max_output)
        exit_code: int | None = None
        start_error: str | None = None
        path, start_error = look_path(argv[0])
        if timeout_ns > 0 and start_error is None:
            env_list = [f"{k}={v}" for k, v in os.environ.items()]
            if extra_env is None:
                env_list.append(f"PWD={cwd}")
            else:
                env_list.extend(f"{k}={v}" for k, v in extra_env.items())
            env, env_error = dedup_env(env_list)
            assert path is not None
            if env_error:
                start_error = env_error
            elif (chdir_error := _chdir_error(cwd)) is not None:
                start_error = chdir_error
            elif any("\x00" in arg for arg in argv[1:]) or "\x00" in cwd:
                start_error = f"fork/exec {path}: {errno_text(errno.EINVAL)}"
            else:
                exit_code, start_error = self._spawn_and_collect(
                    argv, path, cwd, env, deadline, stdout, stderr
                )
        duration = (time.monotonic_ns() - clock) / 1e9
        end_ns = time.time_ns()
        out_text = stdout.text()
        err_text = stderr.text()
        if time.monotonic_ns() >= deadline:
            exit_code = 124
            err_text += f"Command timed out after {format_seconds_rounded(timeout_ns)} seconds"
        elif exit_code is None:
            exit_code = 1
            if err_text:
                err_text += "\n"
            err_text += start_error or "exec: unknown error"
        return {
            "stdout": out_text,
            "stderr": err_text,
            "exit_code": exit_code,
            "duration": duration,
            "start_time": rfc3339_nano(start_ns),
            "end_time": rfc3339_nano(end_ns),
        }

    def _spawn_and_collect(
        self,
        argv: list[str],
        path: str,
        cwd: str,
        env: dict[bytes, bytes],
        deadline: int,
        stdout: _Capture,
        stderr: _Capture,
    ) -> tuple[int | None, str | None]:
        """Run the command; (exit code, None) or (None, Go's start error text)."""
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            proc = self.processes.spawn(
                [arg.encode("utf-8", "surrogateescape") for arg in argv],
                executable=path.encode("utf-8", "surrogateescape"),
                cwd=cwd.encode("utf-8", "surrogateescape"),
                env=env,
                stdout=out_write,
                stderr=err_write,
            )
        except BaseException as exc:
            for fd in (out_read, err_read):
                os.close(fd)
            if isinstance(exc, SupervisorClosed):
                raise SandboxGone() from None
            if isinstance(exc, OSError):
                return None, f"fork/exec {path}: {errno_text(exc.errno)}"
            if isinstance(exc, ValueError):
                return None, f"fork/exec {path}: {errno_text(errno.EINVAL)}"
            raise
        finally:
            os.close(out_write)  # the command (and what it starts) holds the only writers
            os.close(err_write)
        try:
            self._collect(proc, out_read, err_read, deadline, stdout, stderr)
            error = proc.start_error()  # told alongside: reading did not wait for it
            returncode = proc.wait() if error is None else 0
        finally:
            self.processes.finished(proc)
        if self.processes.closed:
            raise SandboxGone()
        if error is not None:
            return None, f"fork/exec {path}: {errno_text(error.errno)}"
        return (-1 if returncode < 0 else returncode), None

    def _collect(
        self,
        proc: Child,
        out_fd: int,
        err_fd: int,
        deadline: int,
        stdout: _Capture,
        stderr: _Capture,
    ) -> None:
        """Read both pipes until every holder closed them; kill the child at the deadline."""
        captures = {out_fd: stdout, err_fd: stderr}
        selector = selectors.DefaultSelector()
        killed = False
        try:
            for fd in captures:
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                now = time.monotonic_ns()
                if not killed and now >= deadline:
                    if proc.poll() is None:
                        self.processes.kill(proc)
                    killed = True
                wait = 0.5 if killed else min(0.5, max(0.0, (deadline - now) / 1e9))
                for key, _ in selector.select(wait):
                    fd = int(key.fd)
                    try:
                        chunk = os.read(fd, _READ_CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if chunk:
                        captures[fd].add(chunk)
                    else:
                        selector.unregister(fd)
        finally:
            selector.close()
            os.close(out_fd)
            os.close(err_fd)
        if not killed:
            remaining = (deadline - time.monotonic_ns()) / 1e9
            try:
                proc.wait(max(0.0, remaining))
            except subprocess.TimeoutExpired:
                self.processes.kill(proc)
