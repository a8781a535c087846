"""Async clients: the same sessions, rules and lifecycle as the sync clients, under asyncio.

Needs aiohttp (``pip install "agentcube-sdk[async]"``). Each class takes the same arguments as
its sync twin and has the same methods, as coroutines. The lifecycle (owned, attached,
detached; ``stop()``, ``delete()``, ``detach()``) is :class:`agentcube._lifecycle.SessionCore`,
the one the sync clients use, and every request is built and every answer read by the same
flows (:mod:`agentcube._flows`); only sending bytes differs (:mod:`agentcube._drivers._async`).

No network in ``__init__``::

    async with AsyncCodeInterpreterClient() as ci:        # creates the session
        print(await ci.run_code("python", "print(6 * 7)"))
    # or: ci = await AsyncCodeInterpreterClient.create(); ...; await ci.stop()

Attaching (``session_id=...``) sends nothing, so it needs no ``await``.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from ._arguments import AgentRuntimeArguments, CodeInterpreterArguments, SessionArguments
from ._config import DEFAULT_READ_LIMIT
from ._drivers._async import arun, run_now, shared_transport
from ._flows import code as code_flows
from ._flows import commands, contexts, files, processes
from ._flows._common import OutputCallback, RouterTarget, Started
from ._flows.agent_runtime import answer_of, invoke
from ._lifecycle import Phase, StopOutcome, add_note
from ._logging import verbose_scope
from ._protocol import Flow
from .contexts import AsyncCodeContext, keeps_contexts, registry
from .exceptions import InvalidArgumentError, SessionError, SessionNotFoundError
from .kinds import AGENT_RUNTIME, CODE_INTERPRETER
from .processes import AsyncBackgroundProcess

__all__ = [
    "AsyncAgentRuntimeClient",
    "AsyncCodeInterpreterClient",
    "AsyncManagedSessionClient",
    "StopOutcome",
]

logger = logging.getLogger("agentcube.session")

_A = TypeVar("_A", bound="AsyncManagedSessionClient")
T = TypeVar("T")


class _DataPlane:
    """Where an async client's data-plane requests go (closing it releases nothing: the
    connections belong to the event loop's shared pool)."""

    __slots__ = ("target",)

    def __init__(self, target: RouterTarget) -> None:
        self.target = target

    def close(self) -> None:
        pass


class AsyncManagedSessionClient(SessionArguments, abc.ABC):
    """Base of every async session client: one sandbox session and its lifecycle.

    The async twin of :class:`~agentcube.ManagedSessionClient`, with the same arguments,
    credentials, validation and lifecycle table. Constructing sends nothing: a client without
    ``session_id`` creates its session in :meth:`start` (``async with`` and :meth:`create` call
    it). An ``asyncio.Lock`` makes concurrent ``stop()`` calls send one DELETE.

    Cancellation never loses a session: a task cancelled while its create is in flight waits
    for the create's answer and deletes the session it names (a second cancellation gives up
    and says, in a note and a ``ResourceWarning``, that a sandbox may be running); a task
    cancelled during ``stop()`` either finishes the DELETE already sent or names the session
    it leaves. The cancellation always propagates.

    Raises:
        InvalidArgumentError: a bad argument or a missing URL (at construction; nothing sent).
    """

    def _init_driver(self) -> None:
        self._started = False
        self._lock = asyncio.Lock()

    def _open(self, attach_to: str | None) -> None:
        self._transport = shared_transport()
        if attach_to is not None:
            run_now(self._start_flow(attach_to))  # attaching sends nothing
            self._started = True

    @abc.abstractmethod
    def _open_data_plane(self, session_id: str) -> Any:
        """Build (no I/O) what this kind uses to talk to its sandbox; ``stop()`` closes it."""

    @classmethod
    async def create(cls: type[_A], *args: Any, **kwargs: Any) -> _A:
        """Construct a client (same arguments as the constructor) and :meth:`start` it.

        Raises:
            as :meth:`start`.
        """
        client = cls(*args, **kwargs)
        await client.start()
        return client

    async def start(self: _A) -> _A:
        """Create this client's session (``POST /v1/<segment>`` through the WorkloadManager,
        or the agent runtime's bootstrap through the Router) and own it. Does nothing for an
        attached client or one already started.

        Raises:
            APIError / APIConnectionError / InvalidResponseError: the create failed; a session
                it made is deleted again (or named in a note and a ``ResourceWarning``).
            SessionError: the client was stopped before it started.
        """
        async with self._lock:
            if self._started:
                return self
            if self._phase is not Phase.OPEN:
                raise SessionError(f"{type(self).__name__} is stopped; open a new client")
            try:
                with verbose_scope(self.verbose):
                    await arun(self._start_flow(None), self._transport)
            except BaseException as exc:
                if self.dp_client is not None:
                    # Created in full, then the task was cancelled: delete what it made.
                    self._close_data_plane()
                    with verbose_scope(self.verbose):
                        await arun(self._roll_back_flow(exc), self._transport)
                raise
            self._started = True
        return self

    async def _run(self, flow: Flow[T]) -> T:
        try:
            with verbose_scope(self.verbose):
                return await arun(flow, self._transport)
        except SessionNotFoundError as exc:
            self._forget_if_lost(exc)
            raise

    def _require_open(self) -> Any:
        if not self._started and self._phase is Phase.OPEN:
            name = type(self).__name__
            raise SessionError(
                f"{name} has no session yet: use `await {name}.create(...)` or "
                f"`async with {name}(...)`"
            )
        return super()._require_open()

    def _target(self) -> RouterTarget:
        dp: _DataPlane = self._require_open()
        return dp.target

    # -- the lifecycle -------------------------------------------------------------------------

    async def stop(self) -> StopOutcome:
        """Close this client's data plane, then delete the session if the kind's policy says so
        (as :meth:`agentcube.ManagedSessionClient.stop`). Concurrent calls send one DELETE.

        Returns:
            What happened, as a :class:`~agentcube.StopOutcome`.
        Raises:
            APIError / APIConnectionError: the DELETE failed; ``session_id`` and ownership are
                kept, so a later ``stop()`` retries it.
        """
        async with self._lock:
            return await self._ending(self._stop_flow(), "stop()")

    async def delete(self) -> StopOutcome:
        """Close this client's data plane and delete the session, owned or attached.

        Returns:
            ``DELETED``, ``ALREADY_GONE``, or ``NOTHING_TO_DO`` if it is already deleted.
        Raises:
            InvalidArgumentError: no WorkloadManager URL is configured.
            APIError / APIConnectionError: the DELETE failed; a later call retries it.
        """
        async with self._lock:
            return await self._ending(self._delete_flow(), "delete()")

    async def detach(self) -> str:
        """Give up ownership: ``stop()`` will then only close connections. Returns the id.

        Raises:
            SessionError: this client has no session.
        """
        async with self._lock:
            return self._detach()

    async def close(self) -> None:
        """Close local connections only (the session keeps running). The connections belong
        to the event loop's shared pool, which ``asyncio.run`` closes at its end; this
        releases nothing of its own and is here for symmetry with the sync clients."""

    async def _ending(self, flow: Flow[StopOutcome], what: str) -> StopOutcome:
        try:
            return await self._run(flow)
        except asyncio.CancelledError as exc:
            if self.session_id is not None and self._phase is Phase.STOPPING:
                self._name_left_running(exc, f"{what} was cancelled")
            raise

    # -- context manager -----------------------------------------------------------------------

    async def __aenter__(self: _A) -> _A:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is None:
            await self.stop()
            return
        try:
            await self.stop()
        except Exception as cleanup:
            # Never let a cleanup failure replace the body's exception; report it alongside.
            message = (
                f"stop() failed while handling {exc_type.__name__ if exc_type else 'an error'}: "
                f"{type(cleanup).__name__}: {cleanup}"
            )
            logger.error(message)
            add_note(exc_val, message)


class AsyncCodeInterpreterClient(CodeInterpreterArguments, AsyncManagedSessionClient):
    """A code-interpreter sandbox session, under asyncio: the async twin of
    :class:`~agentcube.CodeInterpreterClient`, with the same arguments and methods.

    ``stop()`` (and ``async with``) deletes the session, attached or not; ``detach()`` first
    to keep it. Files move in constant memory, read and written in a worker thread.
    """

    kind = CODE_INTERPRETER
    delete_attached_on_stop = True
    logger = logging.getLogger(__name__)

    def _open_data_plane(self, session_id: str) -> _DataPlane:
        return _DataPlane(self._router_target(session_id))

    async def execute_command_result(
        self, command: str | list[str], timeout: float | None = None
    ) -> dict[str, Any]:
        """Run a command and return ``{"stdout", "stderr", "exit_code"}``; never raises on a
        non-zero exit. A string runs through ``sh -c``; a list is the argv itself."""
        return await self._run(commands.command_result(self._target(), command, timeout))

    @overload
    async def execute_command(
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
    async def execute_command(
        self,
        command: str | list[str],
        timeout: float | None = None,
        *,
        background: Literal[True],
        log_file: str | None = None,
    ) -> AsyncBackgroundProcess: ...

    async def execute_command(
        self,
        command: str | list[str],
        timeout: float | None = None,
        *,
        background: bool = False,
        log_file: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> str | AsyncBackgroundProcess:
        """Run a command and return its stdout; with ``background=True`` start it detached
        and return an :class:`~agentcube.AsyncBackgroundProcess` at once. ``on_stdout`` and
        ``on_stderr`` get the output as it comes, called on the event loop (see
        :meth:`agentcube.CodeInterpreterClient.execute_command` for what that costs).

        Raises:
            CommandExecutionError: non-zero exit (carries ``exit_code``, ``stderr``, ``command``).
            InvalidArgumentError: callbacks with ``background=True``.
        """
        if on_stdout is not None or on_stderr is not None:
            if background:
                raise InvalidArgumentError("on_stdout/on_stderr are not for background=True")
            return await self._run(
                processes.command_live(self._target(), command, timeout, on_stdout, on_stderr)
            )
        result = await self._run(
            commands.command_output(self._target(), command, timeout, background, log_file)
        )
        return self._process(result) if isinstance(result, Started) else result

    def _process(self, started: Started) -> AsyncBackgroundProcess:
        return AsyncBackgroundProcess._bind(started, self._run, self._target)

    async def list_processes(self) -> list[AsyncBackgroundProcess]:
        """The processes started in this session with ``background=True`` (by any client),
        running or ended (one request)."""
        found = await self._run(processes.list_processes(self._target()))
        return [self._process(s) for s in found]

    async def create_code_context(self, language: str = "python") -> AsyncCodeContext:
        """Start a long-lived interpreter (``"python"`` or ``"bash"``) in the sandbox; its
        :class:`~agentcube.AsyncCodeContext` (as
        :meth:`agentcube.CodeInterpreterClient.create_code_context`).

        Raises:
            InvalidArgumentError: another language (nothing is sent).
            CodeContextError: the sandbox has no ``python3`` (or ``bash``), or the interpreter
                did not start.
        """
        handle = await self._run(contexts.start_context(self._target(), language))
        context = AsyncCodeContext(handle, self._run, self._target)
        self._contexts().add(context)
        return context

    def _contexts(self) -> weakref.WeakSet[AsyncCodeContext]:
        return registry(self, AsyncCodeContext)

    async def stop(self) -> StopOutcome:
        """As :meth:`AsyncManagedSessionClient.stop`; the code contexts this client created
        end with it (closed first when the session is kept)."""
        for context in keeps_contexts(self, self._contexts()):
            try:
                await context.close()
            except Exception as exc:
                self.logger.warning("could not close %r: %s", context, exc)
        outcome = await super().stop()
        for context in list(self._contexts()):
            context._session_ended()
        return outcome

    async def run_code(self, language: str, code: str, timeout: float | None = None) -> str:
        """Run ``code`` in ``language`` (python, py, python3, bash, sh) and return its stdout
        (two requests: the code is written to a file, then run).

        Raises:
            InvalidArgumentError: unsupported language (nothing is sent).
            CommandExecutionError: the code exited non-zero.
        """
        return await self._run(code_flows.code_output(self._target(), language, code, timeout))

    async def write_file(
        self,
        content: str | bytes,
        remote_path: str,
        *,
        mode: str | int | None = None,
        part_size: int | None = None,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> None:
        """Write text (UTF-8) or bytes to ``remote_path`` in the sandbox, any size; ``mode``
        holds also over an existing file; over ``part_size`` (8 MiB) it goes in parts.
        ``on_progress(done_bytes, total_bytes)`` is called after each chunk sent."""
        await self._run(
            files.write_file(self._target(), content, remote_path, mode, part_size, on_progress)
        )

    async def upload_file(
        self,
        local_path: str | os.PathLike[str],
        remote_path: str,
        *,
        mode: str | int | None = None,
        part_size: int | None = None,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> None:
        """Stream a local file to ``remote_path``, any size, in constant memory;
        ``on_progress(done_bytes, total_bytes)`` is called after each chunk sent.

        Raises:
            FileNotFoundError: ``local_path`` does not exist (nothing is sent).
        """
        await self._run(
            files.upload_file(
                self._target(), os.fspath(local_path), remote_path, mode, part_size, on_progress
            )
        )

    async def download_file(
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
        await self._run(
            files.download_file(self._target(), remote_path, os.fspath(local_path), on_progress)
        )

    @overload
    async def read_file(
        self,
        remote_path: str,
        *,
        text: Literal[False] = False,
        max_bytes: int = DEFAULT_READ_LIMIT,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> bytes: ...

    @overload
    async def read_file(
        self,
        remote_path: str,
        *,
        text: Literal[True],
        max_bytes: int = DEFAULT_READ_LIMIT,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> str: ...

    async def read_file(
        self,
        remote_path: str,
        *,
        text: bool = False,
        max_bytes: int = DEFAULT_READ_LIMIT,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> bytes | str:
        """Read a small file of the sandbox into memory: its bytes, or with ``text=True`` its
        UTF-8 text; arguments and errors as :meth:`agentcube.CodeInterpreterClient.read_file`."""
        return await self._run(
            files.read_file(self._target(), remote_path, text, max_bytes, on_progress)
        )

    async def list_files(self, path: str = ".") -> list[dict[str, Any]]:
        """List a sandbox directory: dicts with ``name``, ``size``, ``modified``, ``mode``,
        ``is_dir``."""
        return await self._run(files.list_files(self._target(), path))


class AsyncAgentRuntimeClient(AgentRuntimeArguments, AsyncManagedSessionClient):
    """An agent-runtime sandbox session, under asyncio: the async twin of
    :class:`~agentcube.AgentRuntimeClient`, with the same arguments.

    :meth:`start` (``async with``, :meth:`create`) bootstraps a session through the Router
    and owns it; ``stop()`` deletes it through the WorkloadManager. With ``session_id`` it
    attaches (no request, no await), and ``stop()`` keeps the session; ``delete()`` ends it.
    """

    kind = AGENT_RUNTIME
    delete_attached_on_stop = False
    bootstraps_through_router = True
    logger = logging.getLogger(__name__)

    def _open_data_plane(self, session_id: str) -> _DataPlane:
        return _DataPlane(self._router_target(session_id))

    async def invoke(self, payload: Any, timeout: float | None = None, path: str = "") -> Any:
        """POST ``payload`` as JSON to the agent at ``invocations/<path>``.

        Returns:
            The JSON answer, or its text when the answer is not JSON.
        Raises:
            APIError: the agent or router answered 4xx/5xx.
            APIConnectionError / APITimeoutError: no answer (not retried unless it never
                reached the Router, or the Router shed it with 429).
            SessionError: the client is not started or is stopped.
        """
        return answer_of(await self._run(invoke(self._target(), payload, timeout, path)))
