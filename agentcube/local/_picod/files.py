"""PicoD's file routes: ``POST api/files`` (JSON or multipart upload), ``GET api/files?path=``
(a listing) and ``GET api/files/*path`` (a download, served as ``http.ServeFile`` serves it).

Every path goes through the workspace (:mod:`.._sandbox.paths`), which answers as PicoD's
``sanitizePath`` does and never lets a file operation leave the workspace.
"""

from __future__ import annotations

import os
import stat

from .._go.binding import UPLOAD_FILE_REQUEST
from .._go.fileserver import serve_file
from .._go.gin import GoResponse
from .._go.multipart import MultipartForm
from .._go.stdlib import (
    GoTime,
    b64decode_std,
    errno_text,
    ext,
    file_mode_string,
    go_string,
    type_by_extension,
)
from .._sandbox.paths import MkdirError, OpenFailed, PathDenied, Workspace
from .context import PicodContext, bind_body

_FILE_CHUNK = 256 * 1024


def _parse_mode(text: str | None) -> int:
    """PicoD's ``parseFileMode``: octal, at most 0777, else 0644."""
    if not text:
        return 0o644
    try:
        if not all(c in "01234567" for c in text.lstrip("+")) or text.startswith("+"):
            raise ValueError(text)
        mode = int(text, 8)
    except ValueError:
        return 0o644
    if mode > 0o777:
        return 0o644
    return mode


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Files:
    """The handlers, over the session's workspace; multipart uploads spool to ``staging_dir``."""

    def __init__(self, workspace: Workspace, staging_dir: str | None) -> None:
        self.workspace = workspace
        self._staging = staging_dir

    # -- POST api/files --------------------------------------------------------------------------
    def upload(self, c: PicodContext) -> GoResponse:
        content_type = c.request.headers.get("Content-Type") or ""
        media = content_type.split(";", 1)[0].split(" ", 1)[0].strip()
        if media.startswith("multipart/form-data"):
            return self._upload_multipart(c, content_type)
        return self._upload_json(c)

    def _upload_json(self, c: PicodContext) -> GoResponse:
        body = bind_body(c, UPLOAD_FILE_REQUEST)
        if isinstance(body, GoResponse):
            return body
        user_path: str = body["path"]
        target = self._write_target(c, user_path)
        if isinstance(target, GoResponse):
            return target
        try:
            data = b64decode_std(body["content"])
        except ValueError as exc:
            return c.error(400, f"Invalid base64 content: {exc}")
        mode = _parse_mode(body["mode"])
        try:  # os.MkdirAll of its directory, then os.WriteFile
            fd, _ = self.workspace.create_file(target, user_path, mode)
        except PathDenied as exc:
            return c.error(400, str(exc))
        except MkdirError as exc:
            return c.error(500, f"Failed to create directory: {exc.args[0]}")
        except OSError as exc:
            return c.error(500, f"Failed to write file: open {target}: {errno_text(exc.errno)}")
        try:
            try:
                _write_all(fd, data)
            except OSError as exc:
                message = f"Failed to write file: write {target}: {errno_text(exc.errno)}"
                return c.error(500, message)
            return self._answer_file_info(c, target, fd)
        finally:
            os.close(fd)

    def _write_target(self, c: PicodContext, user_path: str) -> str | GoResponse:
        """Where an upload goes (PicoD's sanitizePath), or the 400 refusing it."""
        try:
            target = self.workspace.sanitize(user_path)
            self.workspace.writable(target, user_path)
        except PathDenied as exc:
            return c.error(400, str(exc))
        return target

    def _answer_file_info(self, c: PicodContext, target: str, fd: int) -> GoResponse:
        """The ``FileInfo`` answer, from the descriptor just written (not the path again)."""
        try:
            info = os.fstat(fd)
        except OSError as exc:
            return c.error(500, f"Failed to get file info: stat {target}: {errno_text(exc.errno)}")
        return c.json(
            200,
            {
                "path": self.workspace.relative(target),
                "size": info.st_size,
                "mode": file_mode_string(info.st_mode),
                "modified": GoTime(info.st_mtime_ns),
            },
        )

    def _upload_multipart(self, c: PicodContext, content_type: str) -> GoResponse:
        form = MultipartForm(self._staging)
        try:
            form.parse(c.request.body, content_type)
            user_path = form.value("path")
            if not user_path:
                return c.error(400, "Missing 'path' field")
            upload = form.file("file")
            if upload is None:
                return c.error(400, "Failed to get file: http: no such file")
            target = self._write_target(c, user_path)
            if isinstance(target, GoResponse):
                return target
            mode = _parse_mode(form.value("mode"))
            try:  # os.MkdirAll of its directory, then os.OpenFile
                fd, _ = self.workspace.create_file(target, user_path, mode)
            except PathDenied as exc:
                return c.error(400, str(exc))
            except MkdirError as exc:
                return c.error(500, f"Failed to create directory: {exc.args[0]}")
            except (OSError, ValueError):
                return c.error(500, "Failed to create destination file")
            try:
                try:
                    with open(upload, "rb") as source:
                        while chunk := source.read(_FILE_CHUNK):
                            _write_all(fd, chunk)
                except OSError:
                    return c.error(500, "Failed to save file content")
                return self._answer_file_info(c, target, fd)
            finally:
                os.close(fd)
        finally:
            form.cleanup()

    # -- GET api/files?path= ---------------------------------------------------------------------
    def list_files(self, c: PicodContext) -> GoResponse:
        user_path = c.request.query_first("path")
        if not user_path:
            return c.error(400, "Missing 'path' query parameter")
        try:
            target = self.workspace.sanitize(user_path)
        except PathDenied as exc:
            return c.error(400, str(exc))
        try:
            fd = self.workspace.open_directory(target)
        except FileNotFoundError:
            return c.error(404, "Directory not found")
        except OSError as exc:  # os.ReadDir opens with O_DIRECTORY: a file fails at the open
            return c.error(500, f"Failed to read directory: open {target}: {errno_text(exc.errno)}")
        listed: list[tuple[bytes, os.stat_result]] = []
        try:
            with os.scandir(fd) as scan:
                for entry in scan:
                    try:  # relative to the directory's descriptor, never following a symlink
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    listed.append((os.fsencode(entry.name), info))  # Go sorts by the bytes
        except OSError as exc:
            return c.error(
                500, f"Failed to read directory: readdirent {target}: {errno_text(exc.errno)}"
            )
        finally:
            os.close(fd)
        listed.sort(key=lambda item: item[0])
        files = [
            {
                "name": go_string(name),
                "size": info.st_size,
                "modified": GoTime(info.st_mtime_ns),
                "mode": file_mode_string(info.st_mode),
                "is_dir": stat.S_ISDIR(info.st_mode),
            }
            for name, info in listed
        ]
        return c.json(200, {"files": files})

    # -- GET api/files/*path ---------------------------------------------------------------------
    def download(self, c: PicodContext) -> GoResponse:
        param = c.params.get("path", "")
        if param == "":
            return c.error(400, "Missing file path")
        user_path = param[1:] if param.startswith("/") else param
        try:
            target = self.workspace.sanitize(user_path)
        except PathDenied as exc:
            return c.error(400, str(exc))
        opened: int | OpenFailed | None
        try:
            opened = self.workspace.open_file(target)
        except OpenFailed as exc:  # the stat would succeed; http.ServeFile's open fails
            opened = exc
        except FileNotFoundError:
            return c.error(404, "File not found")
        except OSError as exc:
            return c.error(500, f"Failed to get file info: stat {target}: {errno_text(exc.errno)}")
        if opened is None:
            return c.error(400, "Path is a directory, not a file")
        content_type = type_by_extension(ext(target)) or "application/octet-stream"
        c.headers.set("Content-Description", "File Transfer")
        c.headers.set("Content-Transfer-Encoding", "binary")
        c.headers.set("Content-Disposition", f'attachment; filename="{os.path.basename(target)}"')
        c.headers.set("Content-Type", content_type)
        return serve_file(c, opened)
