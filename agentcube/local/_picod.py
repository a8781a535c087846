"""The built-in code-interpreter sandbox: PicoD's HTTP API, answered as PicoD answers it.

PicoD is a gin server: a 32 MiB body cap, gin-contrib/gzip (BestSpeed), then the routes
``POST api/execute``, ``POST api/files``, ``GET api/files``, ``GET api/files/*path`` and
``GET health``. Everything here follows volcano-sh/agentcube's ``pkg/picod`` as the
conformance corpus recorded it; the differences are deliberate (see the package docs).
"""

from __future__ import annotations

import base64
import binascii
import errno
import logging
import os
import secrets
import selectors
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from ._gin import (
    JSON_TYPE,
    BodyReadError,
    GinRoutes,
    GoResponse,
    Headers,
    Request,
    not_found,
    trailing_slash_redirect,
)
from ._go import (
    GoTime,
    MarshalError,
    errno_text,
    ext,
    file_mode_string,
    format_duration,
    format_seconds_rounded,
    gin_h,
    go_json,
    go_quote,
    go_string,
    http_date,
    parse_duration,
    parse_http_date,
    rfc3339_nano,
    type_by_extension,
)
from ._gojson import EXECUTE_REQUEST, UPLOAD_FILE_REQUEST, BindError, bind
from ._paths import (
    MkdirError,
    NotADirectory,
    OpenFailed,
    PathDenied,
    Workspace,
    WorkspaceGone,
)
from ._procs import Child, ProcessSupervisor, SupervisorClosed

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 32 << 20
DEFAULT_MAX_OUTPUT_BYTES = 64 << 20
DEFAULT_TIMEOUT_NS = 60 * 1_000_000_000
_READ_CHUNK = 64 * 1024
_FILE_CHUNK = 256 * 1024
_NO_GZIP_EXTENSIONS = frozenset({".png", ".gif", ".jpeg", ".jpg"})
_BODY_TOO_LARGE = "http: request body too large"


class SandboxGone(Exception):
    """The session was deleted while the request ran."""


class _LimitedBody:
    """``http.MaxBytesReader``."""

    def __init__(self, body: Any, limit: int) -> None:
        self._body = body
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        if self._left < 0:
            raise BodyReadError(_BODY_TOO_LARGE)
        want = _READ_CHUNK if size is None or size < 0 else size
        data = self._body.read(min(want, self._left + 1))
        if len(data) > self._left:
            self._left = -1
            raise BodyReadError(_BODY_TOO_LARGE)
        self._left -= len(data)
        return bytes(data)


def _read_all(body: Any) -> bytes:
    parts: list[bytes] = []
    while True:
        chunk = body.read(_READ_CHUNK)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


@dataclass
class _Ctx:
    """A gin context: the request, route params, and the headers written so far."""

    request: Request
    params: dict[str, str]
    headers: Headers
    gzip: bool

    def json(self, status: int, payload: Any) -> GoResponse:
        """gin's ``c.JSON``: when ``json.Marshal`` fails (a time outside the years 0 to 9999),
        gin records the error and writes no body: the status, the JSON type, nothing else."""
        if "Content-Type" not in self.headers:
            self.headers.set("Content-Type", JSON_TYPE)
        try:
            body = go_json(payload)
        except MarshalError as exc:
            logger.debug("answer not marshalled: %s", exc)
            body = b""
        return GoResponse(status, self.headers, body, gzip=self.gzip)

    def error(self, status: int, message: str) -> GoResponse:
        return self.json(status, gin_h(error=message, code=status))

    def text_error(self, status: int, message: str) -> GoResponse:
        """``http.Error``."""
        self.headers.delete("Content-Length")
        self.headers.set("Content-Type", "text/plain; charset=utf-8")
        self.headers.set("X-Content-Type-Options", "nosniff")
        return GoResponse(status, self.headers, (message + "\n").encode(), gzip=self.gzip)


def _go_b64decode(text: str) -> bytes:
    """``base64.StdEncoding.DecodeString``; ValueError carries Go's message."""
    if text.isascii() and "\n" not in text and "\r" not in text:
        stripped = text.rstrip("=")
        if "=" not in stripped and len(text) % 4 == 0 and len(text) - len(stripped) <= 2:
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                pass
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    table = {ord(c): i for i, c in enumerate(alphabet)}
    src = text.encode("utf-8")
    out = bytearray()
    si = 0

    def corrupt(position: int) -> ValueError:
        return ValueError(f"illegal base64 data at input byte {position}")

    while True:
        quantum = [0, 0, 0, 0]
        dlen = 4
        j = 0
        while j < 4:
            if si == len(src):
                if j == 0:
                    return bytes(out)
                raise corrupt(si - j)
            byte = src[si]
            si += 1
            if byte in table:
                quantum[j] = table[byte]
                j += 1
                continue
            if byte in (0x0A, 0x0D):
                continue
            if byte != 0x3D:
                raise corrupt(si - 1)
            if j in (0, 1):
                raise corrupt(si - 1)
            if j == 2:
                while si < len(src) and src[si] in (0x0A, 0x0D):
                    si += 1
                if si == len(src):
                    raise corrupt(len(src))
                if src[si] != 0x3D:
                    raise corrupt(si - 1)
                si += 1
            while si < len(src) and src[si] in (0x0A, 0x0D):
                si += 1
            if si < len(src):
                raise corrupt(si)
            dlen = j
            break
        value = quantum[0] << 18 | quantum[1] << 12 | quantum[2] << 6 | quantum[3]
        out += value.to_bytes(3, "big")[: dlen - 1]
        if dlen < 4:
            return bytes(out)


def _parse_mode(text: str | None) -> int:
    """PicoD's ``parseFileMode``: octal, at most 0777, else 0644."""
    if not text:
        return 0o644
    try:
        if not all(c in "01234567" for c in text.lstrip("+")) or text.startswith("+"):
            raise ValueError(text)
        mode = int(text, 8)
    except ValueError:
        return 0o644
    if mode > 0o777:
        return 0o644
    return mode


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# -- execution ------------------------------------------------------------------------------------


def _look_path(name: str) -> tuple[str | None, str | None]:
    """``exec.Command``'s resolution of argv[0]: (path to run, start error text)."""

    def find_executable(path: str) -> int | None:
        try:
            info = os.stat(path)
        except OSError as exc:
            return exc.errno or errno.ENOENT
        except ValueError:
            return errno.EINVAL
        if stat.S_ISDIR(info.st_mode):
            return errno.EISDIR
        if os.access(path, os.X_OK, effective_ids=os.access in os.supports_effective_ids):
            return None
        return errno.EACCES

    if name == "":
        return None, "exec: no command"
    if os.path.basename(name) != name:
        return name, None  # a path: run as given
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if find_executable(candidate) is None:
            if not os.path.isabs(candidate):
                return candidate, (
                    f"exec: {go_quote(name)}: cannot run executable found relative to current "
                    "directory"
                )
            return candidate, None
    return None, f"exec: {go_quote(name)}: executable file not found in $PATH"


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


# -- the server -----------------------------------------------------------------------------------


class BuiltinPicod:
    """PicoD for one session: a workspace, its processes and the HTTP API."""

    def __init__(
        self,
        workspace: str,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        staging_dir: str | None = None,
    ) -> None:
        self.workspace = Workspace(workspace)
        self.workspace.create()
        self.processes = ProcessSupervisor()
        self._max_body = max_body_bytes
        self._max_output = max_output_bytes
        self._staging = staging_dir
        self._started = time.monotonic_ns()
        self._closed = False
        self._lock = threading.Lock()
        routes = GinRoutes()
        routes.add("POST", "/api/execute", self._execute)
        routes.add("POST", "/api/files", self._upload)
        routes.add("GET", "/api/files", self._list)
        routes.add("GET", "/api/files/*path", self._download)
        routes.add("GET", "/health", self._health)
        self._routes = routes

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Kill every process the session started and remove the workspace."""
        with self._lock:
            self._closed = True
        self.processes.close()
        self.workspace.close()

    # -- the engine -------------------------------------------------------------------------------
    def handle(self, request: Request) -> GoResponse:
        """Answer one request as PicoD's gin engine would."""
        if self._closed:
            raise SandboxGone()
        found = self._routes.lookup(request.method, request.path)
        if isinstance(found, str):
            return trailing_slash_redirect(request, found)
        if request.content_length > self._max_body:
            return GoResponse(
                413,
                Headers([("Content-Type", JSON_TYPE)]),
                go_json(
                    gin_h(
                        error="request body too large",
                        detail=f"maximum allowed size is {self._max_body} bytes",
                    )
                ),
            )
        request.body = _LimitedBody(request.body, self._max_body)
        compress = self._should_compress(request)
        if found is None:
            return not_found(gzip=compress)
        handler, params = found
        headers = Headers()
        if compress:
            headers.set("Content-Encoding", "gzip")
            headers.set("Vary", "Accept-Encoding")
        try:
            response: GoResponse = handler(_Ctx(request, params, headers, compress))
        except WorkspaceGone:
            raise SandboxGone() from None
        if self._closed:
            response.close()
            raise SandboxGone()
        return response

    @staticmethod
    def _should_compress(request: Request) -> bool:
        headers = request.headers
        if "gzip" not in (headers.get("Accept-Encoding") or ""):
            return False
        if "Upgrade" in (headers.get("Connection") or ""):
            return False
        if "text/event-stream" in (headers.get("Accept") or ""):
            return False
        if ext(request.path) in _NO_GZIP_EXTENSIONS:
            return False
        return not request.path.startswith("/health")

    # -- GET health ------------------------------------------------------------------------------
    def _health(self, c: _Ctx) -> GoResponse:
        uptime = format_duration(time.monotonic_ns() - self._started)
        return c.json(200, gin_h(status="ok", service="PicoD", version="0.0.1", uptime=uptime))

    # -- POST api/execute ------------------------------------------------------------------------
    def _bind(self, c: _Ctx, struct: Any) -> dict[str, Any] | GoResponse:
        try:
            data = _read_all(c.request.body)
        except BodyReadError as exc:
            return c.error(400, str(exc))
        try:
            return bind(data, struct)
        except BindError as exc:
            return c.error(400, str(exc))

    def _execute(self, c: _Ctx) -> GoResponse:
        body = self._bind(c, EXECUTE_REQUEST)
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
        path, start_error = _look_path(argv[0])
        if timeout_ns > 0 and start_error is None:
            env_list = [f"{k}={v}" for k, v in os.environ.items()]
            if extra_env is None:
                env_list.append(f"PWD={cwd}")
            else:
                env_list.extend(f"{k}={v}" for k, v in extra_env.items())
            env, env_error = _dedup_env(env_list)
            assert path is not None
            if env_error:
                start_error = env_error
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

    # -- POST api/files --------------------------------------------------------------------------
    def _upload(self, c: _Ctx) -> GoResponse:
        content_type = c.request.headers.get("Content-Type") or ""
        media = content_type.split(";", 1)[0].split(" ", 1)[0].strip()
        if media.startswith("multipart/form-data"):
            return self._upload_multipart(c, content_type)
        return self._upload_json(c)

    def _upload_json(self, c: _Ctx) -> GoResponse:
        body = self._bind(c, UPLOAD_FILE_REQUEST)
        if isinstance(body, GoResponse):
            return body
        user_path: str = body["path"]
        target = self._write_target(c, user_path)
        if isinstance(target, GoResponse):
            return target
        try:
            data = _go_b64decode(body["content"])
        except ValueError as exc:
            return c.error(400, f"Invalid base64 content: {exc}")
        mode = _parse_mode(body["mode"])
        try:  # os.MkdirAll of its directory, then os.WriteFile
            fd, _ = self.workspace.create_file(target, user_path, mode)
        except PathDenied as exc:
            return c.error(400, str(exc))
        except MkdirError as exc:
            return c.error(500, f"Failed to create directory: {exc.args[0]}")
        except OSError as exc:
            return c.error(500, f"Failed to write file: open {target}: {errno_text(exc.errno)}")
        try:
            try:
                _write_all(fd, data)
            except OSError as exc:
                message = f"Failed to write file: write {target}: {errno_text(exc.errno)}"
                return c.error(500, message)
            return self._answer_file_info(c, target, fd)
        finally:
            os.close(fd)

    def _write_target(self, c: _Ctx, user_path: str) -> str | GoResponse:
        """Where an upload goes (PicoD's sanitizePath), or the 400 refusing it."""
        try:
            target = self.workspace.sanitize(user_path)
            self.workspace.writable(target, user_path)
        except PathDenied as exc:
            return c.error(400, str(exc))
        return target

    def _answer_file_info(self, c: _Ctx, target: str, fd: int) -> GoResponse:
        """The ``FileInfo`` answer, from the descriptor just written (not the path again)."""
        try:
            info = os.fstat(fd)
        except OSError as exc:
            return c.error(500, f"Failed to get file info: stat {target}: {errno_text(exc.errno)}")
        return c.json(
            200,
            {
                "path": self.workspace.relative(target),
                "size": info.st_size,
                "mode": file_mode_string(info.st_mode),
                "modified": GoTime(info.st_mtime_ns),
            },
        )

    def _upload_multipart(self, c: _Ctx, content_type: str) -> GoResponse:
        form = _MultipartForm(self._staging)
        try:
            form.parse(c.request.body, content_type)
            user_path = form.value("path")
            if not user_path:
                return c.error(400, "Missing 'path' field")
            upload = form.file("file")
            if upload is None:
                return c.error(400, "Failed to get file: http: no such file")
            target = self._write_target(c, user_path)
            if isinstance(target, GoResponse):
                return target
            mode = _parse_mode(form.value("mode"))
            try:  # os.MkdirAll of its directory, then os.OpenFile
                fd, _ = self.workspace.create_file(target, user_path, mode)
            except PathDenied as exc:
                return c.error(400, str(exc))
            except MkdirError as exc:
                return c.error(500, f"Failed to create directory: {exc.args[0]}")
            except (OSError, ValueError):
                return c.error(500, "Failed to create destination file")
            try:
                try:
                    with open(upload, "rb") as source:
                        while chunk := source.read(_FILE_CHUNK):
                            _write_all(fd, chunk)
                except OSError:
                    return c.error(500, "Failed to save file content")
                return self._answer_file_info(c, target, fd)
            finally:
                os.close(fd)
        finally:
            form.cleanup()

    # -- GET api/files?path= ---------------------------------------------------------------------
    def _list(self, c: _Ctx) -> GoResponse:
        user_path = c.request.query_first("path")
        if not user_path:
            return c.error(400, "Missing 'path' query parameter")
        try:
            target = self.workspace.sanitize(user_path)
        except PathDenied as exc:
            return c.error(400, str(exc))
        try:
            fd = self.workspace.open_directory(target)
        except FileNotFoundError:
            return c.error(404, "Directory not found")
        except NotADirectory as exc:
            op = "readdirent" if exc.regular else "open"
            return c.error(500, f"Failed to read directory: {op} {target}: {errno_text(exc.errno)}")
        except OSError as exc:
            return c.error(500, f"Failed to read directory: open {target}: {errno_text(exc.errno)}")
        listed: list[tuple[bytes, os.stat_result]] = []
        try:
            with os.scandir(fd) as scan:
                for entry in scan:
                    try:  # relative to the directory's descriptor, never following a symlink
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    listed.append((os.fsencode(entry.name), info))  # Go sorts by the bytes
        except OSError as exc:
            return c.error(
                500, f"Failed to read directory: readdirent {target}: {errno_text(exc.errno)}"
            )
        finally:
            os.close(fd)
        listed.sort(key=lambda item: item[0])
        files = [
            {
                "name": go_string(name),
                "size": info.st_size,
                "modified": GoTime(info.st_mtime_ns),
                "mode": file_mode_string(info.st_mode),
                "is_dir": stat.S_ISDIR(info.st_mode),
            }
            for name, info in listed
        ]
        return c.json(200, {"files": files})

    # -- GET api/files/*path ---------------------------------------------------------------------
    def _download(self, c: _Ctx) -> GoResponse:
        param = c.params.get("path", "")
        if param == "":
            return c.error(400, "Missing file path")
        user_path = param[1:] if param.startswith("/") else param
        try:
            target = self.workspace.sanitize(user_path)
        except PathDenied as exc:
            return c.error(400, str(exc))
        opened: int | OpenFailed | None
        try:
            opened = self.workspace.open_file(target)
        except OpenFailed as exc:  # the stat would succeed; http.ServeFile's open fails
            opened = exc
        except FileNotFoundError:
            return c.error(404, "File not found")
        except OSError as exc:
            return c.error(500, f"Failed to get file info: stat {target}: {errno_text(exc.errno)}")
        if opened is None:
            return c.error(400, "Path is a directory, not a file")
        content_type = type_by_extension(ext(target)) or "application/octet-stream"
        c.headers.set("Content-Description", "File Transfer")
        c.headers.set("Content-Transfer-Encoding", "binary")
        c.headers.set("Content-Disposition", f'attachment; filename="{os.path.basename(target)}"')
        c.headers.set("Content-Type", content_type)
        return _serve_file(c, opened)


# -- http.ServeFile -------------------------------------------------------------------------------


def _contains_dot_dot(path: str) -> bool:
    if ".." not in path:
        return False
    return any(part == ".." for part in path.replace("\\", "/").split("/"))


def _serve_file(c: _Ctx, opened: int | OpenFailed) -> GoResponse:
    """``http.ServeFile`` of a file the walk opened (or whose open failed)."""
    request = c.request
    failed = opened if isinstance(opened, OpenFailed) else None
    fd = opened if isinstance(opened, int) else None

    def give_up(response: GoResponse) -> GoResponse:
        if fd is not None:
            os.close(fd)
        return response

    if _contains_dot_dot(request.path):
        return give_up(c.text_error(400, "invalid URL path"))
    if request.path.endswith("/index.html"):
        location = "./"
        if request.raw_query:
            location += "?" + request.raw_query
        c.headers.set("Location", location)
        return give_up(GoResponse(301, c.headers, b"", gzip=c.gzip))
    if failed is not None:
        if failed.errno in (errno.EACCES, errno.EPERM):
            return c.text_error(403, "403 Forbidden")
        if failed.errno == errno.ENOENT:
            return c.text_error(404, "404 page not found")
        return c.text_error(500, "500 Internal Server Error")
    assert fd is not None
    try:
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        info = os.fstat(handle.fileno())
        return _serve_content(c, handle, info.st_size, info.st_mtime_ns)
    except BaseException:
        handle.close()
        raise


def _serve_error(c: _Ctx, status: int, message: str) -> GoResponse:
    for name in ("Cache-Control", "Etag", "Last-Modified"):
        c.headers.delete(name)
    return c.text_error(status, message)


#: ``time.Time{}`` (year 1), which net/http treats as "no modification time"
_ZERO_TIME_NS = -62_135_596_800 * 1_000_000_000


def _serve_content(c: _Ctx, handle: IO[bytes], size: int, mtime_ns: int) -> GoResponse:
    """``http.serveContent`` for a regular file, whose Content-Type the handler set.

    Times are Go's: any year (``Last-Modified`` prints it), ``isZeroTime`` being year 1 or
    the Unix epoch, comparisons on whole seconds rounded down.
    """
    request = c.request
    headers = c.headers
    mtime = mtime_ns // 1_000_000_000
    known = mtime_ns not in (0, _ZERO_TIME_NS)  # !isZeroTime(modtime)
    if known:
        headers.set("Last-Modified", http_date(mtime))
    done = _check_preconditions(c, mtime if known else None)
    if done is not None:
        handle.close()
        return done
    range_header = request.headers.get("Range") or ""
    if range_header and not _if_range_ok(request, None if mtime_ns == _ZERO_TIME_NS else mtime):
        range_header = ""
    try:
        ranges = _parse_range(range_header, size)
    except _RangeError as exc:
        handle.close()
        if exc.no_overlap:
            headers.set("Content-Range", f"bytes */{size}")
        return _serve_error(c, 416, str(exc))
    if sum(length for _, length in ranges) > size:
        ranges = []
    status = 200
    send_size = size
    body: Iterator[bytes]
    if len(ranges) == 1:
        start, length = ranges[0]
        handle.seek(start)
        send_size = length
        status = 206
        headers.set("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
        body = _file_chunks(handle, length)
    elif len(ranges) > 1:
        boundary = secrets.token_hex(30)
        ctype = headers.get("Content-Type") or ""
        parts = []
        total = 0
        for index, (start, length) in enumerate(ranges):
            head = (
                ("\r\n" if index else "")
                + f"--{boundary}\r\nContent-Range: bytes {start}-{start + length - 1}/{size}\r\n"
                + (f"Content-Type: {ctype}\r\n" if ctype else "")
                + "\r\n"
            ).encode()
            parts.append((head, start, length))
            total += len(head) + length
        tail = f"\r\n--{boundary}--\r\n".encode()
        total += len(tail)
        send_size = total
        status = 206
        headers.set("Content-Type", f"multipart/byteranges; boundary={boundary}")
        body = _multipart_ranges(handle, parts, tail)
    else:
        body = _file_chunks(handle, size)
    headers.set("Accept-Ranges", "bytes")
    length_set: int | None = None
    if ranges or headers.get("Content-Encoding") is None:
        headers.set("Content-Length", str(send_size))
        length_set = send_size
    return GoResponse(status, headers, body, length=length_set, gzip=c.gzip, on_close=handle.close)


def _file_chunks(handle: IO[bytes], length: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        chunk = handle.read(min(_FILE_CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def _multipart_ranges(
    handle: IO[bytes], parts: list[tuple[bytes, int, int]], tail: bytes
) -> Iterator[bytes]:
    for head, start, length in parts:
        yield head
        handle.seek(start)
        yield from _file_chunks(handle, length)
    yield tail


class _RangeError(Exception):
    def __init__(self, message: str, no_overlap: bool = False) -> None:
        super().__init__(message)
        self.no_overlap = no_overlap


def _parse_int(text: str) -> int:
    if not text or not all(c in "0123456789" for c in text.lstrip("+-")) or text in "+-":
        raise ValueError(text)
    value = int(text)
    if not -(1 << 63) <= value < 1 << 63:
        raise ValueError(text)
    return value


def _parse_range(header: str, size: int) -> list[tuple[int, int]]:
    """``http.parseRange``: (start, length) pairs."""
    if header == "":
        return []
    if not header.startswith("bytes="):
        raise _RangeError("invalid range")
    ranges: list[tuple[int, int]] = []
    no_overlap = False
    for spec in header[len("bytes=") :].split(","):
        spec = spec.strip(" \t")
        if spec == "":
            continue
        start_text, sep, end_text = spec.partition("-")
        if not sep:
            raise _RangeError("invalid range")
        start_text, end_text = start_text.strip(" \t"), end_text.strip(" \t")
        try:
            if start_text == "":
                if end_text == "" or end_text[0] == "-":
                    raise _RangeError("invalid range")
                suffix = _parse_int(end_text)
                if suffix < 0:
                    raise _RangeError("invalid range")
                suffix = min(suffix, size)
                ranges.append((size - suffix, suffix))
                continue
            start = _parse_int(start_text)
            if start < 0:
                raise _RangeError("invalid range")
            if start >= size:
                no_overlap = True
                continue
            if end_text == "":
                ranges.append((start, size - start))
                continue
            end = _parse_int(end_text)
            if start > end:
                raise _RangeError("invalid range")
            end = min(end, size - 1)
            ranges.append((start, end - start + 1))
        except ValueError:
            raise _RangeError("invalid range") from None
    if no_overlap and not ranges:
        raise _RangeError("invalid range: failed to overlap", no_overlap=True)
    return ranges


def _check_preconditions(c: _Ctx, mtime: int | None) -> GoResponse | None:
    """``checkPreconditions`` without an ETag (PicoD sets none); ``mtime`` None: zero time."""
    request = c.request
    method = request.method
    if_match = request.headers.get("If-Match")
    if if_match:
        if if_match.strip() != "*":
            return GoResponse(412, c.headers, b"", gzip=c.gzip)
    else:
        unmodified = request.headers.get("If-Unmodified-Since")
        if unmodified and mtime is not None:
            when = parse_http_date(unmodified)
            if when is not None and mtime > when:
                return GoResponse(412, c.headers, b"", gzip=c.gzip)
    none_match = request.headers.get("If-None-Match")
    if none_match:
        if none_match.strip().startswith("*"):
            return _not_modified(c) if method in ("GET", "HEAD") else GoResponse(412, c.headers)
        return None
    since = request.headers.get("If-Modified-Since")
    if since and mtime is not None and method in ("GET", "HEAD"):
        when = parse_http_date(since)
        if when is not None and mtime <= when:
            return _not_modified(c)
    return None


def _not_modified(c: _Ctx) -> GoResponse:
    for name in ("Content-Type", "Content-Length", "Content-Encoding"):
        c.headers.delete(name)
    return GoResponse(304, c.headers, b"")


def _if_range_ok(request: Request, mtime: int | None) -> bool:
    value = request.headers.get("If-Range")
    if not value:
        return True
    if value.startswith('"') or value.startswith("W/") or mtime is None:
        return False  # an ETag never matches (PicoD sets none); nor does the zero time
    when = parse_http_date(value)
    return when is not None and when == mtime


# -- multipart ------------------------------------------------------------------------------------


class _MultipartForm:
    """``Request.ParseMultipartForm``: values in memory, files spooled to disk."""

    def __init__(self, staging_dir: str | None) -> None:
        self._staging = staging_dir
        self._values: list[tuple[str, str]] = []
        self._files: list[tuple[str, str]] = []
        self._temp: list[str] = []

    def value(self, name: str) -> str:
        for key, value in self._values:
            if key == name:
                return value
        return ""

    def file(self, name: str) -> str | None:
        for key, path in self._files:
            if key == name:
                return path
        return None

    def cleanup(self) -> None:
        for path in self._temp:
            try:
                os.unlink(path)
            except OSError:
                pass

    def parse(self, body: Any, content_type: str) -> None:
        """Parse the form; any error leaves it empty (gin ignores parse errors)."""
        from werkzeug.http import parse_options_header
        from werkzeug.sansio.multipart import (
            NEED_DATA,
            Data,
            Epilogue,
            Field,
            File,
            MultipartDecoder,
        )

        media, params = parse_options_header(content_type)
        boundary = params.get("boundary")
        if media != "multipart/form-data" or not boundary:
            self._drain(body)
            return
        decoder = MultipartDecoder(boundary.encode("latin-1", "replace"), max_form_memory_size=None)
        values: list[tuple[str, str]] = []
        files: list[tuple[str, str]] = []
        current: tuple[str, str] | None = None  # ("value" | "file" | "skip", name)
        value_parts: list[bytes] = []
        sink: IO[bytes] | None = None
        finished = False
        try:
            while True:
                chunk = body.read(_READ_CHUNK)
                decoder.receive_data(chunk if chunk else None)
                while True:
                    event = decoder.next_event()
                    if event is NEED_DATA:
                        break
                    if isinstance(event, (Field, File)):
                        disposition = (event.headers.get("Content-Disposition") or "").split(";")[0]
                        filename = event.filename if isinstance(event, File) else ""
                        if not event.name or disposition.strip().lower() != "form-data":
                            current = ("skip", "")
                        elif filename:
                            fd, path = tempfile.mkstemp(prefix="multipart-", dir=self._staging)
                            self._temp.append(path)
                            sink = os.fdopen(fd, "wb")
                            current = ("file", event.name)
                            files.append((event.name, path))
                        else:
                            current = ("value", event.name)
                            value_parts = []
                    elif isinstance(event, Data):
                        if current is not None and current[0] == "file" and sink is not None:
                            sink.write(event.data)
                        elif current is not None and current[0] == "value":
                            value_parts.append(event.data)
                        if not event.more_data:
                            if current is not None and current[0] == "value":
                                values.append((current[1], go_string(b"".join(value_parts))))
                            if sink is not None:
                                sink.close()
                                sink = None
                            current = None
                    elif isinstance(event, Epilogue):
                        finished = True
                        break
                if finished or not chunk:
                    break
        except (ValueError, BodyReadError, OSError):
            self._drain(body)
            return
        except Exception as exc:  # werkzeug's RequestEntityTooLarge and the like
            if type(exc).__name__ in ("RequestEntityTooLarge",):
                self._drain(body)
                return
            raise
        finally:
            if sink is not None:
                sink.close()
        if not finished:
            return
        self._values = values
        self._files = files

    @staticmethod
    def _drain(body: Any) -> None:
        try:
            while body.read(_READ_CHUNK):
                pass
        except BodyReadError:
            pass


def _dedup_env(entries: list[str]) -> tuple[dict[bytes, bytes], str | None]:
    """``exec.Cmd``'s environment: the last value of a key wins; NUL is refused."""
    error = None
    seen: dict[bytes, bytes] = {}
    for entry in reversed(entries):
        if "\x00" in entry:
            error = "exec: environment variable contains NUL"
            continue
        index = entry.find("=")
        if index == 0:
            index = entry.find("=", 1)
        if index < 0:
            continue
        key = entry[:index].encode("utf-8", "surrogateescape")
        if key in seen or b"=" in key:
            continue
        seen[key] = entry[index + 1 :].encode("utf-8", "surrogateescape")
    return dict(reversed(list(seen.items()))), error
