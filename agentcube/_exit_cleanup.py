"""Opt-in cleanup of owned sessions at interpreter exit and on SIGTERM.

Off by default. :func:`agentcube.enable_exit_cleanup` turns it on for the whole process: at
exit (``atexit``) and on SIGTERM, every session this process still owns is deleted,
synchronously, within a time bound. Attached and detached sessions are never touched.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import warnings
import weakref
from collections import deque
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._config import check_seconds

if TYPE_CHECKING:
    from .clients.control_plane import ControlPlaneClient
    from .kinds import ResourceKind
    from .session import ManagedSessionClient

logger = logging.getLogger(__name__)

_owned: weakref.WeakSet[ManagedSessionClient] = weakref.WeakSet()
_lock = threading.Lock()
_timeout = 10.0
_enabled = False
_previous_sigterm: Any = None
# Sessions of owned clients garbage-collected while cleanup was enabled (appended from
# finalizers, so a deque: thread-safe without a lock).
_adopted: deque[tuple[ResourceKind, str, ControlPlaneClient, float]] = deque()


def _forget_in_child() -> None:
    """A forked child owns none of its parent's sessions: its cleanup must never touch them."""
    global _owned, _adopted, _lock
    _owned = weakref.WeakSet()
    _adopted = deque()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def track(client: ManagedSessionClient) -> None:
    with _lock:
        _owned.add(client)


def untrack(client: ManagedSessionClient) -> None:
    with _lock:
        _owned.discard(client)


def enable_exit_cleanup(timeout: float = 10.0, *, handle_sigterm: bool = True) -> None:
    """Delete this process's still-owned sessions at interpreter exit (and on SIGTERM).

    Cleanup runs synchronously and gives up after ``timeout`` seconds in all; the ids it could
    not delete are logged and named by a ResourceWarning. Owned clients garbage-collected
    without ``stop()`` while it is enabled are cleaned up too (their finalizer hands the id
    over, without any network call). Attached and detached sessions are never deleted. With
    ``handle_sigterm`` (and when called from the main thread), a SIGTERM handler runs the
    cleanup and then the previous handler (by default: the process ends with SIGTERM).
    Calling it again only updates the timeout.

    Raises:
        InvalidArgumentError: ``timeout`` is not a positive number.
    """
    global _enabled, _timeout, _previous_sigterm
    seconds = check_seconds(timeout, "timeout")
    with _lock:
        _timeout = seconds
        if _enabled:
            return
        _enabled = True
    atexit.register(cleanup_owned_sessions)
    if handle_sigterm and threading.current_thread() is threading.main_thread():
        import signal  # here, not at the top: it is a tenth of `import agentcube`

        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)


def adopt(
    kind: ResourceKind, session_id: str, control_plane: ControlPlaneClient, timeout: float
) -> bool:
    """Keep what is needed to delete the session of an owned client being garbage-collected.

    Called from a finalizer: no lock, no network. Returns False (nothing kept) unless exit
    cleanup is enabled.
    """
    if not _enabled:
        return False
    _adopted.append((kind, session_id, control_plane, timeout))
    return True


def cleanup_owned_sessions() -> list[str]:
    """Stop every session this process still owns; return the ids that could not be deleted.

    That is every owned client still alive, and the sessions of owned clients that were
    garbage-collected without ``stop()`` while exit cleanup was enabled.
    """
    with _lock:
        clients = list(_owned)
        timeout = _timeout
    if not clients and not _adopted:
        return []
    deadline = time.monotonic() + timeout
    left: list[str] = []
    done: set[str] = set()

    from .session import StopOutcome

    def run() -> None:
        for client in clients:
            sid = client.session_id
            if time.monotonic() >= deadline:
                break
            try:
                outcome = client._stop(deadline)
                if sid and outcome is not StopOutcome.LEFT_RUNNING:
                    done.add(sid)
            except Exception as exc:
                logger.error("exit cleanup could not delete session %s: %s", sid, exc)
                if sid:
                    left.append(sid)
        while _adopted and time.monotonic() < deadline:
            kind, sid, control_plane, read_timeout = _adopted.popleft()
            try:
                control_plane.delete(kind, sid, timeout=read_timeout, deadline=deadline)
                done.add(sid)
            except Exception as exc:
                logger.error("exit cleanup could not delete session %s: %s", sid, exc)
                left.append(sid)

    worker = threading.Thread(target=run, name="agentcube-exit-cleanup", daemon=True)
    try:
        worker.start()
    except RuntimeError:  # Python 3.12+ may refuse new threads at interpreter shutdown
        run()
    else:
        worker.join(timeout)
    pending = [c.session_id for c in clients if c.session_id and c.session_id not in done]
    pending += [sid for _, sid, _, _ in list(_adopted)]
    left = sorted(set(left) | {sid for sid in pending if sid is not None and sid not in done})
    if left:
        message = (
            f"exit cleanup could not delete {len(left)} session(s) within {timeout:.1f}s; the "
            f"sandboxes may still be running: {', '.join(left)}"
        )
        logger.error(message)
        warnings.warn(message, ResourceWarning, stacklevel=2)
    return left


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    import signal

    cleanup_owned_sessions()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
