"""Opt-in cleanup of owned sessions at interpreter exit and on SIGTERM.

Off by default. :func:`agentcube.enable_exit_cleanup` turns it on for the whole process: at
exit (``atexit``) and on SIGTERM, every session this process still owns is deleted,
synchronously, within a time bound. Attached and detached sessions are never touched.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._config import check_timeout

if TYPE_CHECKING:
    from .session import ManagedSessionClient

logger = logging.getLogger(__name__)

_owned: weakref.WeakSet[ManagedSessionClient] = weakref.WeakSet()
_lock = threading.Lock()
_timeout = 10.0
_enabled = False
_previous_sigterm: Any = None


def track(client: ManagedSessionClient) -> None:
    with _lock:
        _owned.add(client)


def untrack(client: ManagedSessionClient) -> None:
    with _lock:
        _owned.discard(client)


def enable_exit_cleanup(timeout: float = 10.0, *, handle_sigterm: bool = True) -> None:
    """Delete this process's still-owned sessions at interpreter exit (and on SIGTERM).

    Cleanup runs synchronously and gives up after ``timeout`` seconds in all, logging the ids
    it could not delete. Attached and detached sessions are never deleted. With
    ``handle_sigterm`` (and when called from the main thread), a SIGTERM handler runs the
    cleanup and then the previous handler (by default: the process ends with SIGTERM).
    Calling it again only updates the timeout.

    Raises:
        InvalidArgumentError: ``timeout`` is not a positive number.
    """
    global _enabled, _timeout, _previous_sigterm
    seconds = check_timeout(timeout, "timeout", allow_none=False)
    assert seconds is not None
    with _lock:
        _timeout = seconds
        if _enabled:
            return
        _enabled = True
    atexit.register(cleanup_owned_sessions)
    if handle_sigterm and threading.current_thread() is threading.main_thread():
        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)


def cleanup_owned_sessions() -> list[str]:
    """Stop every session this process still owns; return the ids that could not be deleted."""
    with _lock:
        clients = list(_owned)
        timeout = _timeout
    if not clients:
        return []
    left: list[str] = []

    def run() -> None:
        for client in clients:
            sid = client.session_id
            try:
                client.stop()
            except Exception as exc:
                logger.error("exit cleanup could not delete session %s: %s", sid, exc)
                if sid:
                    left.append(sid)

    worker = threading.Thread(target=run, name="agentcube-exit-cleanup", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        with _lock:
            pending = [c.session_id for c in clients if c in _owned and c.session_id]
        logger.error("exit cleanup timed out after %.1fs; sessions left: %s", timeout, pending)
        return [sid for sid in pending if sid is not None]
    return left


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    cleanup_owned_sessions()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
