"""``os/exec`` as PicoD's ``exec.Command`` uses it: how argv[0] is found and how the
environment is deduplicated, with Go's error texts.
"""

from __future__ import annotations

import errno
import os
import stat

from .stdlib import go_quote


def look_path(name: str) -> tuple[str | None, str | None]:
    """``exec.Command``'s resolution of argv[0]: (path to run, start error text)."""

    def find_executable(path: str) -> int | None:
        try:
            info = os.stat(path)
        except OSError as exc:
            return exc.errno or errno.ENOENT
        except ValueError:
            return errno.EINVAL
        if stat.S_ISDIR(info.st_mode):
            return errno.EISDIR
        if os.access(path, os.X_OK, effective_ids=os.access in os.supports_effective_ids):
            return None
        return errno.EACCES

    if name == "":
        return None, "exec: no command"
    if os.path.basename(name) != name:
        return name, None  # a path: run as given
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if find_executable(candidate) is None:
            if not os.path.isabs(candidate):
                return candidate, (
                    f"exec: {go_quote(name)}: cannot run executable found relative to current "
                    "directory"
                )
            return candidate, None
    return None, f"exec: {go_quote(name)}: executable file not found in $PATH"


def dedup_env(entries: list[str]) -> tuple[dict[bytes, bytes], str | None]:
    """``exec.Cmd``'s environment: the last value of a key wins; NUL is refused."""
    error = None
    seen: dict[bytes, bytes] = {}
    for entry in reversed(entries):
        if "\x00" in entry:
            error = "exec: environment variable contains NUL"
            continue
        index = entry.find("=")
        if index == 0:
            index = entry.find("=", 1)
        if index < 0:
            continue
        key = entry[:index].encode("utf-8", "surrogateescape")
        if key in seen or b"=" in key:
            continue
        seen[key] = entry[index + 1 :].encode("utf-8", "surrogateescape")
    return dict(reversed(list(seen.items()))), error
