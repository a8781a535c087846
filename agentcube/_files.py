"""Local files for transfers: where a download is written, and the sizes of uploads.

Every function here blocks on the disk: the flows ask for them as ``Local`` steps (run in a
thread under asyncio), and the transports call the sink's methods (``open``, ``write``,
``finish``, ``abort``) from a thread too when async.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

from .exceptions import APIConnectionError, DataPlaneError

http_logger = logging.getLogger("agentcube._http")


class Progress:
    """A transfer's bytes so far, reported to a caller's ``on_progress(done, total)`` after
    every chunk (``total`` None when unknown). One object can span several requests (the parts
    of an upload)."""

    __slots__ = ("_base", "callback", "done", "total")

    def __init__(self, callback: Callable[[int, int | None], object], total: int | None) -> None:
        self.callback = callback
        self.done = 0
        self.total = total
        self._base = 0

    def restart(self) -> None:
        """A request is sent again from its start: forget what it counted the last time."""
        self.done = self._base

    def next_request(self) -> None:
        """What was counted so far is done; the next request counts on from there."""
        self._base = self.done

    def advance(self, count: int) -> None:
        self.done += count
        self.callback(self.done, self.total)


def file_size(path: str) -> int:
    """Size of a local regular file; FileNotFoundError / IsADirectoryError otherwise."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"Local file not found: {path}") from None
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a file")
    return size


class _Sink:
    """What both sinks share: the bytes received, the caller's progress, the broken-off error.

    ``open(headers)`` is called once the answer is a success (its headers give the total for
    the progress when the body is not compressed), ``write`` per chunk, then ``finish`` or
    ``abort``.
    """

    __slots__ = ("_opened", "_progress", "_written", "remote", "session_id")

    def __init__(
        self,
        remote: str,
        session_id: str | None,
        on_progress: Callable[[int, int | None], object] | None,
    ) -> None:
        self.remote = remote
        self.session_id = session_id
        self._progress = None if on_progress is None else Progress(on_progress, None)
        self._written = 0
        self._opened = 0.0

    @property
    def counts_progress(self) -> bool:
        return self._progress is not None

    def _start(self, headers: Mapping[str, str] | None) -> None:
        self._written = 0
        self._opened = time.perf_counter()
        if self._progress is not None:
            self._progress.done = 0
            self._progress.total = _plain_length(headers)

    def _count(self, chunk: bytes) -> None:
        self._written += len(chunk)
        if self._progress is not None:
            self._progress.advance(len(chunk))

    def _log_done(self) -> None:
        http_logger.debug(
            "body of %r (session %s): %d bytes in %.1f ms",
            self.remote,
            self.session_id,
            self._written,
            (time.perf_counter() - self._opened) * 1000,
        )

    def broken(self, reason: str) -> APIConnectionError:
        where = f" (session {self.session_id})" if self.session_id else ""
        return APIConnectionError(
            f"download of {self.remote!r}{where} broke off after {self._written} bytes: {reason}"
        )


def _plain_length(headers: Mapping[str, str] | None) -> int | None:
    """The body's length as the caller receives it, when the headers say it."""
    if headers is None or headers.get("Content-Encoding", "identity") != "identity":
        return None
    length = headers.get("Content-Length")
    return int(length) if length is not None and length.strip().isdigit() else None


def _check_length(wire_bytes: int, content_length: str | None) -> str | None:
    """Why the transfer is not whole (bytes on the wire against ``Content-Length``, which is
    the compressed size when the answer was compressed), or None."""
    if content_length is not None and content_length.strip().isdigit():
        expected = int(content_length)
        if wire_bytes != expected:
            return f"truncated: {wire_bytes} of {expected} bytes arrived"
    return None


class FileSink(_Sink):
    """A download's destination: a temporary file beside ``target`` that replaces it only once
    the whole body has arrived and matched its length. A failed download leaves no partial
    file, and an existing file at ``target`` untouched.
    """

    __slots__ = ("_directory", "_file", "_partial", "target")

    def __init__(
        self,
        target: str,
        remote: str,
        session_id: str | None,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> None:
        super().__init__(remote, session_id, on_progress)
        self.target = target
        self._directory = os.path.dirname(target)
        self._file: object = None
        self._partial: str | None = None

    def prepare(self) -> None:
        """Before anything is sent: refuse a directory as the target."""
        if os.path.isdir(self.target):
            raise IsADirectoryError(f"local_path is a directory: {self.target}")

    def open(self, headers: Mapping[str, str] | None = None) -> None:
        """The answer is a success: create the temporary file, and missing directories first
        if there are any."""
        # Created like any new file (0o666 less the umask), under a name nobody else uses.
        partial = os.path.join(self._directory, f".agentcube-download-{os.urandom(8).hex()}")
        try:
            self._file = open(partial, "xb")
        except (FileNotFoundError, NotADirectoryError):
            # makedirs creates what is missing, or names the file that is in the way.
            os.makedirs(self._directory, exist_ok=True)
            self._file = open(partial, "xb")
        self._partial = partial
        self._start(headers)

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)  # type: ignore[attr-defined]
        self._count(chunk)

    def finish(self, wire_bytes: int, content_length: str | None) -> None:
        """Check the transfer is whole, then move the file into place."""
        try:
            self._file.close()  # type: ignore[attr-defined]
            problem = _check_length(wire_bytes, content_length)
            if problem is not None:
                raise self.broken(problem)
            assert self._partial is not None
            os.replace(self._partial, self.target)
            self._partial = None
        except BaseException:
            self.abort()
            raise
        self._log_done()

    def abort(self) -> None:
        if self._file is not None:
            try:
                self._file.close()  # type: ignore[attr-defined]
            except OSError:
                pass
        if self._partial is not None:
            try:
                os.unlink(self._partial)
            except OSError:
                pass
            self._partial = None


class MemorySink(_Sink):
    """A small file read into memory (``read_file``), refused once it passes ``limit`` bytes;
    :attr:`data` holds it once whole."""

    __slots__ = ("_chunks", "data", "limit")

    def __init__(
        self,
        remote: str,
        session_id: str | None,
        limit: int,
        on_progress: Callable[[int, int | None], object] | None = None,
    ) -> None:
        super().__init__(remote, session_id, on_progress)
        self.limit = limit
        self._chunks: list[bytes] = []
        self.data: bytes | None = None

    def prepare(self) -> None:
        """Nothing to check before sending."""

    def open(self, headers: Mapping[str, str] | None = None) -> None:
        self._chunks = []
        self._start(headers)
        size = _plain_length(headers)
        if size is not None and size > self.limit:
            raise self._too_large(f"{size} bytes")

    def write(self, chunk: bytes) -> None:
        if self._written + len(chunk) > self.limit:
            self._chunks = []
            raise self._too_large(f"more than {self.limit} bytes")
        self._chunks.append(chunk)
        self._count(chunk)

    def finish(self, wire_bytes: int, content_length: str | None) -> None:
        problem = _check_length(wire_bytes, content_length)
        if problem is not None:
            self.abort()
            raise self.broken(problem)
        self.data = b"".join(self._chunks)
        self._chunks = []
        self._log_done()

    def abort(self) -> None:
        self._chunks = []

    def _too_large(self, size: str) -> DataPlaneError:
        where = f" (session {self.session_id})" if self.session_id else ""
        return DataPlaneError(
            f"{self.remote!r}{where} is {size}, over read_file's max_bytes={self.limit}: pass "
            "a larger max_bytes, or use download_file to stream it to disk"
        )
