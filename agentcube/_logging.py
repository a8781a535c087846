"""Library logging: a NullHandler on the package logger; ``verbose=True`` per client.

A client made with ``verbose=True`` runs its calls inside :func:`verbose_scope`. Only there do
the SDK's loggers pass records below the level they had before (what the application chose,
WARNING by default), and only those records does the stderr handler print: another client's
requests stay as quiet as before, for this handler and for the application's own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

_PACKAGE_LOGGER = logging.getLogger("agentcube")
_PACKAGE_LOGGER.addHandler(logging.NullHandler())

_VERBOSE: ContextVar[bool] = ContextVar("agentcube_verbose", default=False)


class _InScope(logging.Filter):
    """Passes what a verbose client logs, and what its logger passed before anyway."""

    def __init__(self, baseline: int) -> None:
        super().__init__()
        self.baseline = baseline

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.baseline or _VERBOSE.get()


class _VerboseHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``verbose=True`` adds (once per process) to the ``agentcube`` logger; it
    prints only what verbose clients log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _VERBOSE.get() and super().filter(record)


def enable_verbose_logging() -> None:
    """Let verbose clients log the SDK's debug lines to stderr (tokens are never in a line).

    Each SDK logger (not the local server's) gets level DEBUG and a filter that passes, outside
    a verbose client's calls, only what its former level passed.
    """
    if not any(isinstance(h, _VerboseHandler) for h in _PACKAGE_LOGGER.handlers):
        handler = _VerboseHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        _PACKAGE_LOGGER.addHandler(handler)
    names = [
        name
        for name in logging.root.manager.loggerDict
        if name.startswith("agentcube.") and not name.startswith("agentcube.local")
    ]
    for name in sorted(names, key=len):  # parents first: a child's baseline is its own
        logger = logging.getLogger(name)
        if any(isinstance(f, _InScope) for f in logger.filters):
            continue
        logger.addFilter(_InScope(logger.getEffectiveLevel()))
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)


@contextlib.contextmanager
def verbose_scope(verbose: bool) -> Iterator[None]:
    """Within it, a verbose client's records pass (see the module docstring)."""
    if not verbose:
        yield
        return
    token = _VERBOSE.set(True)
    try:
        yield
    finally:
        _VERBOSE.reset(token)
