"""Client of a code-interpreter sandbox, through the Router: execute commands, move files."""

from __future__ import annotations

import base64
import logging
import math
import os
import secrets
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import requests

from .._config import check_session_id, check_timeout
from .._http import RetryPolicy
from ..auth import AuthProvider
from ..exceptions import APIConnectionError, DataPlaneError, InvalidArgumentError
from ..kinds import CODE_INTERPRETER, ResourceKind
from ._data_plane import RouterClient, encode_subpath

if TYPE_CHECKING:
    from ..models import ExecuteResponse, FileInfo

# Request and response models are imported on first use: building pydantic models is the
# largest part of `import agentcube` otherwise.

logger = logging.getLogger(__name__)

__all__ = ["CodeInterpreterDataPlaneClient"]

DEFAULT_COMMAND_TIMEOUT = 60.0
# The HTTP read timeout of api/execute is the command's own timeout plus this margin, so that
# the server always answers (exit code 124) before the client gives up.
_EXECUTE_MARGIN = 30.0
_CHUNK = 1024 * 1024  # per read and write: large enough that syscalls do not dominate


class CodeInterpreterDataPlaneClient(RouterClient):
    """Runs commands and moves files in one code-interpreter session.

    Args:
        session_id: the session to talk to (sent as ``x-agentcube-session-id``).
        router_url: base URL; defaults to the ``ROUTER_URL`` env var.
        namespace, name: the template the session was created from.
        auth_token, auth: credentials, as for :class:`~agentcube.clients.ControlPlaneClient`.
        timeout: read timeout in seconds for file operations.

    Raises:
        InvalidArgumentError: bad session id, name, namespace or URL (nothing is sent).
    """

    def __init__(
        self,
        session_id: str,
        router_url: str | None = None,
        namespace: str = "default",
        name: str = "my-interpreter",
        auth_token: str | None = None,
        *,
        auth: AuthProvider | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        kind: ResourceKind = CODE_INTERPRETER,
    ) -> None:
        super().__init__(
            kind,
            name,
            namespace,
            router_url,
            auth_token=auth_token,
            auth=auth,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            session=session,
        )
        self._set_session_id(check_session_id(session_id))

    def _call(
        self,
        method: str,
        subpath: str,
        extra_headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        # A 404 the router answers itself means the session is gone (SessionNotFoundError); a
        # 404 the sandbox answers (no such file) stays a NotFoundError.
        headers = {**self._headers, **extra_headers} if extra_headers else self._headers
        return self._http.request(
            method,
            self._prefix + subpath,
            headers=headers,
            session_id=self.session_id,
            session_scoped=True,
            **kwargs,
        )

    def execute(
        self,
        command: list[str],
        timeout: float | None = None,
        *,
        working_dir: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecuteResponse:
        """Run ``command`` (an argv list) in a fresh process: ``POST api/execute``.

        ``timeout`` (seconds, default 60) is enforced by the sandbox, which answers exit code
        124 when it runs out. Never raises for a non-zero exit code.

        Raises:
            InvalidArgumentError: empty or non-string argv, bad timeout, env or working_dir.
            SessionNotFoundError: the session is gone.
            APIError / APIConnectionError / DataPlaneError: the call itself failed.
        """
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(a, str) for a in command)
        ):
            raise InvalidArgumentError("command must be a non-empty list of strings")
        if any("\0" in a for a in command):
            raise InvalidArgumentError("command arguments must not contain NUL")
        seconds = check_timeout(timeout, "timeout") or DEFAULT_COMMAND_TIMEOUT
        if env is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise InvalidArgumentError("env must map strings to strings")
        if working_dir is not None and not isinstance(working_dir, str):
            raise InvalidArgumentError("working_dir must be a string")
        from pydantic import ValidationError

        from ..models import ExecuteRequest, ExecuteResponse

        body = ExecuteRequest(
            command=command,
            timeout=_go_duration(seconds),
            working_dir=working_dir,
            env=dict(env) if env is not None else None,
        )
        response = self._call(
            "POST",
            "api/execute",
            json=body.model_dump(exclude_none=True),
            timeout=seconds + _EXECUTE_MARGIN,
        )
        try:
            return ExecuteResponse.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise DataPlaneError(
                f"api/execute answered HTTP {response.status_code} without a valid result "
                f"(session {self.session_id})"
            ) from exc

    def write_file(self, content: str | bytes, remote_path: str, mode: str = "0644") -> FileInfo:
        """Write ``content`` (text is UTF-8 encoded) to ``remote_path``: ``POST api/files``.

        Sent as JSON with base64 content; use :meth:`upload_file` for large files.
        """
        from ..models import UploadFileRequest

        data = content.encode("utf-8") if isinstance(content, str) else content
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidArgumentError("content must be str or bytes")
        body = UploadFileRequest(
            path=_check_remote_path(remote_path),
            content=base64.b64encode(data).decode("ascii"),
            mode=_check_mode(mode),
        )
        response = self._call("POST", "api/files", json=body.model_dump())
        return self._file_info(response)

    def upload_file(self, local_path: str | os.PathLike[str], remote_path: str) -> FileInfo:
        """Stream a local file to ``remote_path`` as multipart: ``POST api/files``.

        The file is read in chunks while it is sent; memory use does not grow with its size.

        Raises:
            FileNotFoundError: ``local_path`` does not exist (nothing is sent).
            PayloadTooLargeError: the server's upload limit was exceeded.
        """
        remote = _check_remote_path(remote_path)
        body = _MultipartFile(os.fspath(local_path), {"path": remote, "mode": "0644"})
        response = self._call("POST", "api/files", extra_headers=body.headers, data=body)
        return self._file_info(response)

    def download_file(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        """Stream ``remote_path`` to ``local_path``: ``GET api/files/<path>``.

        The bytes go to a temporary file beside ``local_path``, which replaces it only once the
        whole body has arrived: a failed download leaves no partial file (and an existing file
        at ``local_path`` untouched).

        Raises:
            NotFoundError: no such file in the sandbox.
            APIConnectionError: the transfer broke off.
        """
        encoded = encode_subpath(_check_remote_path(remote_path), "remote_path")
        if not encoded:  # "/" or "//": "GET api/files/" would be a directory listing
            raise InvalidArgumentError(f"remote_path {remote_path!r} names no file")
        subpath = "api/files/" + encoded
        target = os.path.abspath(os.fspath(local_path))
        directory = os.path.dirname(target)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"no such local directory: {directory}")
        if os.path.isdir(target):
            raise IsADirectoryError(f"local_path is a directory: {target}")
        # Created like any new file (mode 0o666 less the umask), under a name nobody else uses.
        partial = os.path.join(directory, f".agentcube-download-{secrets.token_hex(8)}")
        out = open(partial, "xb")
        try:
            written = 0
            response = self._call("GET", subpath, stream=True)
            with response, out:
                try:
                    for chunk in response.iter_content(_CHUNK):
                        out.write(chunk)
                        written += len(chunk)
                except requests.RequestException as exc:
                    raise APIConnectionError(
                        f"download of {remote_path!r} broke off after {written} bytes "
                        f"(session {self.session_id}): {type(exc).__name__}"
                    ) from exc
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and int(expected) != written:
                raise APIConnectionError(
                    f"download of {remote_path!r} is truncated: {written} of {expected} bytes"
                )
            os.replace(partial, target)
        except BaseException:
            out.close()
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise

    def list_files(self, path: str = ".") -> list[dict[str, Any]]:
        """List a directory: ``GET api/files?path=DIR``; one dict per entry
        (``name``, ``size``, ``modified``, ``mode``, ``is_dir``).
        """
        from pydantic import ValidationError

        from ..models import FileListResponse

        response = self._call("GET", "api/files", params={"path": _check_remote_path(path)})
        try:
            listing = FileListResponse.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise DataPlaneError(f"api/files answered an invalid listing for {path!r}") from exc
        return [entry.model_dump() for entry in listing.files]

    def _file_info(self, response: requests.Response) -> FileInfo:
        from pydantic import ValidationError

        from ..models import FileInfo

        try:
            return FileInfo.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise DataPlaneError("api/files answered an invalid file info") from exc


class _MultipartFile:
    """A multipart/form-data body that reads the file while it is sent.

    It has a length, so requests sends a Content-Length instead of chunked encoding, and it can
    be iterated again from the start if the request has to be re-sent.
    """

    def __init__(self, path: str, fields: dict[str, str]) -> None:
        self._path = path
        size = os.stat(path).st_size  # FileNotFoundError before anything is sent
        boundary = secrets.token_hex(16)
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
            for key, value in fields.items()
        ]
        parts.append(
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="file"; filename="upload"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        self._head = b"".join(parts)
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._length = len(self._head) + size + len(self._tail)
        self.headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        with open(self._path, "rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk
        yield self._tail


def _check_remote_path(path: object) -> str:
    if not isinstance(path, str) or not path:
        raise InvalidArgumentError("a remote path must be a non-empty string")
    if "\0" in path:
        raise InvalidArgumentError("a remote path must not contain NUL")
    if not path.isascii():
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no URL or JSON text can carry it as is
            raise InvalidArgumentError(
                f"a remote path must be valid Unicode text, not {path!r}"
            ) from None
    return path


def _check_mode(mode: object) -> str:
    if (
        not isinstance(mode, str)
        or not (1 <= len(mode) <= 4)
        or any(c not in "01234567" for c in mode)
    ):
        raise InvalidArgumentError(f"mode must be an octal string like '0644', not {mode!r}")
    return mode


def _go_duration(seconds: float) -> str:
    """Seconds as a Go duration string ("30s", "1.5s"), rounded up to the millisecond."""
    millis = math.ceil(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"
