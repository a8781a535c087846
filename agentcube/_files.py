"""Local files for transfers: where a download is written, and the sizes of uploads.

Every function here blocks on the disk: the flows ask for them as ``Local`` steps (run in a
thread under asyncio), and the transports call the sink's methods (``open``, ``write``,
``finish``, ``abort``) from a thread too when async.
"""

from __future__ import annotations

import os

from .exceptions import APIConnectionError


def file_size(path: str) -> int:
    """Size of a local regular file; FileNotFoundError / IsADirectoryError otherwise."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"Local file not found: {path}") from None
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a file")
    return size


class FileSink:
    """A download's destination: a temporary file beside ``target`` that replaces it only once
    the whole body has arrived and matched its length. A failed download leaves no partial
    file, and an existing file at ``target`` untouched.
    """

    __slots__ = ("_directory", "_file", "_partial", "_written", "remote", "session_id", "target")

    def __init__(self, target: str, remote: str, session_id: str | None) -> None:
        self.target = target
        self._directory = os.path.dirname(target)
        self.remote = remote
        self.session_id = session_id
        self._file: object = None
        self._partial: str | None = None
        self._written = 0

    def prepare(self) -> None:
        """Before anything is sent: refuse a directory as the target."""
        if os.path.isdir(self.target):
            raise IsADirectoryError(f"local_path is a directory: {self.target}")

    def open(self) -> None:
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
        self._written = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)  # type: ignore[attr-defined]
        self._written += len(chunk)

    def finish(self, wire_bytes: int, content_length: str | None) -> None:
        """Check the transfer is whole (bytes on the wire against ``Content-Length``, which is
        the compressed size when the answer was compressed), then move the file into place."""
        try:
            self._file.close()  # type: ignore[attr-defined]
            if content_length is not None and content_length.strip().isdigit():
                expected = int(content_length)
                if wire_bytes != expected:
                    raise self.broken(f"truncated: {wire_bytes} of {expected} bytes arrived")
            assert self._partial is not None
            os.replace(self._partial, self.target)
            self._partial = None
        except BaseException:
            self.abort()
            raise

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

    def broken(self, reason: str) -> APIConnectionError:
        where = f" (session {self.session_id})" if self.session_id else ""
        return APIConnectionError(
            f"download of {self.remote!r}{where} broke off after {self._written} bytes: {reason}"
        )
