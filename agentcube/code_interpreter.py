"""CodeInterpreterClient: run code and commands, move files, in a code-interpreter sandbox."""

from __future__ import annotations

import os
import secrets
from typing import Any

from ._http import RetryPolicy
from .auth import AuthProvider
from .clients.code_interpreter_data_plane import CodeInterpreterDataPlaneClient
from .exceptions import CommandExecutionError, InvalidArgumentError
from .kinds import CODE_INTERPRETER
from .session import ManagedSessionClient

__all__ = ["CodeInterpreterClient"]

# language -> the interpreter, reading its program from standard input
_LANGUAGES: dict[str, str] = {
    "python": "python3 -",
    "py": "python3 -",
    "python3": "python3 -",
    "bash": "bash -s",
    "sh": "sh -s",
}


class CodeInterpreterClient(ManagedSessionClient):
    """A code-interpreter sandbox session.

    On construction it creates a session (``POST /v1/code-interpreter`` with name, namespace,
    ttl and metadata) or, given ``session_id``, attaches to an existing one. ``stop()`` (and
    ``with``) deletes the session, attached or not, as this client always has; ``detach()``
    first to keep it.

    Args:
        name: the CodeInterpreter template.
        namespace: its Kubernetes namespace.
        ttl: session lifetime in seconds, sent with the create.
        workload_manager_url: defaults to ``WORKLOAD_MANAGER_URL``.
        router_url: defaults to ``ROUTER_URL``.
        auth_token: a bearer token; ``auth`` (an AuthProvider) wins over it. With neither, the
            Kubernetes service-account token is used when present.
        verbose: log the SDK's requests (never tokens) to stderr.
        session_id: attach to this session instead of creating one.
        metadata, timeout, connect_timeout, retry: see :class:`ManagedSessionClient`.

    Raises:
        InvalidArgumentError: bad argument or missing URL (nothing is sent).
        APIError / APIConnectionError / SessionError: the create failed (nothing is left behind).
    """

    kind = CODE_INTERPRETER
    delete_attached_on_stop = True
    _dp: CodeInterpreterDataPlaneClient

    def __init__(
        self,
        name: str = "my-interpreter",
        namespace: str = "default",
        ttl: int = 3600,
        workload_manager_url: str | None = None,
        router_url: str | None = None,
        auth_token: str | None = None,
        verbose: bool = False,
        session_id: str | None = None,
        auth: AuthProvider | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(
            name=name,
            namespace=namespace,
            session_id=session_id,
            workload_manager_url=workload_manager_url,
            router_url=router_url,
            auth_token=auth_token,
            auth=auth,
            ttl=ttl,
            metadata=metadata,
            verbose=verbose,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
        )

    def _open_data_plane(self, session_id: str) -> CodeInterpreterDataPlaneClient:
        self._dp = CodeInterpreterDataPlaneClient(
            session_id,
            self._router_url,
            self.namespace,
            self.name,
            **self._service_options,
        )
        return self._dp

    @property
    def data_plane(self) -> CodeInterpreterDataPlaneClient:
        """The data-plane client (for calls this class does not wrap)."""
        self._require_open()
        return self._dp

    def execute_command_result(
        self, command: str | list[str], timeout: float | None = None
    ) -> dict[str, Any]:
        """Run a command and return ``{"stdout", "stderr", "exit_code"}``; never raises on a
        non-zero exit. A string runs through ``sh -c``; a list is the argv itself.
        ``timeout`` is in seconds (default 60); a timed-out command has exit code 124.
        """
        result = self.data_plane.execute(_argv(command), timeout)
        return {"stdout": result.stdout, "stderr": result.stderr, "exit_code": result.exit_code}

    def execute_command(self, command: str | list[str], timeout: float | None = None) -> str:
        """Run a command and return its stdout.

        Raises:
            CommandExecutionError: non-zero exit (carries ``exit_code``, ``stderr``, ``command``).
        """
        result = self.execute_command_result(command, timeout)
        if result["exit_code"] != 0:
            raise CommandExecutionError(
                result["exit_code"], result["stderr"], command, result["stdout"]
            )
        return str(result["stdout"])

    def run_code(self, language: str, code: str, timeout: float | None = None) -> str:
        """Run ``code`` in ``language`` (python, py, python3, bash, sh) and return its stdout.

        The code is written to a file in the sandbox, then run from it (two requests), so
        quoting and length do not matter; the file is removed before the code starts, so nothing
        is left behind, and the working directory is the workspace (Python imports modules you
        wrote there). Each call is a fresh process: variables do not survive between calls;
        files do.

        Raises:
            ValueError: unsupported language (nothing is sent).
            CommandExecutionError: the code exited non-zero.
        """
        if not isinstance(language, str) or language.lower() not in _LANGUAGES:
            raise InvalidArgumentError(
                f"unsupported language {language!r}; use one of {', '.join(_LANGUAGES)}"
            )
        if not isinstance(code, str):
            raise InvalidArgumentError("code must be a string")
        interpreter = _LANGUAGES[language.lower()]
        script = f".agentcube-run-{secrets.token_hex(16)}"
        dp = self.data_plane
        dp.write_file(code, script)
        # Open the script, unlink it, and feed it to the interpreter on stdin: even a run killed
        # by its timeout leaves no file, and the interpreter's cwd is the workspace.
        wrapper = f'exec 3<"$1" && rm -f -- "$1" && exec {interpreter} <&3'
        argv = ["sh", "-c", wrapper, "sh", script]
        result = dp.execute(argv, timeout)
        if result.exit_code != 0:
            raise CommandExecutionError(result.exit_code, result.stderr, language, result.stdout)
        return result.stdout

    def write_file(self, content: str | bytes, remote_path: str) -> None:
        """Write text (UTF-8) or bytes to ``remote_path`` in the sandbox."""
        self.data_plane.write_file(content, remote_path)

    def upload_file(self, local_path: str | os.PathLike[str], remote_path: str) -> None:
        """Stream a local file to ``remote_path``; memory use does not grow with its size."""
        self.data_plane.upload_file(local_path, remote_path)

    def download_file(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        """Stream ``remote_path`` to ``local_path``; a failed download leaves no partial file."""
        self.data_plane.download_file(remote_path, local_path)

    def list_files(self, path: str = ".") -> list[dict[str, Any]]:
        """List a sandbox directory: dicts with ``name``, ``size``, ``modified``, ``mode``,
        ``is_dir``."""
        return self.data_plane.list_files(path)


def _argv(command: str | list[str]) -> list[str]:
    if isinstance(command, str):
        if not command.strip():
            raise InvalidArgumentError("command must not be empty")
        return ["sh", "-c", command]
    if isinstance(command, list):
        return command
    raise InvalidArgumentError("command must be a string or a list of strings")
