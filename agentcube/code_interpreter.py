"""CodeInterpreterClient: run code and commands, move files, in a code-interpreter sandbox."""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from typing import Any, Literal, overload

from ._arguments import CodeInterpreterArguments
from ._config import DEFAULT_READ_LIMIT
from ._flows import code as code_flows
from ._flows import commands, contexts, files, processes
from ._flows._common import OutputCallback, Started
from .clients import code_interpreter_data_plane
from .clients.code_interpreter_data_plane import CodeInterpreterDataPlaneClient
from .contexts import CodeContext, keeps_contexts, registry
from .exceptions import InvalidArgumentError
from .kinds import CODE_INTERPRETER
from .processes import BackgroundProcess
from .session import ManagedSessionClient, StopOutcome

__all__ = ["CodeInterpreterClient"]


class CodeInterpreterClient(CodeInterpreterArguments, ManagedSessionClient):
    """A code-interpreter sandbox session.

    On construction it creates a session (``POST /v1/code-interpreter`` with name, namespace,
    ttl and metadata) or, given ``session_id``, attaches to an existing one (no request).
    ``stop()`` (and ``with``) deletes the session, attached or not, as this client always has;
    ``detach()`` first to keep it.

    Args:
        name: the CodeInterpreter template.
        namespace: its Kubernetes namespace.
        ttl: sent with the create, and ignored by AgentCube: the template's
            ``maxSessionDuration`` and ``sessionTimeout`` (idle) decide how long a session
            lives; delete it with ``stop()`` or ``with``.
        workload_manager_url: defaults to ``WORKLOAD_MANAGER_URL``; needed also to attach,
            since ``stop()`` deletes.
        router_url: defaults to ``ROUTER_URL``.
        auth_token: a bearer token for both planes (empty means none); ``auth`` wins over it.
        verbose: log the SDK's requests (never tokens) to stderr.
        session_id: attach to this session instead of creating one.
        auth: an :class:`~agentcube.AuthProvider` for both planes.
        metadata: sent with the create.
        timeout, connect_timeout: read and connect timeouts in seconds (creates wait at least
            150 s; commands wait for their own timeout plus 30 s).
        retry: a :class:`~agentcube.RetryPolicy`.
        workload_manager_auth, router_auth: a credential for one plane, overriding ``auth``.

    Raises:
        InvalidArgumentError: bad argument or missing URL (nothing is sent).
        APIError / APIConnectionError / SessionError: the create failed (nothing is left behind).
    """

    kind = CODE_INTERPRETER
    delete_attached_on_stop = True
    dp_client: CodeInterpreterDataPlaneClient | None
    logger = logging.getLogger(__name__)

    def _open_data_plane(self, session_id: str) -> CodeInterpreterDataPlaneClient:
        return code_interpreter_data_plane.for_session(
            self._open_target(session_id), self._transport, self.namespace, self.name
        )

    @property
    def data_plane(self) -> CodeInterpreterDataPlaneClient:
        """The data-plane client (for calls this class does not wrap).

        Raises:
            SessionError: the client is stopped.
        """
        dp: CodeInterpreterDataPlaneClient = self._require_open()
        return dp

    def execute_command_result(
        self, command: str | list[str], timeout: float | None = None
    ) -> dict[str, Any]:
        """Run a command and return ``{"stdout", "stderr", "exit_code"}``; never raises on a
        non-zero exit. A string runs through ``sh -c``; a list is the argv itself.
        ``timeout`` is in seconds (None or 0: 120); a timed-out command has exit code 124.
        """
        return self._run(commands.command_result(self._target(), command, timeout))

    @overload
    def execute_command(
        self,
        command: str | list[str],
        timeout: float | None = None,
        *,
        background: Literal[False] = False,
        log_file: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
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
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> str | BackgroundProcess:
        """Run a command and return its stdout.

        With ``background=True`` it starts the command detached and returns at once with a
        :class:`~agentcube.BackgroundProcess` (``pid``, and ``log_file``: the workspace file
        receiving its output). Use it for servers and other long-lived processes: a plain
        ``"server &"`` keeps the call open until the server exits, because the sandbox
        answers only once every process holding the command's output has exited.

        With ``on_stdout``/``on_stderr``, each gets the command's output text as it comes
        (called on this thread; keep them quick), and the return value is the same. The
        command then runs in the background into files under ``.agentcube/live/`` that are
        read with Range downloads every 0.05 to 0.25 s (three requests per poll) and removed
        at the end; without callbacks it is one request.

        Raises:
            CommandExecutionError: non-zero exit (carries ``exit_code``, ``stderr``, ``command``).
            InvalidArgumentError: callbacks with ``background=True`` (read ``output()``).
        """
        if on_stdout is not None or on_stderr is not None:
            if background:
                raise InvalidArgumentError("on_stdout/on_stderr are not for background=True")
            return self._run(
                processes.command_live(self._target(), command, timeout, on_stdout, on_stderr)
            )
        result = self._run(
            commands.command_output(self._target(), command, timeout, background, log_file)
        )
        return self._process(result) if isinstance(result, Started) else result

    def _process(self, started: Started) -> BackgroundProcess:
        return BackgroundProcess._bind(started, self._run, self._target)

    def list_processes(self) -> list[BackgroundProcess]:
        """The processes started in this session with ``background=True`` (by any client),
        running or ended, as :class:`~agentcube.BackgroundProcess` values (one request)."""
        return [self._process(s) for s in self._run(processes.list_processes(self._target()))]

    def create_code_context(self, language: str = "python") -> CodeContext:
        """Start a long-lived interpreter (``"python"`` or ``"bash"``) in the sandbox and
        return its :class:`~agentcube.CodeContext`: variables, imports and the working
        directory survive between its runs. One request (about the start-up time of
        ``python3`` in the sandbox, which needs it for both languages).

        Raises:
            InvalidArgumentError: another language (nothing is sent).
            CodeContextError: the sandbox has no ``python3`` (or ``bash``), or the interpreter
                did not start; the message says which.
        """
        handle = self._run(contexts.start_context(self._target(), language))
        context = CodeContext(handle, self._run, self._target)
        self._contexts().add(context)
        return context

    def _contexts(self) -> weakref.WeakSet[CodeContext]:
        return registry(self, CodeContext)

    def stop(self) -> StopOutcome:
        """As :meth:`ManagedSessionClient.stop`. The code contexts this client created end
        with it: with the sandbox when the session is deleted, else each is closed first
        (a failure there is logged, not raised)."""
        with self._lock:
            for context in keeps_contexts(self, self._contexts()):
                try:
                    context.close()
                except Exception as exc:
                    self.logger.warning("could not close %r: %s", context, exc)
            outcome = super().stop()
            for context in list(self._contexts()):
                context._session_ended()
            return outcome

    def run_code(self, language: str, code: str, timeout: float | None = None) -> str:
        """Run ``code`` in ``language`` (python, py, python3, bash, sh) and return its stdout.

        The code is written to a file, then run (two requests), so quoting and length do not
        matter; the file is removed before the code starts, and the working directory is the
        workspace (Python imports modules you wrote there). Each call is a fresh process:
        variables do not survive between calls; files do.

        Raises:
            InvalidArgumentError: unsupported language (a ValueError; nothing is sent).
            CommandExecutionError: the code exited non-zero.
        """
        return self._run(code_flows.code_output(self._target(), language, code, timeout))

    def write_file(
        self,
        content: str | bytes,
        remote_path: str,
        *,
        mode: str | int | None = None,
        part_size: int | None = None,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> None:
        """Write text (UTF-8) or bytes to ``remote_path`` in the sandbox, any size.

        ``mode`` (e.g. ``"0755"``) holds also over an existing file. Files over ``part_size``
        (8 MiB) go in parts assembled in the sandbox atomically. ``on_progress(done_bytes,
        total_bytes)`` is called after each chunk sent (see ``examples/progress.py``).
        """
        # The file's info is not returned: no wire model is built for it.
        self._run(
            files.write_file(self._target(), content, remote_path, mode, part_size, on_progress)
        )

    def upload_file(
        self,
        local_path: str | os.PathLike[str],
        remote_path: str,
        *,
        mode: str | int | None = None,
        part_size: int | None = None,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> None:
        """Stream a local file to ``remote_path``, any size, in constant memory;
        ``on_progress(done_bytes, total_bytes)`` is called after each chunk sent."""
        self._run(
            files.upload_file(
                self._target(), os.fspath(local_path), remote_path, mode, part_size, on_progress
            )
        )

    def download_file(
        self,
        remote_path: str,
        local_path: str | os.PathLike[str],
        *,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> None:
        """Stream ``remote_path`` to ``local_path`` (missing directories are created); a
        failed download leaves no partial file.
        ``on_progress(done_bytes, total_bytes)`` is called after each chunk received
        (``total_bytes`` None when the sandbox does not say the size)."""
        self._run(
            files.download_file(self._target(), remote_path, os.fspath(local_path), on_progress)
        )

    @overload
    def read_file(
        self,
        remote_path: str,
        *,
        text: Literal[False] = False,
        max_bytes: int = DEFAULT_READ_LIMIT,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> bytes: ...

    @overload
    def read_file(
        self,
        remote_path: str,
        *,
        text: Literal[True],
        max_bytes: int = DEFAULT_READ_LIMIT,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> str: ...

    def read_file(
        self,
        remote_path: str,
        *,
        text: bool = False,
        max_bytes: int = DEFAULT_READ_LIMIT,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> bytes | str:
        """Read a small file of the sandbox into memory: its bytes, or with ``text=True`` its
        UTF-8 text (``GET api/files/<path>``, streamed).

        Args:
            remote_path: the file, relative to the workspace.
            text: decode it as UTF-8 (invalid bytes raise ``UnicodeDecodeError``).
            max_bytes: refuse a file larger than this (16 MiB by default); raise it, or use
                ``download_file`` for large files.
            on_progress: called as ``on_progress(done_bytes, total_bytes)`` after each chunk.

        Raises:
            NotFoundError: no such file.
            DataPlaneError: the file is larger than ``max_bytes`` (nothing is kept).
            APIConnectionError: the transfer broke off (nothing is returned).
        """
        return self._run(files.read_file(self._target(), remote_path, text, max_bytes, on_progress))

    def list_files(self, path: str = ".") -> list[dict[str, Any]]:
        """List a sandbox directory: dicts with ``name``, ``size``, ``modified``, ``mode``,
        ``is_dir``."""
        return self._run(files.list_files(self._target(), path))
