"""Client of a code-interpreter sandbox, through the Router: run commands and code, move files."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import urlsplit

import requests

from .._config import ROUTER_URL_ENV, check_session_id, resolve_url, validate_url
from .._drivers._sync import SyncTransport
from .._flows import code as code_flows
from .._flows import commands, files
from .._flows._common import RouterTarget, Started
from .._protocol import RetryPolicy
from ..auth import AuthProvider
from ..exceptions import InvalidArgumentError
from ..kinds import CODE_INTERPRETER, ResourceKind
from ..processes import BackgroundProcess
from ._base import _DEFAULT_POOL, ServiceClient

if TYPE_CHECKING:
    from ..models import ExecuteResponse, FileInfo

__all__ = ["CodeInterpreterDataPlaneClient"]

_LOGGER = logging.getLogger(f"{__name__}.CodeInterpreterDataPlaneClient")


class CodeInterpreterDataPlaneClient(ServiceClient):
    """Runs commands and moves files in one code-interpreter session, through the Router.

    Args:
        session_id: the session (sent as ``x-agentcube-session-id``).
        router_url: the Router; defaults to the ``ROUTER_URL`` env var. A path prefix in it is
            kept (a Router behind an ingress path).
        namespace, cr_name: the template the session was created from.
        base_url: the full invocations URL instead of ``router_url``, ``namespace`` and
            ``cr_name``.
        timeout: read timeout in seconds for file operations.
        connect_timeout: connect timeout in seconds.
        pool_connections, pool_maxsize: as for :class:`~agentcube.clients.ControlPlaneClient`.
        auth: an :class:`~agentcube.auth.AuthProvider` for the Router (none by default).
        retry, session, kind: the retry policy, a ``requests.Session`` to send through, and
            the resource kind (for sandboxes that speak the code-interpreter API).

    Attributes:
        session_id, cr_name, namespace, base_url, timeout, connect_timeout, session, logger.

    Raises:
        InvalidArgumentError: bad session id, names or URL, or neither ``base_url`` nor all of
            ``router_url``, ``namespace`` and ``cr_name`` (a ValueError). Nothing is sent.
    """

    def __init__(
        self,
        session_id: str,
        router_url: str | None = None,
        namespace: str | None = None,
        cr_name: str | None = None,
        base_url: str | None = None,
        timeout: float = 120,
        connect_timeout: float = 5.0,
        pool_connections: int = 10,
        pool_maxsize: int = 10,
        auth: AuthProvider | None = None,
        *,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        kind: ResourceKind = CODE_INTERPRETER,
    ) -> None:
        self.logger = _LOGGER
        self.session_id = check_session_id(session_id)
        self.namespace = namespace
        self.cr_name = cr_name
        self.pool_connections = pool_connections
        self.pool_maxsize = pool_maxsize
        if auth is not None and not callable(getattr(auth, "get_token", None)):
            raise InvalidArgumentError("auth must have a get_token() method (an AuthProvider)")
        if base_url:
            origin, prefix = _split_base_url(base_url)
        else:
            router = resolve_url(router_url, ROUTER_URL_ENV, "router_url", required=False)
            if not (router and namespace and cr_name):
                raise InvalidArgumentError(
                    "Either 'base_url' or all of 'router_url' (or the ROUTER_URL environment "
                    "variable), 'namespace', 'cr_name' must be provided."
                )
            origin, prefix = router, kind.invocations_path(namespace, cr_name)
        self._connect(
            origin, auth, timeout, connect_timeout, retry, session, pool_connections, pool_maxsize
        )
        if base_url:
            self._target = RouterTarget.with_prefix(self._endpoint, prefix, self.session_id)
        else:
            assert namespace is not None and cr_name is not None
            self._target = RouterTarget.of(
                self._endpoint, kind, namespace, cr_name, self.session_id
            )
        self.base_url = self._endpoint.base_url + self._target.prefix

    @property
    def name(self) -> str | None:
        """The template name (``cr_name``)."""
        return self.cr_name

    def __repr__(self) -> str:
        return (
            f"CodeInterpreterDataPlaneClient(base_url={self.base_url!r}, "
            f"session_id={self.session_id!r})"
        )

    # -- commands --------------------------------------------------------------------------------

    def execute(
        self,
        command: list[str],
        timeout: float | None = None,
        *,
        working_dir: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecuteResponse:
        """Run an argv in a fresh process (``POST api/execute``) and return the whole answer.

        ``timeout`` (seconds; None or 0: 120) is enforced by the sandbox, which answers exit
        code 124 when it runs out. ``working_dir`` (created when missing) and ``env`` (added to
        the sandbox's environment) are optional. Never raises for a non-zero exit code.

        Raises:
            InvalidArgumentError: bad argv, timeout, env or working_dir (nothing is sent).
            SessionNotFoundError: the session is gone.
            APIError / APIConnectionError / DataPlaneError: the call itself failed.
        """
        return self._run(
            commands.execute(self._target, command, timeout, working_dir=working_dir, env=env)
        ).response()

    def execute_command_result(
        self, command: str | list[str], timeout: float | None = None
    ) -> dict[str, Any]:
        """Run a command and return ``{"stdout", "stderr", "exit_code"}``, whatever the exit code.

        A string runs through ``sh -c`` (pipes, redirections and quoting work); a list is the
        argv itself. ``timeout`` in seconds (None or 0: 120); a timed-out command exits 124.
        """
        return self._run(commands.command_result(self._target, command, timeout))

    @overload
    def execute_command(
        self,
        command: str | list[str],
        timeout: float | None = None,
        *,
        background: Literal[False] = False,
        log_file: str | None = None,
    ) -> str: ...

    @overload
    def execute_command(
        self,
        command: str | list[str],
        timeout: float | None = None,
        *,
        background: Literal[True],
        log_file: str | None = None,
    ) -> BackgroundProcess: ...

    def execute_command(
        self,
        command: str | list[str],
        timeout: float | None = None,
        *,
        background: bool = False,
        log_file: str | None = None,
    ) -> str | BackgroundProcess:
        """Run a command and return its stdout (see :meth:`execute_command_result`).

        With ``background=True`` the command is started detached and the call returns at once
        with a :class:`~agentcube.BackgroundProcess` (its pid and ``log_file``, the workspace
        file receiving its output). A plain ``"server &"`` would keep the call open: the
        sandbox answers only when every process holding the command's output has exited.

        Raises:
            CommandExecutionError: non-zero exit (carries ``exit_code``, ``stderr``, ``command``).
        """
        result = self._run(
            commands.command_output(self._target, command, timeout, background, log_file)
        )
        if isinstance(result, Started):
            return BackgroundProcess._bind(result, self._run, lambda: self._target)
        return result

    def run_code(self, language: str, code: str, timeout: float | None = None) -> str:
        """Run ``code`` in ``language`` (python, py, python3, bash, sh) and return its stdout.

        The code is written to a file, then run (two requests); the file is removed before
        the code starts, and the working directory is the workspace. Python code whose line
        breaks arrived as literal ``\\n`` sequences (a common LLM mistake) is repaired when
        the repaired code parses and the original does not.

        Raises:
            InvalidArgumentError: unsupported language (a ValueError; nothing is sent).
            CommandExecutionError: the code exited non-zero (``command`` is the language).
        """
        return self._run(code_flows.code_output(self._target, language, code, timeout))

    # -- files -----------------------------------------------------------------------------------

    def write_file(
        self,
        content: str | bytes,
        remote_path: str,
        *,
        mode: str | int | None = None,
        part_size: int | None = None,
    ) -> FileInfo:
        """Write text (UTF-8) or bytes to ``remote_path`` (relative to the workspace).

        Up to ``part_size`` bytes (8 MiB) go in one request; more go in parts assembled in the
        sandbox, atomically. ``mode`` (e.g. ``"0755"``) holds also over an existing file.

        Raises:
            InvalidArgumentError: bad path (one leaving the workspace), mode or content.
            APIError / APIConnectionError / DataPlaneError: the transfer failed; no half file
                is left at ``remote_path`` by a transfer in parts.
        """
        return files.file_info(
            self._run(files.write_file(self._target, content, remote_path, mode, part_size))
        )

    def upload_file(
        self,
        local_path: str | os.PathLike[str],
        remote_path: str,
        *,
        mode: str | int | None = None,
        part_size: int | None = None,
    ) -> FileInfo:
        """Stream a local file to ``remote_path``, in constant memory (see :meth:`write_file`).

        Raises:
            FileNotFoundError: ``local_path`` does not exist (nothing is sent).
        """
        return files.file_info(
            self._run(
                files.upload_file(self._target, os.fspath(local_path), remote_path, mode, part_size)
            )
        )

    def download_file(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        """Stream ``remote_path`` to ``local_path``, in constant memory.

        Missing local directories are created once the sandbox answers. The bytes go to a
        temporary file beside ``local_path`` that replaces it only when the whole body has
        arrived: a failed download leaves no partial file. Compressed answers are decoded;
        a truncated transfer is detected.

        Raises:
            NotFoundError: no such file in the sandbox (nothing is created locally).
            IsADirectoryError: ``local_path`` is a directory (nothing is sent).
            APIConnectionError: the transfer broke off.
        """
        self._run(files.download_file(self._target, remote_path, os.fspath(local_path)))

    def list_files(self, path: str = ".") -> list[dict[str, Any]]:
        """List a sandbox directory: one dict per entry (``name``, ``size``, ``modified``,
        ``mode``, ``is_dir``), as the sandbox sends them."""
        return self._run(files.list_files(self._target, path))


def _split_base_url(base_url: str) -> tuple[str, str]:
    """``http://host/p/invocations`` -> (``http://host``, ``/p/invocations/``)."""
    url = validate_url(base_url, "base_url")
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", (parts.path.rstrip("/") + "/")


def for_session(
    target: RouterTarget, transport: SyncTransport, namespace: str, cr_name: str
) -> CodeInterpreterDataPlaneClient:
    """The data plane of a session client, which validated every part already (its
    Router target, names and session id) and shares its transport."""
    assert target.session_id is not None
    client = CodeInterpreterDataPlaneClient.__new__(CodeInterpreterDataPlaneClient)
    client.logger = _LOGGER
    client.session_id = target.session_id
    client.namespace = namespace
    client.cr_name = cr_name
    client.pool_connections = client.pool_maxsize = _DEFAULT_POOL
    client._adopt(target.endpoint, transport)
    client._target = target
    client.base_url = target.endpoint.base_url + target.prefix
    return client
