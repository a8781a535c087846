"""The sessions a process still owns at interpreter exit: reported by default, deleted on request.

Clients register what it takes to delete each session they own (the kind, the id, the
WorkloadManager endpoint) and unregister it once the session is deleted, detached or handed
over; this module never calls back into a client (so it never waits on a client's lock).

At interpreter exit the sessions still registered are named on stderr with what to do about
them (:func:`report_at_exit`); nothing is deleted unless :func:`agentcube.enable_exit_cleanup`
turned on the cleanup for the whole process (then also on SIGTERM). :func:`tell` is the one
place the SDK writes to stderr itself: where a warning must be seen, since Python hides
ResourceWarning and the SDK's logger has no handler unless the application gave it one.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import warnings
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from ._config import check_seconds

if TYPE_CHECKING:
    from ._protocol import Endpoint
    from .kinds import ResourceKind

logger = logging.getLogger(__name__)


class _Owned(NamedTuple):
    kind: ResourceKind
    session_id: str
    endpoint: Endpoint


_owned: dict[object, _Owned] = {}
# Re-entrant: the SIGTERM handler runs in the main thread, which may hold it at that moment.
_lock = threading.RLock()
_timeout = 10.0
_enabled = False
_previous_sigterm: Any = None
_hooked = False  # the atexit hook is installed
# Owned sessions whose clients were garbage-collected without stop() while the cleanup was
# off: nothing will delete them, and the exit report still names them.
_collected: list[tuple[str, str]] = []


def _forget_in_child() -> None:
    """A forked child owns none of its parent's sessions: its cleanup must never touch them."""
    global _owned, _lock, _collected
    _owned = {}
    _collected = []
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def register(key: object, kind: ResourceKind, session_id: str, endpoint: Endpoint) -> None:
    with _lock:
        _owned[key] = _Owned(kind, session_id, endpoint)
    _hook_exit()


def collected(key: object) -> None:
    """The client owning ``key`` was garbage-collected without stop() and nothing will delete
    its session: keep it only for the exit report."""
    with _lock:
        entry = _owned.pop(key, None)
        if entry is not None:
            _collected.append((entry.kind.name, entry.session_id))


def _hook_exit() -> None:
    global _hooked
    if not _hooked:
        _hooked = True
        atexit.register(_at_exit)


def _at_exit() -> None:
    if _enabled:
        cleanup_owned_sessions()  # names on stderr what it could not delete
    else:
        report_at_exit()


def still_owned() -> list[tuple[str, str]]:
    """``(kind name, session id)`` of every session this process owns and has not deleted."""
    with _lock:
        return [(e.kind.name, e.session_id) for e in _owned.values()] + list(_collected)


def report_at_exit() -> None:
    """Name on stderr each owned session still running (none is deleted here)."""
    left = still_owned()
    if not left:
        return
    names = ", ".join(f"{kind} {sid}" for kind, sid in left)
    tell(
        f"{len(left)} session(s) this process created are still running at exit and were not "
        f"deleted: {names}. Call stop() on the client (or use it in a `with` block) to delete "
        "a session; detach() to keep one on purpose for another process; or "
        "agentcube.enable_exit_cleanup() to delete such sessions at exit"
    )


def tell(message: str) -> None:
    """Write ``message`` on stderr as one ``agentcube: ...`` line (see the module docstring)."""
    try:
        print(f"agentcube: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # stderr closed or None
        pass


def unregister(key: object) -> None:
    with _lock:
        _owned.pop(key, None)


def is_enabled() -> bool:
    return _enabled


def is_registered(key: object) -> bool:
    with _lock:
        return key in _owned


def enable_exit_cleanup(timeout: float = 10.0, *, handle_sigterm: bool = True) -> None:
    """Delete this process's still-owned sessions at interpreter exit (and on SIGTERM).

    Cleanup runs synchronously and gives up after ``timeout`` seconds in all; the ids it could
    not delete are logged and named by a ResourceWarning. Owned clients garbage-collected
    without ``stop()`` are cleaned up too. Attached and detached sessions are never deleted.
    With ``handle_sigterm`` (and when called from the main thread), a SIGTERM handler runs the
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
    _hook_exit()
    from ._drivers._sync import start_watchdog

    # Started now: at interpreter exit no new thread may start, and the watchdog is what bounds
    # a request to a server that drips its answer.
    start_watchdog()
    if handle_sigterm and threading.current_thread() is threading.main_thread():
        import signal  # here, not at the top: it is a tenth of `import agentcube`

        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)


def cleanup_owned_sessions() -> list[str]:
    """Delete every session this process still owns; return the ids that could not be."""
    with _lock:
        owned = list(_owned.items())
        timeout = _timeout
    if not owned:
        return []
    from ._drivers._sync import SyncTransport, keep_signals_for_the_main_thread, run
    from ._flows import control_plane

    deadline = time.monotonic() + timeout
    done: set[str] = set()

    def delete_all() -> None:
        if threading.current_thread() is not threading.main_thread():
            keep_signals_for_the_main_thread()
        transport = SyncTransport()
        for key, entry in owned:
            if time.monotonic() >= deadline:
                return
            try:
                run(
                    control_plane.delete_session(
                        entry.endpoint,
                        entry.kind,
                        entry.session_id,
                        timeout=entry.endpoint.read_timeout,
                        deadline=deadline,
                    ),
                    transport,
                )
            except Exception as exc:
                logger.error("exit cleanup could not delete session %s: %s", entry.session_id, exc)
            else:
                done.add(entry.session_id)
                unregister(key)

    worker = threading.Thread(target=delete_all, name="agentcube-exit-cleanup", daemon=True)
    try:
        worker.start()
    except RuntimeError:  # Python 3.12+ may refuse new threads at interpreter shutdown
        delete_all()
    else:
        worker.join(timeout)
    left = sorted({entry.session_id for _, entry in owned} - done)
    if left:
        message = (
            f"exit cleanup could not delete {len(left)} session(s) within {timeout:.1f}s; the "
            f"sandboxes may still be running: {', '.join(left)}"
        )
        logger.error(message)
        warnings.warn(message, ResourceWarning, stacklevel=2)
        tell(message)
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
