"""Library logging: a NullHandler on the package logger; handlers only on request."""

from __future__ import annotations

import logging

_PACKAGE_LOGGER = logging.getLogger("agentcube")
_PACKAGE_LOGGER.addHandler(logging.NullHandler())


class _VerboseHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``verbose=True`` adds (once per process) to the ``agentcube`` logger."""


def enable_verbose_logging() -> None:
    """Log the SDK's debug lines to stderr. Tokens are never part of any log line."""
    if not any(isinstance(h, _VerboseHandler) for h in _PACKAGE_LOGGER.handlers):
        handler = _VerboseHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        _PACKAGE_LOGGER.addHandler(handler)
    _PACKAGE_LOGGER.setLevel(logging.DEBUG)
