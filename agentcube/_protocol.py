"""The sans-I/O core: what every client sends and how answers are read, with no I/O at all.

An operation is a *flow*: a generator that yields the steps it needs performed and receives
their results, then returns the operation's value::

    def list_files(target, path) -> Flow[list[dict]]:
        reply = yield Call(target.endpoint, "GET", ...)     # an HTTP request
        size = yield Local(os.path.getsize, local_path)      # a blocking filesystem step
        return parse(reply)

The flows (in :mod:`agentcube._flows`) hold every rule: paths, bodies, headers, validation, retry
decisions and the mapping of answers to results and errors. A driver performs the steps: the
sync driver with requests (:mod:`agentcube._drivers._sync`), the async one with aiohttp
(:mod:`agentcube._drivers._async`). Only sending bytes and touching the disk differ between them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ._files import Progress
from ._wire import (
    SESSION_HEADER,
    USER_AGENT,
    charset_of,
    decode_json_text,
    decode_text,
    dump_json,
    parse_json,
)
from .exceptions import (
    APIConnectionError,
    APITimeoutError,
    InvalidArgumentError,
    error_from_reply,
)

if TYPE_CHECKING:
    from .auth import AuthProvider

T = TypeVar("T")
Flow = Generator[Any, Any, T]
"""A generator yielding :class:`Call` or :class:`Local` steps and returning a ``T``."""

http_logger = logging.getLogger("agentcube._http")  # both drivers' request log

# How a request may be retried.
IDEMPOTENT = "idempotent"  # retried on connection errors, timeouts and the policy's statuses
ONCE = "once"  # sent once: retried only when it never reached a server (or the router shed it)

TOO_MANY_REQUESTS = 429
_MAX_RETRY_AFTER = 60.0


class RetryPolicy:
    """How requests are retried.

    Idempotent requests (list, download, delete) are retried on a connection error, a timeout,
    or a status in ``statuses``. Every request, whatever its method, is retried when it never
    reached the server (the connection could not be opened) and when the Router shed it
    unprocessed (429 without a session header). At most ``max_attempts`` attempts in all, with
    a random pause between 0 and ``min(max_backoff, backoff * 2 ** (attempt - 1))`` seconds
    before each new one ("full jitter"); a ``Retry-After`` of at most 60 s is honoured.
    ``RetryPolicy(max_attempts=1)`` disables retries.

    Raises:
        InvalidArgumentError: a value is not a positive attempt count, a non-negative finite
            number of seconds, or a set of HTTP statuses.
    """

    __slots__ = ("backoff", "max_attempts", "max_backoff", "statuses")
    max_attempts: int
    backoff: float
    max_backoff: float
    statuses: frozenset[int]

    def __init__(
        self,
        max_attempts: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        statuses: frozenset[int] | set[int] | tuple[int, ...] = frozenset({502, 503, 504}),
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise InvalidArgumentError("max_attempts must be an int")
        if not 1 <= max_attempts <= 100:
            raise InvalidArgumentError("max_attempts must be between 1 and 100")
        for name, value in (("backoff", backoff), ("max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgumentError(f"{name} must be a number of seconds")
            if not 0 <= value <= 3600:
                raise InvalidArgumentError(f"{name} must be between 0 and 3600 seconds")
        if not isinstance(statuses, (set, frozenset, tuple, list)) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in statuses
        ):
            raise InvalidArgumentError("statuses must be a set of HTTP status codes")
        set_ = object.__setattr__  # immutable once built
        set_(self, "max_attempts", max_attempts)
        set_(self, "backoff", float(backoff))
        set_(self, "max_backoff", float(max_backoff))
        set_(self, "statuses", frozenset(statuses))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"RetryPolicy is immutable; build a new one instead of setting {name}")

    def delay(self, attempt: int) -> float:
        """Seconds to sleep before attempt number ``attempt + 1``."""
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RetryPolicy):
            return NotImplemented
        return (self.max_attempts, self.backoff, self.max_backoff, self.statuses) == (
            other.max_attempts,
            other.backoff,
            other.max_backoff,
            other.statuses,
        )

    def __hash__(self) -> int:
        return hash((self.max_attempts, self.backoff, self.max_backoff, self.statuses))

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, backoff={self.backoff}, "
            f"max_backoff={self.max_backoff}, statuses={sorted(self.statuses)})"
        )


DEFAULT_RETRY = RetryPolicy()


class Endpoint(NamedTuple):
    """One service as a client sees it: where it is, which credential and timeouts to use."""

    base_url: str
    auth: AuthProvider | None
    connect_timeout: float
    read_timeout: float
    retry: RetryPolicy


class Timeouts(NamedTuple):
    """An attempt's timeouts, in seconds: each of connect and read (as the HTTP library takes
    them: read is per read), and ``attempt``, the bound on the whole attempt (connect, send,
    wait, read), which the drivers enforce however slowly a server drips its answer."""

    connect: float
    read: float
    attempt: float


class Call:
    """One HTTP request a flow wants sent (retries included), described without any I/O.

    ``path`` is appended to the endpoint's base URL as is (already encoded, query included).
    ``ok`` statuses are returned to the flow instead of raised. ``sink`` streams the body of a
    2xx answer into a local file (downloads). ``deadline`` (``time.monotonic()``) bounds every
    attempt together. ``secrets`` are scrubbed from whatever an error keeps of the answer.
    ``finish_on_cancel`` marks a call whose answer must not be lost to a cancelled task.
    """

    __slots__ = (
        "answer",
        "body",
        "content_type",
        "deadline",
        "endpoint",
        "finish_on_cancel",
        "headers",
        "method",
        "ok",
        "path",
        "read_timeout",
        "retry",
        "secrets",
        "session_id",
        "session_scoped",
        "sink",
    )

    def __init__(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | Multipart | None = None,
        content_type: str | None = None,
        read_timeout: float | None = None,
        retry: str | None = None,
        ok: frozenset[int] = frozenset(),
        session_id: str | None = None,
        session_scoped: bool = False,
        sink: Any = None,
        deadline: float | None = None,
        secrets: tuple[str, ...] = (),
        finish_on_cancel: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.content_type = content_type
        self.read_timeout = endpoint.read_timeout if read_timeout is None else read_timeout
        self.retry = retry or (IDEMPOTENT if method in ("GET", "DELETE") else ONCE)
        self.ok = ok
        self.session_id = session_id
        self.session_scoped = session_scoped
        self.sink = sink
        self.deadline = deadline
        self.secrets = secrets  # credentials sent other than as Authorization (a form field)
        # Its answer says what it created or deleted: a cancelled task waits for that answer
        # (see agentcube._drivers._async) so that nothing is lost between the server and the client.
        self.finish_on_cancel = finish_on_cancel
        self.answer: Reply | None = None  # set by the transport as soon as an answer arrives

    @property
    def url(self) -> str:
        return self.endpoint.base_url + self.path

    def request_headers(self) -> dict[str, str]:
        """The headers every transport sends (the credential is added at send time)."""
        headers = {"User-Agent": USER_AGENT}
        if self.headers:
            headers.update(self.headers)
        if isinstance(self.body, Multipart):
            headers["Content-Type"] = self.body.content_type
        elif self.content_type is not None:
            headers["Content-Type"] = self.content_type
        return headers

    def streams_file(self) -> bool:
        """True when the request or its answer is a file streamed in chunks (bounded per read
        only, since a large file is allowed to take long)."""
        return self.sink is not None or (
            isinstance(self.body, Multipart) and isinstance(self.body.source, FileRange)
        )

    def log_answer(self, status: int, started: float, attempt: int) -> None:
        """Log (at DEBUG) an answer that arrived ``started`` (``time.perf_counter()``)."""
        if http_logger.isEnabledFor(logging.DEBUG):
            http_logger.debug(
                "%s -> %d in %.1f ms (attempt %d)%s",
                self.describe(),
                status,
                (time.perf_counter() - started) * 1000,
                attempt,
                "; the body follows" if self.sink is not None and status < 300 else "",
            )

    def log_retry(self, attempt: int, why: str) -> None:
        http_logger.info("%s failed (%s), retrying (attempt %d)", self.describe(), why, attempt + 1)

    def describe(self) -> str:
        """``METHOD /path`` (no query: it may hold file names) for messages and logs."""
        return f"{self.method} {self.url.split('?', 1)[0]}"

    def timeouts(self) -> Timeouts:
        """The next attempt's connect and read timeouts and its bound in all.

        The bound is connect + read, and never past the deadline: the whole attempt (and the
        retries after it) ends by then, not each of its timeouts, shrunk to the time left.

        Raises:
            APITimeoutError: the deadline has passed.
        """
        connect, read = self.endpoint.connect_timeout, self.read_timeout
        if self.deadline is None:
            return Timeouts(connect, read, connect + read)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise APITimeoutError(f"{self.describe()}: no time left before the deadline")
        return Timeouts(min(connect, left), min(read, left), min(connect + read, left))

    def retry_pause(
        self,
        attempt: int,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        never_sent: bool = False,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None: do not retry.

        Without ``status`` the attempt failed with no answer (``never_sent`` when the
        connection could not even be opened).
        """
        policy = self.endpoint.retry
        if attempt >= policy.max_attempts:
            return None
        pause = policy.delay(attempt)
        if status is None:
            if not (never_sent or self.retry == IDEMPOTENT):
                return None
        elif status == TOO_MANY_REQUESTS and (headers is None or SESSION_HEADER not in headers):
            # Shed by the Router before any sandbox saw it: safe to send again, whatever it is.
            pause = max(pause, _retry_after(headers))
        elif not (self.retry == IDEMPOTENT and status in policy.statuses):
            return None
        if self.deadline is not None and time.monotonic() + pause >= self.deadline:
            return None
        return pause


def _retry_after(headers: Mapping[str, str] | None) -> float:
    value = headers.get("Retry-After") if headers is not None else None
    if value and value.strip().isdigit():
        seconds = float(value.strip())
        if seconds <= _MAX_RETRY_AFTER:
            return seconds
    return 0.0


class Local(NamedTuple):
    """A blocking local step a flow wants run (``fn(*args)``): in a thread under asyncio."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


class Reply:
    """An HTTP answer handed back to a flow: status, headers, the body read in full (empty
    when it was streamed to a sink), and the transport's own response object. For an error
    status, ``raw`` is a copy that holds no credential and ``secrets`` are the credentials that
    were sent (to scrub from messages)."""

    __slots__ = ("content", "headers", "raw", "secrets", "status")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        raw: Any,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.status = status
        self.headers = headers
        self.content = content
        self.raw = raw
        self.secrets = secrets

    def error(self, where: str, session_id: str | None = None) -> Exception:
        """The SDK error for this (error) answer."""
        return error_from_reply(
            where,
            self.status,
            self.headers,
            self.content,
            response=self.raw,
            session_id=session_id,
            secrets=self.secrets,
        )

    def json(self) -> Any:
        """The body as JSON; ValueError if it is not JSON (or nested absurdly deep)."""
        return parse_json(self.content, charset_of(self.headers))

    def json_text(self) -> str:
        """The body decoded as :meth:`json` decodes it (for a model to read)."""
        return decode_json_text(self.content, charset_of(self.headers))

    @property
    def text(self) -> str:
        return decode_text(self.content, charset_of(self.headers))


class Multipart:
    """A multipart/form-data body: text fields, then one file part from bytes or a file range.

    It has a length, so it is sent with a Content-Length, and can be produced again from the
    start if the request is re-sent. The transports stream the file range in chunks (and bytes
    too when a ``progress`` counts what was sent).
    """

    __slots__ = ("boundary", "head", "length", "progress", "source", "tail")

    def __init__(
        self,
        fields: Mapping[str, str],
        source: bytes | FileRange,
        boundary: str,
        progress: Progress | None = None,
    ) -> None:
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
            for key, value in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="upload"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        self.boundary = boundary
        self.head = b"".join(parts)
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.source = source
        self.progress = progress
        size = len(source) if isinstance(source, bytes) else source.length
        self.length = len(self.head) + size + len(self.tail)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"


class FileRange(NamedTuple):
    """``length`` bytes of the local file ``path`` from ``offset``."""

    path: str
    offset: int
    length: int


def encode_json(payload: Any) -> bytes:
    """Serialise a JSON body; InvalidArgumentError, before anything is sent, if it cannot be."""
    try:
        return dump_json(payload)
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise InvalidArgumentError(f"the payload cannot be sent as JSON: {exc}") from None


def connection_error(
    call: Call, *, timed_out: bool, reason: str, reached_server: bool
) -> APIConnectionError:
    """The error for an attempt that got no answer. ``reason`` must hold nothing secret."""
    where = call.describe()
    if call.session_id:
        where += f" (session {call.session_id})"
    error: APIConnectionError
    if timed_out:
        error = APITimeoutError(f"{where} timed out: {reason}")
    else:
        error = APIConnectionError(f"{where} failed: {reason}")
    error.reached_server = reached_server
    return error
