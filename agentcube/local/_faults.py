"""Fault injection: make the next matching requests fail, stall or lose their connection."""

from __future__ import annotations

import fnmatch
import logging
import random
import threading
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from ._go.gin import json_response
from ._serving.keepalive import DROP_CONNECTION, client_disconnected
from ._serving.wsgi import request_path, respond

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)


class Fault:
    """One injected fault. ``hits`` says how many requests it has fired on so far."""

    def __init__(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        delay: float | None = None,
        drop: bool = False,
        after: bool = False,
        times: int = 1,
        body: dict[str, Any] | None = None,
        probability: float = 1.0,
        seed: int | None = None,
    ) -> None:
        if not isinstance(method, str) or not method:
            raise ValueError("method must be an HTTP method or '*'")
        if not isinstance(path, str) or not path:
            raise ValueError("path must be a non-empty glob pattern")
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
        ):
            raise ValueError("status must be an HTTP status code between 100 and 599")
        if delay is not None and (isinstance(delay, bool) or not delay >= 0):
            raise ValueError("delay must be a non-negative number of seconds")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        if after and not drop:
            raise ValueError("after=True only makes sense with drop=True")
        if drop and status is not None:
            raise ValueError("a fault cannot both drop the connection and answer a status")
        if status is None and delay is None and not drop:
            raise ValueError("give at least one of status=, delay= or drop=True")
        if body is not None and not isinstance(body, dict):
            raise ValueError("body must be a dict")
        if isinstance(probability, bool) or not isinstance(probability, (int, float)):
            raise ValueError("probability must be a number")
        if not 0 < probability <= 1:
            raise ValueError("probability must be in (0, 1]")
        self.method = method.upper()
        self.path = path
        self.status = status
        self.delay = float(delay) if delay is not None else None
        self.drop = drop
        self.after = after
        self.times = times
        self.body = body
        self.probability = float(probability)
        self._rng = random.Random(seed)
        self._hits = 0
        self._lock = threading.Lock()

    @property
    def hits(self) -> int:
        """How many requests this fault has fired on."""
        with self._lock:
            return self._hits

    @property
    def remaining(self) -> int:
        """How many more requests it will fire on."""
        with self._lock:
            return self.times - self._hits

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method == method.upper()) and fnmatch.fnmatchcase(
            path, self.path
        )

    def _claim(self) -> bool:
        with self._lock:
            if self._hits >= self.times:
                return False
            if self.probability < 1 and self._rng.random() >= self.probability:
                return False
            self._hits += 1
            return True

    def __repr__(self) -> str:
        parts = [f"{self.method} {self.path!r}"]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.delay is not None:
            parts.append(f"delay={self.delay}")
        if self.drop:
            parts.append("drop=True" + (", after=True" if self.after else ""))
        if self.probability < 1:
            parts.append(f"probability={self.probability:g}")
        parts.append(f"hits={self.hits}/{self.times}")
        return f"Fault({', '.join(parts)})"


class RequestRecord(NamedTuple):
    """One request a server received: ``("workload_manager" | "router", method, path)``."""

    server: str
    method: str
    path: str


class FaultInjector:
    """The faults of one LocalAgentCube, shared by both servers; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._fired: Counter[str] = Counter()
        self._requests: list[RequestRecord] = []
        self._stopping = threading.Event()

    # faults ------------------------------------------------------------------------------
    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The first live fault matching the request, with one hit claimed."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path) and fault._claim():
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def record_fired(self, kind: str) -> None:
        with self._lock:
            self._fired[kind] += 1

    def fired(self) -> dict[str, int]:
        with self._lock:
            return dict(self._fired)

    # request log ---------------------------------------------------------------------------
    def record_request(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)
            if len(self._requests) > 200_000:
                del self._requests[:100_000]

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def reset_counters(self) -> None:
        with self._lock:
            self._requests.clear()
            self._fired.clear()

    # shutdown ------------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up early when the server stops."""
        self._stopping.wait(seconds)

    def stopping(self) -> None:
        self._stopping.set()

    def restart(self) -> None:
        self._stopping.clear()


class FaultMiddleware:
    """Records each request, then applies a matching fault before the app sees it."""

    def __init__(
        self, app: WSGIApplication, injector: FaultInjector, server: str, error_key: str
    ) -> None:
        self._app = app
        self._injector = injector
        self._server = server
        self._error_key = error_key

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET"))
        path = request_path(environ)
        self._injector.record_request(RequestRecord(self._server, method, path))
        fault = self._injector.take(method, path)
        if fault is None:
            return self._app(environ, start_response)
        logger.debug("fault %r fires on %s %s", fault, method, path)
        injector = self._injector

        if fault.delay is not None:
            injector.record_fired("delay")
            injector.sleep(fault.delay)
            if client_disconnected(environ.get("werkzeug.socket")):
                # Like a cancelled request context: the client gave up, nothing is done.
                injector.record_fired("cancelled")
                return self._drop(environ, start_response)

        if fault.drop and not fault.after:
            injector.record_fired("drop")
            return self._drop(environ, start_response)

        if fault.status is not None:
            injector.record_fired(f"status:{fault.status}")
            payload = fault.body if fault.body is not None else {self._error_key: "injected fault"}
            return respond(json_response(fault.status, payload), start_response)

        if fault.drop and fault.after:
            injector.record_fired("drop")
            injector.record_fired("drop_after")
            result = self._app(environ, _discarding_start_response)
            try:
                for _ in result:  # perform the action (and produce the response) in full
                    pass
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            return self._drop(environ, start_response)

        return self._app(environ, start_response)

    @staticmethod
    def _drop(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[DROP_CONNECTION] = True
        start_response("500 Internal Server Error", [("Content-Length", "0")])
        return []


def _discarding_start_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Any:
    return lambda data: None
