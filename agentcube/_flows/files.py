"""Files in a code-interpreter sandbox: upload (one ``POST api/files``, JSON or multipart, or parts
assembled in the sandbox), write, download (``GET api/files/<path>``) and list
(``GET api/files?path=DIR``), with the shell programs that assemble parts and link files."""

from __future__ import annotations

import base64
import os
import posixpath
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .. import _files
from .._config import (
    check_max_bytes,
    check_mode,
    check_part_size,
    check_progress,
    check_text,
    workspace_path,
)
from .._protocol import Call, FileRange, Flow, Local, Multipart, Reply, encode_json
from ..exceptions import DataPlaneError, InvalidArgumentError
from ._common import RouterTarget, logger, read_answer
from ._go import go_mode_string, parse_mode
from .commands import clean_up, run_checked

if TYPE_CHECKING:
    from ..models import FileInfo

_REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Content up to this size goes as PicoD's JSON body (base64), which upstream's SDK sends too;
# larger content and empty files (the JSON route refuses empty content) as multipart, which
# streams. The local PicoD reads the small JSON body faster (1 KiB: 1.7 ms against 2.6 ms),
# multipart wins above about 100 KiB, and base64 adds a third to the bytes on the wire.
JSON_UPLOAD_LIMIT = 16 * 1024

# Joins the parts (in name order) into a temporary file beside the target, checks its size,
# sets the mode, and renames it over the target: the target is whole or untouched. The parts
# and the temporary file are removed whatever happens. Arguments: the parts' directory, the
# temporary file, the target, the size in bytes, the mode (octal, or empty).
ASSEMBLE = (
    'parts=$1 tmp=$2 dst=$3 size=$4 mode=$5; trap \'rm -rf -- "$parts" "$tmp"\' EXIT; '
    'if [ -d "$dst" ]; then echo "cannot write $dst: is a directory" >&2; exit 1; fi; '
    'for p in "$parts"/*; do cat -- "$p" || exit 1; done >"$tmp" || exit 1; '
    'n=$(($(wc -c <"$tmp"))); if [ "$n" -ne "$size" ]; then '
    'echo "assembled $n of $size bytes" >&2; exit 1; fi; '
    'if [ -n "$mode" ]; then chmod "$mode" "$tmp" || exit 1; fi; '
    'mv -f -- "$tmp" "$dst"'
)
# Downloads ask for gzip only for names that say text. The sandbox compresses whatever a client
# accepts gzip for, at about 50 to 100 MB/s of input, so compression pays only for text over a
# link slower than that; binary data gains nothing (on the local server a 100 MB random file
# took 2.0 s with gzip and 0.06 s without, 100 MB of text 1.2 s and 0.07 s). ``identity`` has
# to be said: the Router asks the sandbox for gzip itself when the client names no encoding.
TEXT_SUFFIXES = frozenset(
    ".txt .text .csv .tsv .json .jsonl .ndjson .xml .html .htm .md .rst .log .py .ipynb .js .ts "
    ".css .yaml .yml .toml .ini .cfg .conf .sql .sh .c .h .cpp .java .go .rs .rb .svg .tex".split()
)
_IDENTITY = {"Accept-Encoding": "identity"}

# Links (or, across file systems, copies) a file to a second name. Arguments: file, new name.
LINK = 'ln -f -- "$1" "$2" 2>/dev/null || cp -- "$1" "$2"'


def write_file(
    target: RouterTarget,
    content: object,
    remote_path: str,
    mode: object = None,
    part_size: object = None,
    on_progress: object = None,
) -> Flow[dict[str, Any]]:
    """Write text (UTF-8) or bytes to ``remote_path`` in the sandbox (see :func:`upload`)."""
    if isinstance(content, str):
        check_text(content, "content")
        data = content.encode("utf-8")
    elif isinstance(content, (bytes, bytearray, memoryview)):
        data = bytes(content)
    else:
        raise InvalidArgumentError("content must be str or bytes")
    return (yield from upload(target, data, remote_path, mode, part_size, on_progress))


def upload_file(
    target: RouterTarget,
    local_path: str,
    remote_path: str,
    mode: object = None,
    part_size: object = None,
    on_progress: object = None,
) -> Flow[dict[str, Any]]:
    """Stream a local file to ``remote_path`` (see :func:`upload`); FileNotFoundError before
    anything is sent when it does not exist."""
    path = os.fspath(local_path)
    if not isinstance(path, str):
        raise InvalidArgumentError("local_path must be a str path")
    remote = workspace_path(remote_path, allow_root=False)
    size: int = yield Local(_files.file_size, (path,))
    source = FileRange(path, 0, size)
    return (yield from upload(target, source, remote, mode, part_size, on_progress))


def upload(
    target: RouterTarget,
    source: bytes | FileRange,
    remote_path: str,
    mode: object = None,
    part_size: object = None,
    on_progress: object = None,
) -> Flow[dict[str, Any]]:
    """Put ``source`` at ``remote_path``: one ``POST api/files`` (JSON up to
    :data:`JSON_UPLOAD_LIMIT`, else multipart) up to ``part_size`` bytes (8 MiB), else in parts
    assembled in the sandbox (see :func:`_upload_in_parts`).

    A ``mode`` asked for holds also over an existing file (the sandbox applies it only when it
    creates the file): when the answer shows another mode, one ``chmod`` follows. Without a
    mode, a new file gets the sandbox's default (0644 less its umask) and an existing file
    keeps its mode. Returns the file's info as the sandbox answered it, as a dict (the public
    API's :class:`~agentcube.models.FileInfo` is built from it by :func:`file_info`).
    ``on_progress(done, total)`` is called after each chunk of the file sent.
    """
    remote = workspace_path(remote_path, allow_root=False)
    bits = check_mode(mode)
    limit = check_part_size(part_size)
    callback = check_progress(on_progress)
    size = len(source) if isinstance(source, bytes) else source.length
    progress = None if callback is None else _files.Progress(callback, size)
    if size > limit:
        return (yield from _upload_in_parts(target, source, size, remote, bits, limit, progress))
    info = yield from _upload_one(target, source, remote, bits, progress)
    if bits is not None and parse_mode(info.get("mode")) != bits:
        yield from run_checked(
            target,
            ["chmod", f"{bits:o}", "./" + (info.get("path") or remote)],
            f"{remote_path!r} was written but its mode could not be set",
        )
        info["mode"] = go_mode_string(bits)
    return info


def _upload_one(
    target: RouterTarget,
    source: bytes | FileRange,
    remote: str,
    bits: int | None,
    progress: _files.Progress | None = None,
) -> Flow[dict[str, Any]]:
    fields = {"path": remote, "mode": f"{0o644 if bits is None else bits & 0o777:04o}"}
    call: Call
    if progress is not None:  # multipart: the body that reports its bytes as they go
        progress.next_request()
        body = Multipart(fields, source, secrets.token_hex(16), progress)
        call = target.call("POST", "api/files", body=body)
    elif isinstance(source, bytes) and 0 < len(source) <= JSON_UPLOAD_LIMIT:
        fields["content"] = base64.b64encode(source).decode("ascii")
        call = target.call(
            "POST", "api/files", body=encode_json(fields), content_type="application/json"
        )
    else:
        call = target.call(
            "POST", "api/files", body=Multipart(fields, source, secrets.token_hex(16))
        )
    reply = yield call
    return parse_file_info(reply, target.session_id)


def _upload_in_parts(
    target: RouterTarget,
    source: bytes | FileRange,
    size: int,
    remote: str,
    bits: int | None,
    part_size: int,
    progress: _files.Progress | None = None,
) -> Flow[dict[str, Any]]:
    """Upload ``source`` as parts under a hidden directory beside the target, then assemble
    them into the target in the sandbox, atomically (``ceil(size / part_size) + 1`` requests).
    A failure removes the parts; no half file ever appears at the target."""
    parent = posixpath.dirname(remote)
    stem = posixpath.join(parent, f".agentcube-upload-{secrets.token_hex(8)}")
    parts_dir, tmp = "./" + stem, f"./{stem}.tmp"
    count = -(-size // part_size)
    started = time.perf_counter()
    try:
        for index, offset in enumerate(range(0, size, part_size)):
            length = min(part_size, size - offset)
            chunk: bytes | FileRange
            if isinstance(source, bytes):
                chunk = source[offset : offset + length]
            else:
                chunk = FileRange(source.path, source.offset + offset, length)
            logger.debug("upload of %r: part %d/%d, %s", remote, index + 1, count, _mib(length))
            yield from _upload_one(target, chunk, f"{stem}/{index:08d}", None, progress)
        mode = "" if bits is None else f"{bits:o}"
        yield from run_checked(
            target,
            ["sh", "-c", ASSEMBLE, "sh", parts_dir, tmp, "./" + remote, str(size), mode],
            f"upload of {remote!r} could not be assembled in the sandbox",
        )
        logger.debug(
            "upload of %r: %s in %d parts, assembled, in %.2f s",
            remote,
            _mib(size),
            count,
            time.perf_counter() - started,
        )
    except GeneratorExit:
        raise
    except BaseException:
        yield from clean_up(target, ["rm", "-rf", "--", parts_dir, tmp], f"the parts of {remote!r}")
        raise
    return {"path": remote, "size": size, "mode": None if bits is None else go_mode_string(bits)}


def _usual_file_info(body: dict[str, Any]) -> bool:
    """A string path, an int size and a string or null mode: read as is, no model built."""
    mode = body.get("mode")
    return (
        type(body.get("path", "")) is str
        and type(body.get("size", 0)) is int
        and (mode is None or type(mode) is str)
    )


def parse_file_info(reply: Reply, session_id: str | None) -> dict[str, Any]:
    """The answer of ``POST api/files`` as a dict, checked as :class:`~agentcube.models.FileInfo`
    checks it (the model is built only when the answer has an unusual shape)."""
    return read_answer(reply, "FileInfo", _usual_file_info, "api/files", session_id)


def file_info(info: dict[str, Any]) -> FileInfo:
    """The :class:`~agentcube.models.FileInfo` of a checked file-info dict, for the public API
    that returns one."""
    from ..models import FileInfo

    return FileInfo.model_validate(info)


def download_file(
    target: RouterTarget, remote_path: str, local_path: str, on_progress: object = None
) -> Flow[None]:
    """Stream ``remote_path`` into ``local_path`` (see :class:`agentcube._files.FileSink`).

    ``on_progress(done, total)`` is called after each chunk received (``total`` None when the
    answer does not say its size).
    """
    local = os.fspath(local_path)
    if not isinstance(local, str):
        raise InvalidArgumentError("local_path must be a str path")
    callback = check_progress(on_progress)
    sink = _files.FileSink(os.path.abspath(local), remote_path, target.session_id, callback)
    yield from _fetch(target, remote_path, sink)


def read_file(
    target: RouterTarget,
    remote_path: str,
    text: bool,
    max_bytes: object,
    on_progress: object = None,
) -> Flow[bytes | str]:
    """The content of ``remote_path`` (UTF-8 text with ``text``), streamed into memory and
    refused (DataPlaneError) past ``max_bytes``; whole or not at all, as a download (see
    :func:`download_file`)."""
    limit = check_max_bytes(max_bytes)
    sink = _files.MemorySink(remote_path, target.session_id, limit, check_progress(on_progress))
    yield from _fetch(target, remote_path, sink)
    assert sink.data is not None
    return sink.data.decode("utf-8") if text else sink.data


def _fetch(
    target: RouterTarget, remote_path: str, sink: _files.FileSink | _files.MemorySink
) -> Flow[None]:
    """``GET api/files/<path>`` into ``sink``.

    The path is cleaned first (the sandbox's file server refuses any ``..`` element). The file
    server redirects every ``.../index.html`` to its directory; on a redirect the file is
    linked to a temporary name beside it (:data:`LINK`), fetched under that name, and the link
    removed. Only a name ending as text (:data:`TEXT_SUFFIXES`) is asked for gzip.
    """
    remote = workspace_path(remote_path, allow_root=False)
    yield Local(sink.prepare)
    reply = yield _download_call(target, remote, sink)
    if reply.status not in _REDIRECTS:
        return None
    alias = posixpath.join(posixpath.dirname(remote), f".agentcube-download-{secrets.token_hex(8)}")
    yield from run_checked(
        target,
        ["sh", "-c", LINK, "sh", "./" + remote, "./" + alias],
        f"{remote_path!r} could not be prepared for download",
    )
    try:
        reply = yield _download_call(target, alias, sink)
    except GeneratorExit:
        raise
    except BaseException:
        yield from clean_up(target, ["rm", "-f", "--", "./" + alias], f"the link to {remote!r}")
        raise
    yield from clean_up(target, ["rm", "-f", "--", "./" + alias], f"the link to {remote!r}")
    if reply.status in _REDIRECTS:
        raise DataPlaneError(f"the sandbox redirected the download of {remote_path!r} twice")
    return None


def _download_call(
    target: RouterTarget, remote: str, sink: _files.FileSink | _files.MemorySink
) -> Call:
    encoded = "/".join(quote(segment, safe="") for segment in remote.split("/"))
    # gzip only for text; uncompressed also when progress is asked for, so that the answer
    # says its size and the progress has a total
    text = posixpath.splitext(remote)[1].lower() in TEXT_SUFFIXES
    headers = None if text and not sink.counts_progress else _IDENTITY
    return target.call("GET", "api/files/" + encoded, headers, sink=sink, ok=_REDIRECTS)


def list_files(target: RouterTarget, path: str = ".") -> Flow[list[dict[str, Any]]]:
    """``GET api/files?path=DIR``: one dict per entry, as the sandbox sends it (``name``,
    ``size``, ``modified``, ``mode``, ``is_dir``)."""
    clean = workspace_path(path, "path")
    reply = yield target.call("GET", "api/files?path=" + quote(clean, safe="/"))
    try:
        body = reply.json()
    except ValueError:
        body = None
    files = body.get("files") if isinstance(body, dict) else ()
    if files is None:  # an empty directory, as Go writes a nil slice
        files = []
    if not isinstance(files, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in files
    ):
        raise DataPlaneError(
            f"api/files answered an invalid listing for {path!r} (session {target.session_id})"
        )
    return files


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
