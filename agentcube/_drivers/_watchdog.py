"""The watchdog: one thread per process that cuts an attempt's socket at its deadline.

requests' read timeout bounds each read, not the whole answer: a server sending one byte every
second never trips it. The watchdog bounds the attempt in all; its blocked read then fails at
once and the transport reports a timeout. The pool's connections (:mod:`._pool`) tell the
current attempt's :class:`Watch` which connection carries it.

Relies on: a urllib3 connection's ``sock`` attribute (the socket to shut down).
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from typing import Any


class Watch:
    """One attempt under the watchdog: its deadline and, once it has one, its connection."""

    __slots__ = ("conn", "deadline", "fired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.conn: Any = None
        self.fired = False


class Watchdog:
    """Shuts the socket of an attempt down when it outlives its deadline.

    One thread for the process, started on first use (or by ``enable_exit_cleanup()``, so that
    it exists at interpreter exit).
    """

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._active: dict[int, Watch] = {}
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        # The deadline the thread sleeps until (inf: until notified). An attempt whose
        # deadline comes later needs no wake-up: the thread looks again when it wakes.
        self._next = math.inf

    def start(self) -> bool:
        with self._lock:
            return self._start_locked()

    def _start_locked(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return True
        thread = threading.Thread(target=self._run, name="agentcube-watchdog", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no new thread at interpreter shutdown (Python 3.12+)
            return False
        self._thread = thread
        return True

    def arm(self, seconds: float) -> Watch:
        watch = Watch(time.monotonic() + seconds)
        self._local.watch = watch
        with self._lock:
            self._active[id(watch)] = watch
            if self._start_locked() and watch.deadline < self._next:
                self._next = watch.deadline
                self._lock.notify()
        return watch

    def current(self) -> Watch | None:
        return getattr(self._local, "watch", None)

    def disarm(self, watch: Watch) -> bool:
        """End the watch; True if the deadline had passed and the connection was cut."""
        self._local.watch = None
        with self._lock:
            self._active.pop(id(watch), None)
            return watch.fired

    def _run(self) -> None:
        keep_signals_for_the_main_thread()
        lock = self._lock
        with lock:
            # A thread whose lock was replaced (forget_in_child) is no longer the watchdog: it
            # ends when it next wakes, and never waits on a lock it does not hold.
            while self._lock is lock:
                if not self._active:
                    self._next = math.inf
                    lock.wait()
                    continue
                watch = min(self._active.values(), key=lambda w: w.deadline)
                left = watch.deadline - time.monotonic()
                if left > 0:
                    self._next = watch.deadline
                    lock.wait(left)
                    continue
                del self._active[id(watch)]
                sock = getattr(watch.conn, "sock", None)
                if sock is not None:
                    watch.fired = True
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def forget_in_child(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._active = {}
        self._thread = None
        self._next = math.inf


watchdog = Watchdog()


def start_watchdog() -> bool:
    """Start the watchdog thread now (exit cleanup needs it at interpreter exit)."""
    return watchdog.start()


def keep_signals_for_the_main_thread() -> None:
    """Block every signal in the calling (background) thread: the kernel may hand a process
    its Ctrl-C or SIGTERM in any thread, and only the main thread's blocking call is then
    interrupted; a library thread must never take them away from it."""
    import signal

    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


if hasattr(os, "register_at_fork"):
    # A forked child has no watchdog thread: a new one starts on its first attempt.
    os.register_at_fork(after_in_child=watchdog.forget_in_child)
