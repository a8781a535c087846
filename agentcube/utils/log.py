"""``get_logger``: a logger that prints to stderr, configured once per name."""

from __future__ import annotations

import logging

__all__ = ["get_logger"]

_FORMAT = "%(asctime)s | %(levelname)-4s | %(name)-20s | %(message)s"


def get_logger(name: str, level: int | str = logging.INFO) -> logging.Logger:
    """``logging.getLogger(name)``; the first time (while it has no handler) it also gets
    ``level`` and a stderr handler. Later calls return it unchanged (``level`` is ignored).

    The SDK's own loggers print nothing by default (``agentcube`` has a NullHandler); this
    helper is for code written against the first release.
    """
    logger = logging.getLogger(name)
    if not logger.handlers:
        logger.setLevel(level)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
    return logger
