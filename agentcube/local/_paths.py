"""Where a user-supplied path may lead inside a workspace: the one place paths are resolved.

The rules and texts are PicoD's (``sanitizePath``, ``mkdirSafe``); :meth:`Workspace.writable`
adds the one check PicoD lacks (a write through a symlink that points outside is refused).
"""

from __future__ import annotations

import os
import stat

from ._go import clean, errno_text, rel

#: mode bits the sandbox applies as a umask, whatever this process's own umask is
UMASK = 0o022
DIR_MODE = 0o755


class PathDenied(Exception):
    """The path leaves the workspace; ``str()`` is PicoD's text."""


def _escapes(relative: str) -> bool:
    return relative == ".." or relative.startswith("../")


def eval_symlinks(path: str) -> str | None:
    """``filepath.EvalSymlinks``: the resolved path, or None when a component is missing."""
    try:
        return os.path.realpath(path, strict=True)
    except (OSError, ValueError):
        return None


def make_dirs(path: str) -> None:
    """``os.MkdirAll(path, 0755)`` under umask 022; OSError as Go's text in ``args[0]``."""
    try:
        info = os.stat(path)
    except OSError:
        info = None
    except ValueError:
        raise OSError(f"mkdir {path}: {errno_text(22)}") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            return
        raise OSError(f"mkdir {path}: {errno_text(20)}")
    index = len(path) - 1
    while index >= 0 and path[index] == "/":
        index -= 1
    while index >= 0 and path[index] != "/":
        index -= 1
    parent = path[: max(index, 0)]
    if parent:
        make_dirs(parent)
    try:
        os.mkdir(path, DIR_MODE)
    except ValueError:
        raise OSError(f"mkdir {path}: {errno_text(22)}") from None
    except OSError as exc:
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                return
        except OSError:
            pass
        raise OSError(f"mkdir {path}: {errno_text(exc.errno)}") from None
    try:
        os.chmod(path, DIR_MODE & ~UMASK)
    except OSError:
        pass


class Workspace:
    """A sandbox's workspace directory and PicoD's path rules for it."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def create(self) -> None:
        make_dirs(self.root)

    def _resolved_root(self) -> str:
        return clean(eval_symlinks(self.root) or self.root)

    def sanitize(self, user_path: str) -> str:
        """PicoD's ``sanitizePath``: the absolute path, or :class:`PathDenied`."""
        root = self._resolved_root()
        cleaned = clean(user_path)
        if cleaned.startswith("/"):
            cleaned = cleaned[1:]
        candidate = clean(root + "/" + cleaned)
        relative = rel(root, candidate)
        if _escapes(relative):
            raise PathDenied(
                f"access denied: path '{user_path}' escapes workspace jail "
                f"(relative path traversal: {relative})"
            )
        resolved = eval_symlinks(candidate)
        if resolved is not None:
            if _escapes(rel(root, resolved)):
                raise PathDenied(
                    f"access denied: resolved path '{resolved}' (from '{user_path}') escapes "
                    "workspace jail via symlink"
                )
            return resolved
        return candidate

    def mkdir_safe(self, path: str) -> None:
        """PicoD's ``mkdirSafe``: create ``path`` unless its existing part leaves the workspace.

        Raises :class:`PathDenied` or OSError (Go's text).
        """
        root = self._resolved_root()
        existing = path
        while True:
            if os.path.lexists(existing):
                resolved = eval_symlinks(existing)
                if resolved is None:
                    raise OSError(f'failed to resolve path "{existing}"')
                if _escapes(rel(root, resolved)):
                    raise PathDenied(
                        f'access denied: path "{path}" escapes workspace jail via symlink'
                    )
                break
            parent = os.path.dirname(existing)
            if parent == existing:
                break
            existing = parent
        make_dirs(path)

    def writable(self, path: str, user_path: str) -> None:
        """Refuse a write whose existing part (or dangling final link) leads outside.

        PicoD itself writes through such a link (``ln -s .. link``, upload ``link/x``); the
        local sandbox refuses with 400 instead. Raises :class:`PathDenied`.
        """
        root = self._resolved_root()
        try:
            resolved = os.path.realpath(path)  # resolves what exists, keeps the rest
        except (OSError, ValueError):
            return  # an impossible name: the write itself fails with Go's text
        if _escapes(rel(root, clean(resolved))):
            raise PathDenied(
                f"access denied: resolved path '{resolved}' (from '{user_path}') escapes "
                "workspace jail via symlink"
            )

    def relative(self, path: str) -> str:
        """The answer's ``path``: ``filepath.Rel(workspace, path)``."""
        return rel(self.root, path)
