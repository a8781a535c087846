"""Code contexts: a long-lived interpreter in a code-interpreter sandbox that keeps variables,
imports and the working directory between runs. :class:`CodeContext` (sync) and
:class:`AsyncCodeContext` run the flows of :mod:`agentcube._flows.contexts` through the client
that created them; how a context talks to its interpreter is told there and in the README.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._flows._common import ContextHandle, OutputCallback, RouterTarget
from ._flows.contexts import (
    Execution,
    ExecutionError,
    Result,
    close_context,
    restart_context,
    run_cell,
)
from ._lifecycle import Action, Phase, SessionCore
from ._protocol import Flow
from .exceptions import CodeContextError

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncCodeContext", "CodeContext", "Execution", "ExecutionError", "Result"]

logger = logging.getLogger(__name__)

_C = TypeVar("_C", bound="CodeContext")
_X = TypeVar("_X", bound="_ContextBase")
_A = TypeVar("_A", bound="AsyncCodeContext")


def keeps_contexts(client: SessionCore, contexts: Iterable[_X]) -> list[_X]:
    """The open contexts to close before ``stop()``: all of them when the session will keep
    running (attached or detached), none when it is to be deleted (they end with it)."""
    if client._phase is not Phase.OPEN or client._stop_rule() is Action.DELETE:
        return []
    return [context for context in contexts if not context.closed]


def registry(owner: object, kind: type[_X]) -> weakref.WeakSet[_X]:
    """The contexts ``owner`` (a client) created and has not forgotten, made on first use."""
    found: weakref.WeakSet[_X] | None = owner.__dict__.get("_open_contexts")
    if found is None:
        found = owner.__dict__["_open_contexts"] = weakref.WeakSet()
    return found


def _kept_body_error(context: _ContextBase, cleanup: Exception) -> None:
    # The body's exception goes on; the sandbox's end removes what close() could not.
    logger.warning("could not close %r: %s", context, cleanup)


class _ContextBase:
    """What both kinds hold: the handle, where requests go, whether it is closed."""

    def __init__(
        self,
        handle: ContextHandle,
        runner: Callable[[Flow[Any]], Any],
        where: Callable[[], RouterTarget],
    ) -> None:
        self._handle = handle
        self._runner = runner
        self._where = where
        self._closed = False
        self._lock = self._new_lock()

    @staticmethod
    def _new_lock() -> Any:
        raise NotImplementedError

    @property
    def language(self) -> str:
        """``python`` or ``bash``."""
        return self._handle.language

    @property
    def directory(self) -> str:
        """Where the context keeps its files in the sandbox (workspace-relative)."""
        return self._handle.directory

    @property
    def closed(self) -> bool:
        return self._closed

    def _open_handle(self) -> ContextHandle:
        if self._closed:
            raise CodeContextError("this code context is closed; create a new one")
        return self._handle

    def _session_ended(self) -> None:
        """The session ended (its sandbox, with the interpreter, is gone): closed, no request."""
        self._closed = True

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.language} {self.directory} {state}>"


class CodeContext(_ContextBase):
    """A long-lived interpreter in the sandbox (from
    :meth:`~agentcube.CodeInterpreterClient.create_code_context`).

    Python contexts keep variables, imports and the working directory between runs; bash
    contexts keep ``cd``, ``export``, variables and functions. One cell runs at a time: runs
    from several threads wait for each other. ``with`` closes it.
    """

    _lock: threading.Lock
    _new_lock = staticmethod(threading.Lock)

    def run(
        self,
        code: str,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> Execution:
        """Run one cell and return its :class:`Execution` (stdout, stderr, the last
        expression's ``text``, rich ``results``, and ``error``).

        An error in the code is returned in ``error``, not raised. ``timeout`` (seconds; None
        or 0: 120) interrupts the cell as Ctrl-C would (``error.name == "TimeoutError"``) and
        keeps the context's state; a cell that ignores the interrupt for 3 s has its
        interpreter killed and replaced (the error says its state is lost).

        Without callbacks a run is one ``api/execute``. With ``on_stdout``/``on_stderr`` each
        gets the output's text as it comes (called on this thread; keep them quick): the cell
        is submitted, then its output files are polled with Range downloads every 0.05 to
        0.25 s (up to three requests per poll).

        Raises:
            CodeContextError: the context is closed, or its interpreter is gone (the sandbox
                restarted): create a new one.
            SessionError: the client is stopped.
        """
        with self._lock:
            handle = self._open_handle()
            execution: Execution = self._runner(
                run_cell(self._where(), handle, code, timeout, on_stdout, on_stderr)
            )
            return execution

    def restart(self) -> None:
        """Replace the interpreter with a fresh one: every variable is gone (one request)."""
        with self._lock:
            self._runner(restart_context(self._where(), self._open_handle()))

    def close(self) -> None:
        """End the interpreter and remove its files from the sandbox (one request). Calling
        it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._runner(close_context(self._where(), self._handle))
            self._closed = True

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except Exception as cleanup:
            if exc_val is None:
                raise
            _kept_body_error(self, cleanup)


class AsyncCodeContext(_ContextBase):
    """The async twin of :class:`CodeContext` (from
    :meth:`~agentcube.AsyncCodeInterpreterClient.create_code_context`): the same methods, as
    coroutines; one cell at a time across tasks (an ``asyncio.Lock``); ``async with`` closes
    it."""

    _lock: asyncio.Lock

    @staticmethod
    def _new_lock() -> asyncio.Lock:
        import asyncio  # only here: ``import agentcube`` stays free of asyncio

        return asyncio.Lock()

    async def run(
        self,
        code: str,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> Execution:
        """As :meth:`CodeContext.run` (the callbacks are called on the event loop)."""
        async with self._lock:
            handle = self._open_handle()
            execution: Execution = await self._runner(
                run_cell(self._where(), handle, code, timeout, on_stdout, on_stderr)
            )
            return execution

    async def restart(self) -> None:
        """As :meth:`CodeContext.restart`."""
        async with self._lock:
            await self._runner(restart_context(self._where(), self._open_handle()))

    async def close(self) -> None:
        """As :meth:`CodeContext.close`."""
        async with self._lock:
            if self._closed:
                return
            await self._runner(close_context(self._where(), self._handle))
            self._closed = True

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        try:
            await self.close()
        except Exception as cleanup:
            if exc_val is None:
                raise
            _kept_body_error(self, cleanup)
