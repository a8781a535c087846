"""``Request.ParseMultipartForm`` as PicoD's handler calls it: values in memory, files on disk.

Parsing uses werkzeug's sans-I/O decoder (imported on first use); what net/http would refuse
leaves the form empty, since gin ignores parse errors and the handler then finds no field.
"""

from __future__ import annotations

import os
import tempfile
from typing import IO, Any

from .gin import BodyReadError
from .stdlib import go_string

_READ_CHUNK = 64 * 1024


class MultipartForm:
    """``Request.ParseMultipartForm``: values in memory, files spooled to disk."""

    def __init__(self, staging_dir: str | None) -> None:
        self._staging = staging_dir
        self._values: list[tuple[str, str]] = []
        self._files: list[tuple[str, str]] = []
        self._temp: list[str] = []

    def value(self, name: str) -> str:
        for key, value in self._values:
            if key == name:
                return value
        return ""

    def file(self, name: str) -> str | None:
        for key, path in self._files:
            if key == name:
                return path
        return None

    def cleanup(self) -> None:
        for path in self._temp:
            try:
                os.unlink(path)
            except OSError:
                pass

    def parse(self, body: Any, content_type: str) -> None:
        """Parse the form; any error leaves it empty (gin ignores parse errors)."""
        from werkzeug.http import parse_options_header
        from werkzeug.sansio.multipart import (
            NEED_DATA,
            Data,
            Epilogue,
            Field,
            File,
            MultipartDecoder,
        )

        media, params = parse_options_header(content_type)
        boundary = params.get("boundary")
        if media != "multipart/form-data" or not boundary:
            self._drain(body)
            return
        decoder = MultipartDecoder(boundary.encode("latin-1", "replace"), max_form_memory_size=None)
        values: list[tuple[str, str]] = []
        files: list[tuple[str, str]] = []
        current: tuple[str, str] | None = None  # ("value" | "file" | "skip", name)
        value_parts: list[bytes] = []
        sink: IO[bytes] | None = None
        finished = False
        try:
            while True:
                chunk = body.read(_READ_CHUNK)
                decoder.receive_data(chunk if chunk else None)
                while True:
                    event = decoder.next_event()
                    if event is NEED_DATA:
                        break
                    if isinstance(event, (Field, File)):
                        disposition = (event.headers.get("Content-Disposition") or "").split(";")[0]
                        filename = event.filename if isinstance(event, File) else ""
                        if not event.name or disposition.strip().lower() != "form-data":
                            current = ("skip", "")
                        elif filename:
                            fd, path = tempfile.mkstemp(prefix="multipart-", dir=self._staging)
                            self._temp.append(path)
                            sink = os.fdopen(fd, "wb")
                            current = ("file", event.name)
                            files.append((event.name, path))
                        else:
                            current = ("value", event.name)
                            value_parts = []
                    elif isinstance(event, Data):
                        if current is not None and current[0] == "file" and sink is not None:
                            sink.write(event.data)
                        elif current is not None and current[0] == "value":
                            value_parts.append(event.data)
                        if not event.more_data:
                            if current is not None and current[0] == "value":
                                values.append((current[1], go_string(b"".join(value_parts))))
                            if sink is not None:
                                sink.close()
                                sink = None
                            current = None
                    elif isinstance(event, Epilogue):
                        finished = True
                        break
                if finished or not chunk:
                    break
        except (ValueError, BodyReadError, OSError):
            self._drain(body)
            return
        except Exception as exc:  # werkzeug's RequestEntityTooLarge and the like
            if type(exc).__name__ in ("RequestEntityTooLarge",):
                self._drain(body)
                return
            raise
        finally:
            if sink is not None:
                sink.close()
        if not finished:
            return
        self._values = values
        self._files = files

    @staticmethod
    def _drain(body: Any) -> None:
        try:
            while body.read(_READ_CHUNK):
                pass
        except BodyReadError:
            pass
