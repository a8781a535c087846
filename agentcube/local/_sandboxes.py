"""The built-in sandboxes: the code interpreter, the echo agent and the forwarding agent.

None of them isolates anything: commands run as the server's user on this machine.
"""

from __future__ import annotations

import base64
import binascii
import errno
import http.client
import io
import ipaddress
import logging
import os
import re
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.wrappers import Request, Response

from ._wsgi import (
    SESSION_HEADER,
    BadBody,
    json_response,
    parse_json,
    read_json_object,
    read_limited,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

logger = logging.getLogger(__name__)

_EXECUTE_BODY_LIMIT = 16 * 1024 * 1024
_ECHO_BODY_LIMIT = 16 * 1024 * 1024
_FORM_FIELD_LIMIT = 1024 * 1024
_MULTIPART_SLACK = 1024 * 1024  # multipart framing + small fields on top of the file itself
_READ_CHUNK = 64 * 1024
_DOWNLOAD_CHUNK = 1024 * 1024
_KILL_GRACE = 2.0
_PIPE_GRACE = 0.1
_POLL_INTERVAL = 0.05
_STAGE_PREFIX = ".agentcube-upload-"
_FORWARD_CONNECT_TIMEOUT = 5.0
_FORWARD_TIMEOUT = 600.0
_MAX_DURATION = 9223372036.854775807  # Go's time.Duration maximum, in seconds


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Parse a Go ``time.Duration`` string ("30s", "1.5s", "500ms", "1h30m") into seconds."""
    value = text
    sign = 1.0
    if value[:1] in ("+", "-"):
        sign = -1.0 if value[0] == "-" else 1.0
        value = value[1:]
    if value == "0":
        return 0.0
    if not value:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    position = 0
    while position < len(value):
        match = _DURATION_PART.match(value, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if total > _MAX_DURATION:
        raise ValueError(f"invalid duration {text!r}: out of range")
    return sign * total


def _parse_mode(value: Any) -> int:
    if value is None or value == "":
        return 0o644
    if not isinstance(value, str):
        raise BadBody('mode must be an octal string such as "0644"')
    text = value.strip()
    if text[:2] in ("0o", "0O"):
        text = text[2:]
    if not re.fullmatch(r"[0-7]{1,4}", text):
        raise BadBody(f'invalid mode {value!r}: expected an octal string such as "0644"')
    return int(text, 8)


def _timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _mode_text(st_mode: int) -> str:
    return f"{stat.S_IMODE(st_mode):04o}"


def _not_found() -> Response:
    return json_response(404, {"error": "not found"})


def _method_not_allowed(*allowed: str) -> Response:
    return json_response(405, {"error": "method not allowed"}, {"Allow": ", ".join(allowed)})


class PathError(Exception):
    """A user-supplied path that is invalid or leaves the workspace."""


class _UploadTooLarge(Exception):
    pass


class _SandboxClosed(Exception):
    pass


class _Capture:
    """Keeps at most ``limit`` bytes of a command's output."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self._limit - self._size
        kept = chunk[: max(room, 0)]
        if kept:
            self._parts.append(kept)
            self._size += len(kept)
        self._dropped += len(chunk) - len(kept)

    def text(self) -> str:
        out = b"".join(self._parts).decode("utf-8", "replace")
        if self._dropped:
            out += f"\n[agentcube-local: {self._dropped} more bytes of output were discarded]\n"
        return out


class _StagedFile(io.FileIO):
    """An upload being written to a temp file in the workspace, capped at ``limit`` bytes."""

    def __init__(self, fd: int, path: str, limit: int) -> None:
        super().__init__(fd, "r+")
        self.path = path
        self.installed = False
        self._limit = limit
        self._written = 0

    def write(self, data: ReadableBuffer, /) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        self._written += size
        if self._written > self._limit:
            raise _UploadTooLarge()
        done = 0
        while done < size:
            done += super().write(view[done:]) or 0
        return size


class _FileChunks:
    """Streams exactly ``size`` bytes of an open file, then closes it."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self._handle = handle
        self._left = size

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._left <= 0:
            raise StopIteration
        chunk = self._handle.read(min(_DOWNLOAD_CHUNK, self._left))
        if not chunk:
            raise OSError("file shrank while it was being sent")
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        self._handle.close()


def _rmtree(path: str) -> None:
    def retry(func: Callable[..., Any], failed: str, _error: object) -> None:
        try:  # a directory without write/exec permission: open it up and retry once
            os.chmod(os.path.dirname(failed), 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
            func(failed)
        except OSError:
            logger.debug("could not remove %s", failed, exc_info=True)

    if not os.path.lexists(path):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------------------------
# code interpreter
# ---------------------------------------------------------------------------------------------
class CodeInterpreterSandbox:
    """A workspace directory plus the picod-style API to run commands and move files."""

    def __init__(
        self,
        workspace: str,
        *,
        max_upload_bytes: int,
        default_timeout: float = 60.0,
        max_output_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        os.makedirs(workspace, mode=0o700)
        self._workspace = os.path.realpath(workspace)
        self._max_upload = max_upload_bytes
        self._default_timeout = default_timeout
        self._max_output = max_output_bytes
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._lingering_groups: set[int] = set()
        self._closed = False

    @property
    def workspace(self) -> str:
        return self._workspace

    def close(self) -> None:
        """Kill every process the session started and remove the workspace."""
        with self._lock:
            self._closed = True
            running = list(self._running)
            groups = set(self._lingering_groups)
        for proc in running:
            _kill_group(proc.pid)
        for pgid in groups:
            _kill_group(pgid)
        _rmtree(self._workspace)

    # -- dispatch ----------------------------------------------------------------------------
    def handle(self, request: Request, subpath: str, session_id: str) -> Response:
        if self._closed:
            return json_response(404, {"error": "session not found"})
        method = request.method
        try:
            if subpath == "api/execute":
                if method != "POST":
                    return _method_not_allowed("POST")
                return self._execute(request)
            if subpath.rstrip("/") == "api/files":
                if method == "POST":
                    return self._upload(request)
                if method in ("GET", "HEAD"):
                    return self._list(request.args.get("path") or "/")
                return _method_not_allowed("GET", "POST")
            if subpath.startswith("api/files/"):
                if method not in ("GET", "HEAD"):
                    return _method_not_allowed("GET")
                return self._download(subpath[len("api/files/") :])
            return _not_found()
        except BadBody as exc:
            return json_response(exc.status, {"error": exc.message})
        except PathError as exc:
            return json_response(400, {"error": str(exc)})
        except _SandboxClosed:
            return json_response(404, {"error": "session not found"})

    # -- paths ---------------------------------------------------------------------------------
    def confine(self, user_path: str) -> str:
        """The real path of ``user_path`` inside the workspace; :class:`PathError` otherwise.

        A leading "/" is relative to the workspace. Symlinks are resolved, so a link that
        points outside the workspace is refused like ``..`` is.
        """
        if not isinstance(user_path, str):
            raise PathError("path must be a string")
        if "\x00" in user_path:
            raise PathError("path must not contain NUL bytes")
        candidate = os.path.join(self._workspace, user_path.lstrip("/"))
        try:
            real = os.path.realpath(candidate)
            os.fsencode(real)
        except (ValueError, OSError):
            raise PathError(f"invalid path {user_path!r}") from None
        if not self._inside(real):
            raise PathError(f"path {user_path!r} is outside the workspace")
        return real

    def _inside(self, real: str) -> bool:
        return real == self._workspace or real.startswith(self._workspace + os.sep)

    # -- api/execute --------------------------------------------------------------------------
    def _execute(self, request: Request) -> Response:
        body = read_json_object(request, _EXECUTE_BODY_LIMIT, too_large_status=413)
        command = body.get("command")
        if not isinstance(command, list) or not command:
            raise BadBody("command must be a non-empty list of strings")
        if not all(isinstance(arg, str) for arg in command):
            raise BadBody("command must be a list of strings")
        if any("\x00" in arg for arg in command):
            raise BadBody("command arguments must not contain NUL bytes")

        timeout_value = body.get("timeout")
        if timeout_value is None:
            timeout = self._default_timeout
        elif isinstance(timeout_value, str):
            try:
                timeout = parse_go_duration(timeout_value)
            except ValueError:
                raise BadBody(f'invalid timeout {timeout_value!r}: use e.g. "30s"') from None
            if timeout <= 0:
                raise BadBody("timeout must be positive")
        else:
            raise BadBody('timeout must be a duration string such as "30s"')

        working_dir = body.get("working_dir")
        if working_dir is None or working_dir == "":
            cwd = self._workspace
            os.makedirs(cwd, mode=0o700, exist_ok=True)  # a command may have removed it
        elif isinstance(working_dir, str):
            cwd = self.confine(working_dir)
            if not os.path.isdir(cwd):
                raise BadBody(f"working_dir {working_dir!r} is not a directory")
        else:
            raise BadBody("working_dir must be a string")

        extra_env = body.get("env")
        if extra_env is None:
            extra_env = {}
        if not isinstance(extra_env, dict):
            raise BadBody("env must be an object of strings")
        for key, value in extra_env.items():
            if not key or "=" in key or "\x00" in key:
                raise BadBody(f"invalid environment variable name {key!r}")
            if not isinstance(value, str) or "\x00" in value:
                raise BadBody(f"environment variable {key!r} must be a string without NUL")
        env = dict(os.environ)
        env.update(extra_env)
        return json_response(200, self._run([str(arg) for arg in command], cwd, env, timeout))

    def _run(
        self, argv: list[str], cwd: str, env: dict[str, str], timeout: float
    ) -> dict[str, Any]:
        if self._closed:
            raise _SandboxClosed()
        started = time.time()
        clock = time.monotonic()
        timed_out = False
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            return self._result("", f"{argv[0]}: command not found\n", 127, started, clock)
        except PermissionError:
            return self._result("", f"{argv[0]}: Permission denied\n", 126, started, clock)
        except (OSError, ValueError) as exc:
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return self._result("", f"{argv[0]}: {message}\n", 126, started, clock)
        with self._lock:
            closed = self._closed
            self._running.add(proc)
        if closed:
            _kill_group(proc.pid)
        try:
            stdout, stderr, timed_out = self._collect(proc, clock + timeout)
            returncode = proc.wait()
        finally:
            with self._lock:
                self._running.discard(proc)
                if _group_alive(proc.pid) and not self._closed:
                    self._lingering_groups.add(proc.pid)
        if closed:
            raise _SandboxClosed()
        if timed_out:
            exit_code = 124
            message = f"command timed out after {timeout:g}s and was killed\n"
            stderr_text = stderr.text()
            if stderr_text and not stderr_text.endswith("\n"):
                stderr_text += "\n"
            return self._result(stdout.text(), stderr_text + message, exit_code, started, clock)
        exit_code = 128 - returncode if returncode < 0 else returncode
        return self._result(stdout.text(), stderr.text(), exit_code, started, clock)

    def _collect(
        self, proc: subprocess.Popen[bytes], deadline: float
    ) -> tuple[_Capture, _Capture, bool]:
        """Read stdout and stderr until both close; kill the process group at the deadline."""
        assert proc.stdout is not None and proc.stderr is not None
        stdout, stderr = _Capture(self._max_output), _Capture(self._max_output)
        captures = {proc.stdout.fileno(): stdout, proc.stderr.fileno(): stderr}
        timed_out = False
        give_up = float("inf")
        selector = selectors.DefaultSelector()
        try:
            for fd in captures:
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                now = time.monotonic()
                if not timed_out and now >= deadline:
                    timed_out = True
                    _kill_group(proc.pid)
                    give_up = min(give_up, now + _KILL_GRACE)
                elif give_up == float("inf") and proc.poll() is not None:
                    # The command exited but something it started in the background still
                    # holds the pipes: take what is there, do not wait for the background.
                    give_up = now + _PIPE_GRACE
                if now >= give_up:
                    break
                wait = min(deadline if not timed_out else give_up, give_up) - now
                for key, _ in selector.select(max(0.0, min(wait, _POLL_INTERVAL))):
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
            proc.stdout.close()
            proc.stderr.close()
        if not timed_out:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid)
        return stdout, stderr, timed_out

    @staticmethod
    def _result(
        stdout: str, stderr: str, exit_code: int, started: float, clock: float
    ) -> dict[str, Any]:
        duration = time.monotonic() - clock
        return {
            "stdout": stdout,
            "stderr": stderr,
            "exit_code": exit_code,
            "duration": round(duration, 6),
            "start_time": _timestamp(started),
            "end_time": _timestamp(started + duration),
        }

    # -- api/files: upload ---------------------------------------------------------------------
    def _upload(self, request: Request) -> Response:
        if request.mimetype == "multipart/form-data":
            return self._upload_multipart(request)
        return self._upload_json(request)

    def _stage(self) -> _StagedFile:
        with self._lock:
            if self._closed:
                raise _SandboxClosed()
        fd, path = tempfile.mkstemp(prefix=_STAGE_PREFIX, dir=self._workspace)
        return _StagedFile(fd, path, self._max_upload)

    def _upload_json(self, request: Request) -> Response:
        limit = self._max_upload * 4 // 3 + _MULTIPART_SLACK
        body = read_json_object(request, limit, too_large_status=413)
        path = body.get("path")
        content = body.get("content")
        if not isinstance(path, str) or not path:
            raise BadBody("path is required and must be a non-empty string")
        if not isinstance(content, str):
            raise BadBody("content is required and must be a base64 string")
        mode = _parse_mode(body.get("mode"))
        target = self.confine(path)
        try:
            data = base64.b64decode("".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            raise BadBody("content is not valid base64") from None
        if len(data) > self._max_upload:
            return json_response(413, {"error": f"file too large (limit {self._max_upload} bytes)"})
        staged = self._stage()
        try:
            staged.write(data)
            staged.close()
            return self._install(staged, target, mode, path)
        finally:
            staged.close()
            if not staged.installed:
                _unlink(staged.path)

    def _upload_multipart(self, request: Request) -> Response:
        length = request.content_length
        too_large = json_response(
            413, {"error": f"file too large (limit {self._max_upload} bytes)"}
        )
        if length is not None and length > self._max_upload + _MULTIPART_SLACK:
            return too_large
        staged: list[_StagedFile] = []

        def stream_factory(
            total_content_length: int | None,
            content_type: str | None,
            filename: str | None,
            content_length: int | None = None,
        ) -> IO[bytes]:
            handle = self._stage()
            staged.append(handle)
            return handle

        parser = FormDataParser(
            stream_factory=stream_factory,
            max_form_memory_size=_FORM_FIELD_LIMIT,
            silent=False,
            max_form_parts=64,
        )
        try:
            try:
                _, form, files = parser.parse(
                    request.stream, request.mimetype, length, dict(request.mimetype_params)
                )
            except (_UploadTooLarge, RequestEntityTooLarge):
                return too_large
            except ValueError as exc:
                raise BadBody(f"malformed multipart body: {exc}") from None
            path = form.get("path")
            upload = files.get("file")
            if not path:
                raise BadBody("the form field 'path' is required")
            if upload is None or not isinstance(upload.stream, _StagedFile):
                raise BadBody("the file part 'file' is required")
            mode = _parse_mode(form.get("mode"))
            target = self.confine(path)
            upload.stream.close()
            return self._install(upload.stream, target, mode, path)
        except HTTPException as exc:  # e.g. the client went away mid-upload
            raise BadBody(exc.description or "bad request", exc.code or 400) from None
        finally:
            for handle in staged:
                handle.close()
                if not handle.installed:
                    _unlink(handle.path)

    def _install(self, staged: _StagedFile, target: str, mode: int, display: str) -> Response:
        """Move a staged upload to ``target`` and answer with its file info."""
        if target == self._workspace:
            raise PathError(f"path {display!r} is the workspace directory")
        try:
            parent = os.path.dirname(target)
            os.makedirs(parent, exist_ok=True)
            if not self._inside(os.path.realpath(parent)):
                raise PathError(f"path {display!r} changed while it was being written")
            os.chmod(staged.path, mode)
            os.replace(staged.path, target)
            staged.installed = True
            info = os.stat(target, follow_symlinks=False)
        except PathError:
            raise
        except OSError as exc:
            raise PathError(f"cannot write {display!r}: {exc.strerror or exc}") from None
        return json_response(
            200,
            {
                "path": display,
                "size": info.st_size,
                "mode": _mode_text(info.st_mode),
                "modified": _timestamp(info.st_mtime),
            },
        )

    # -- api/files: list and download ---------------------------------------------------------
    def _list(self, path: str) -> Response:
        real = self.confine(path)
        if not os.path.isdir(real):
            return json_response(404, {"error": f"no such directory: {path}"})
        entries: list[dict[str, Any]] = []
        try:
            with os.scandir(real) as scan:
                for entry in scan:
                    if entry.name.startswith(_STAGE_PREFIX):
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    entries.append(
                        {
                            "name": entry.name,
                            "size": info.st_size,
                            "modified": _timestamp(info.st_mtime),
                            "mode": _mode_text(info.st_mode),
                            "is_dir": stat.S_ISDIR(info.st_mode),
                        }
                    )
        except FileNotFoundError:
            return json_response(404, {"error": f"no such directory: {path}"})
        except OSError as exc:
            raise PathError(f"cannot list {path!r}: {exc.strerror or exc}") from None
        entries.sort(key=lambda item: str(item["name"]))
        return json_response(200, {"files": entries})

    def _download(self, path: str) -> Response:
        real = self.confine(path)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(real, flags)
        except (FileNotFoundError, NotADirectoryError):
            return json_response(404, {"error": f"no such file: {path}"})
        except OSError as exc:
            if exc.errno == errno.EISDIR:
                raise PathError(f"{path!r} is a directory") from None
            raise PathError(f"cannot read {path!r}: {exc.strerror or exc}") from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise PathError(f"{path!r} is a directory")
            if not stat.S_ISREG(info.st_mode):
                raise PathError(f"{path!r} is not a regular file")
            os.set_blocking(fd, True)
            handle = os.fdopen(fd, "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise
        response = Response(
            _FileChunks(handle, info.st_size),
            status=200,
            mimetype="application/octet-stream",
            direct_passthrough=True,
        )
        response.headers["Content-Length"] = str(info.st_size)
        return response


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# agents
# ---------------------------------------------------------------------------------------------
class EchoAgent:
    """The built-in agent: POST echoes the body back, GET is 404 like a real agent's."""

    workspace: str | None = None

    def handle(self, request: Request, subpath: str, session_id: str) -> Response:
        if request.method in ("GET", "HEAD"):
            return _not_found()
        data = read_limited(request.stream, _ECHO_BODY_LIMIT)
        if data is None:
            return json_response(413, {"error": "request body too large"})
        payload: Any
        try:
            payload = parse_json(data)
        except ValueError:
            payload = data.decode("utf-8", "replace")
        return json_response(200, {"echo": payload, "path": subpath})

    def close(self) -> None:
        pass


def validate_agent_url(url: str) -> tuple[str, int, str]:
    """``(host, port, base_path)`` of an agent URL; ValueError unless it is http on loopback."""
    if not isinstance(url, str):
        raise ValueError("agent URL must be a string")
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"agent URL {url!r} must start with http://")
    host = parts.hostname
    if not host:
        raise ValueError(f"agent URL {url!r} has no host")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"agent URL {url!r} must point at a loopback address") from None
    if not address.is_loopback:
        raise ValueError(f"agent URL {url!r} must point at a loopback address")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"agent URL {url!r} has an invalid port") from None
    return host, port, parts.path or "/"


class _UpstreamBody:
    def __init__(self, response: http.client.HTTPResponse, connection: http.client.HTTPConnection):
        self._response = response
        self._connection = connection

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = self._response.read1(_READ_CHUNK) if not self._response.closed else b""
        if not chunk:
            raise StopIteration
        return chunk

    def close(self) -> None:
        self._response.close()
        self._connection.close()


class ForwardingAgent:
    """An agent template backed by the user's own agent server on loopback."""

    workspace: str | None = None

    def __init__(self, name: str, url: str) -> None:
        self._name = name
        self._url = url
        self._host, self._port, self._base_path = validate_agent_url(url)

    def handle(self, request: Request, subpath: str, session_id: str) -> Response:
        path = self._base_path.rstrip("/") + "/" + quote(subpath, safe="/:@!$&'()*+,;=-._~")
        query = request.query_string.decode("latin-1")
        if query:
            path += "?" + query
        headers = {SESSION_HEADER: session_id}
        for name in ("Content-Type", "Accept"):
            value = request.headers.get(name)
            if value:
                headers[name] = value
        body: Any = None
        length = request.content_length
        if length is not None:
            headers["Content-Length"] = str(length)
            body = request.stream if length else b""
        elif request.headers.get("Transfer-Encoding"):
            data = read_limited(request.stream, _ECHO_BODY_LIMIT)
            if data is None:
                return json_response(413, {"error": "request body too large"})
            body = data
        connection = http.client.HTTPConnection(
            self._host, self._port, timeout=_FORWARD_CONNECT_TIMEOUT
        )
        try:
            connection.connect()
            if connection.sock is not None:
                connection.sock.settimeout(_FORWARD_TIMEOUT)
            connection.request(request.method, path, body=body, headers=headers)
            upstream = connection.getresponse()
        except TimeoutError:
            connection.close()
            return json_response(504, {"error": f"agent {self._name!r} did not answer in time"})
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            return json_response(
                502, {"error": f"agent {self._name!r} at {self._url} is unreachable: {exc}"}
            )
        response = Response(
            _UpstreamBody(upstream, connection),
            status=upstream.status,
            direct_passthrough=True,
        )
        content_type = upstream.getheader("Content-Type")
        if content_type:
            response.headers["Content-Type"] = content_type
        else:
            del response.headers["Content-Type"]
        content_length = upstream.getheader("Content-Length")
        if content_length is not None and upstream.status not in (204, 304):
            response.headers["Content-Length"] = content_length
        return response

    def close(self) -> None:
        pass
