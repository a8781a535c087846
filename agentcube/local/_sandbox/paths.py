"""Where a user-supplied path may lead inside a workspace: the one place paths are resolved.

Two layers, and only the second one lets anything happen:

* **PicoD's answers.** :meth:`Workspace.sanitize`, :meth:`Workspace.writable` and the check in
  :meth:`Workspace.mkdir_safe` reproduce from path strings what PicoD says (``sanitizePath``,
  ``mkdirSafe``, their texts, the path an answer quotes). They may only refuse; the local
  sandbox adds one refusal PicoD lacks (a write through a symlink that points outside).
* **The file operations.** Every upload write, ``MkdirAll`` of parents or of a working
  directory, directory listing, download open and the stat for an answer goes through
  :class:`_Walker`: it starts from a directory handle on the workspace root, opened when the
  workspace was created and held for its lifetime, and walks the path one component at a time.
  A directory is opened with ``O_NOFOLLOW|O_DIRECTORY`` relative to the handle before it (never
  following a symlink implicitly); a symlink is read (``readlinkat``) and its target walked from
  the right handle: a relative target from the link's own directory, ``..`` by dropping a
  handle, an absolute target by matching it against the workspace's resolved path and
  restarting from the root handle. Any step that would leave the root handle (``..`` above it,
  an absolute target elsewhere) is refused: the operation does not happen and the answer is
  PicoD's ``access denied`` 400 (or, where PicoD itself would look outside and find nothing,
  its "not found"). The final component is opened with ``O_NOFOLLOW`` too (a symlink there is
  read and walked the same way), and answers are made from the opened descriptor
  (``fstat``, ``fdopendir`` with ``fstatat`` per entry), never from the path again. There is
  one walk for every kernel (no ``openat2``), so one code path decides everywhere. Going one
  component at a time, the walk never meets the kernel's whole-path limit, which PicoD's
  calls on full path strings do: it applies ``PATH_MAX`` itself (a stat or open of a path that
  long fails at once, ``MkdirAll`` at the first directory that reaches it).

So a command that swaps a directory for a symlink between the check and the operation cannot
make an operation read, list or write outside the workspace: a check made on strings that the
walk then contradicts only changes which refusal is answered.

Deletion: operations on a workspace hold it open (:meth:`Workspace._operation`); deleting the
session refuses new ones, waits up to ``CLOSE_WAIT_SECONDS`` for those in flight, then removes
the tree (only if the path still names the directory of the root handle). A request that
passed the "session exists" check after that still cannot re-create the workspace: it creates
relative to the root handle, and the kernel refuses to create anything in a removed directory
(if the wait ran out, the last operation to finish removes the tree again).

What remains:

* A directory the walk has already opened (a handle it holds) can be renamed by a command to
  a place outside the workspace while the operation runs; the operation then happens in that
  directory, outside. This needs the command to move a directory out of its own workspace,
  which it can always do anyway (commands are not isolated); the workspace root itself moved
  elsewhere is likewise still the session's workspace for the file API.
* ``working_dir`` is checked and created this way, but the command's ``chdir`` uses the path
  string, as PicoD's ``exec.Cmd.Dir`` does (a command can ``cd`` anywhere in any case).
* An absolute symlink target is matched against the workspace's resolved path without
  resolving symlinks outside the workspace: a target that reaches the workspace through an
  outside symlink (``/var/...`` when the workspace is under ``/private/var``) or that passes
  outside and comes back (``/elsewhere/../workspace/x``) is refused, where PicoD follows it.
* Up to 40 symlinks are followed in one operation (the kernel's limit; ``ELOOP`` after).
* What a command puts into the workspace is inside by definition: a hard link to an outside
  file it may link, or a mount, is served like any other file.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .._go.stdlib import clean, errno_text, rel

logger = logging.getLogger(__name__)

#: mode bits the sandbox applies as a umask, whatever this process's own umask is
UMASK = 0o022
DIR_MODE = 0o755
#: how long deleting a session waits for file operations that are still running
CLOSE_WAIT_SECONDS = 5.0

_O_PATH = getattr(os, "O_PATH", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
#: a directory to walk through (O_PATH on Linux: search permission is enough, as for a path)
_SEARCH = (_O_PATH or os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LIST = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: O_NONBLOCK: a FIFO does not hold the request until a writer comes
_READ = os.O_RDONLY | os.O_NOFOLLOW | _O_NONBLOCK | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TRUNCATE = os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
#: what opening a symlink with O_NOFOLLOW answers (ELOOP; EMLINK/EFTYPE on some BSDs)
_LINK_ERRNOS = frozenset(
    code
    for code in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK, getattr(errno, "EFTYPE", None))
    if code is not None
)
_MAX_LINKS = 40
_MAX_RETRIES = 64
#: the kernel's limit on a whole path, its NUL included: Go hands it the full path string
PATH_MAX = 4096

T = TypeVar("T")


class PathDenied(Exception):
    """The path leaves the workspace; ``str()`` is PicoD's text."""


class WorkspaceGone(Exception):
    """The workspace was deleted (its session ended): no operation may start."""


class MkdirError(OSError):
    """``os.MkdirAll`` failed; ``args[0]`` is Go's text (``mkdir PATH: ERRNO TEXT``)."""


class OpenFailed(OSError):
    """A download's final open failed after its stat would have succeeded."""


def _escapes(relative: str) -> bool:
    return relative == ".." or relative.startswith("../")


def eval_symlinks(path: str) -> str | None:
    """``filepath.EvalSymlinks``: the resolved path, or None when a component is missing."""
    try:
        return os.path.realpath(path, strict=True)
    except (OSError, ValueError):
        return None


def make_dirs(path: str) -> None:
    """``os.MkdirAll(path, 0755)`` under umask 022 on path strings (the workspace root only)."""
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


def rmtree(path: str) -> None:
    """Remove a tree, opening up directories without write/exec permission on the way."""

    def retry(func: Callable[..., Any], failed: str, _error: object) -> None:
        try:  # a directory without write/exec permission: open it up and retry once
            os.chmod(os.path.dirname(failed), 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
            func(failed)
        except OSError:
            logger.debug("could not remove %s", failed, exc_info=True)

    if not os.path.lexists(path):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)


# -- the walk ------------------------------------------------------------------------------------


class _Escape(Exception):
    """The walk would leave the workspace; ``path`` is where it was heading."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class _Follow:
    """The final component is a symlink: walk on through ``target``."""

    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target


def _byte_length(text: str) -> int:
    try:
        return len(os.fsencode(text))
    except UnicodeError:
        return len(text.encode("utf-8", "surrogatepass"))


def _too_long(path: str) -> bool:
    """Whether the kernel refuses ``path`` as a whole (ENAMETOOLONG); a NUL fails before."""
    return "\x00" not in path and _byte_length(path) >= PATH_MAX


def _name_too_long() -> OSError:
    return OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))


def _readlink(name: str, dir_fd: int) -> str | None:
    """The target of the symlink ``name`` in ``dir_fd``, or None when it is not a symlink."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None


def _fsname(name: str) -> str:
    """Refuse what the kernel cannot take as a name, as Go's syscalls do (EINVAL)."""
    if "\x00" in name:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    try:
        os.fsencode(name)
    except UnicodeError:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL)) from None
    return name


#: one pending step: (name, index of the path component it came from, reached through a link)
_Step = tuple[str, int, bool]


class _Walker:
    """Directory handles from the workspace root down to the current directory."""

    def __init__(self, root_fd: int, root: str, parts: list[str]) -> None:
        self.root_fd = root_fd
        self.root = root
        self.root_parts = [part for part in root.split("/") if part]
        self.parts = parts
        self.fds: list[int] = []
        self.names: list[str] = []
        self.links = 0

    @property
    def fd(self) -> int:
        return self.fds[-1] if self.fds else self.root_fd

    def prefix(self, index: int) -> str:
        """Go's text path for component ``index`` of the requested path."""
        return "/".join([self.root, *self.parts[: index + 1]])

    def push(self, name: str, fd: int) -> None:
        self.fds.append(fd)
        self.names.append(name)

    def pop(self) -> None:
        os.close(self.fds.pop())
        self.names.pop()

    def reset(self) -> None:
        while self.fds:
            self.pop()

    def close(self) -> None:
        self.reset()

    def run(
        self,
        final: Callable[[_Walker, str | None], T | _Follow] | None,
        create: bool = False,
    ) -> T | None:
        """Walk ``parts``; ``final(walker, name)`` acts on the last one (``None``: the
        directory reached itself), or, without ``final``, every component is a directory.

        Raises :class:`_Escape`, OSError (errno of the step that failed) or, with ``create``,
        :class:`MkdirError` as ``os.MkdirAll`` words it. With ``create``, the directories
        whose path stays under ``PATH_MAX`` are made, as ``os.MkdirAll`` makes them, and the
        first component whose path reaches it fails as its ``mkdir`` (or the final open) does.
        """
        pending: list[_Step] = [(name, index, False) for index, name in enumerate(self.parts)]
        pending.reverse()
        outside: list[str] | None = None  # where we are when above the root: path components
        retries = 0
        while True:
            if not pending:
                if outside is not None:
                    raise _Escape("/" + "/".join(outside))
                if final is None:
                    return None
                result = final(self, None)  # the directory reached: never a symlink
                assert not isinstance(result, _Follow)
                return result
            name, index, via_link = pending.pop()
            if outside is not None:
                outside = self._outside(outside, name, pending)
                continue
            if name in ("", "."):
                continue
            if name == "..":
                if self.names:
                    self.pop()
                else:
                    outside = self.root_parts[:-1]
                continue
            if create and _too_long(self.prefix(index)):
                if final is not None and index == len(self.parts) - 1:
                    raise _name_too_long()
                raise MkdirError(f"mkdir {self.prefix(index)}: {errno_text(errno.ENAMETOOLONG)}")
            if final is not None and not pending:
                result = final(self, name)
                if isinstance(result, _Follow):
                    outside = self._follow(result.target, index, pending)
                    continue
                return result
            try:
                fd = os.open(_fsname(name), _SEARCH, dir_fd=self.fd)
            except OSError as exc:
                code = exc.errno or errno.EIO
                if code in _LINK_ERRNOS:
                    target = _readlink(name, self.fd)
                    if target is not None:
                        outside = self._follow(target, index, pending)
                        continue
                if not create:
                    raise OSError(code, os.strerror(code)) from None
                if code == errno.ENOENT and not via_link:
                    retries += 1
                    if retries > _MAX_RETRIES:
                        raise MkdirError(
                            f"mkdir {self.prefix(index)}: {errno_text(code)}"
                        ) from None
                    self._mkdir(name, index)
                    pending.append((name, index, via_link))  # and open it (whatever it is now)
                    continue
                raise self._mkdir_error(code, index, via_link, pending) from None
            self.push(name, fd)

    def _follow(self, target: str, index: int, pending: list[_Step]) -> list[str] | None:
        """Queue the steps of a symlink's target; the outside position for an absolute one."""
        self.links += 1
        if self.links > _MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        pending.extend((part, index, True) for part in reversed(target.split("/")))
        if target.startswith("/"):
            self.reset()
            return []
        return None

    def _outside(self, outside: list[str], name: str, pending: list[_Step]) -> list[str] | None:
        """One step above the root: only the way back down to it is allowed."""
        if name in ("", "."):
            return outside
        if name == "..":
            return outside[:-1]
        position = [*outside, name]
        if position == self.root_parts:
            self.reset()
            return None
        if self.root_parts[: len(position)] == position:
            return position
        rest = [step[0] for step in reversed(pending)]
        raise _Escape("/" + "/".join(position + rest))

    def _mkdir(self, name: str, index: int) -> None:
        try:
            os.mkdir(name, DIR_MODE, dir_fd=self.fd)
        except FileExistsError:
            return  # made meanwhile: open whatever it is
        except OSError as exc:
            raise MkdirError(f"mkdir {self.prefix(index)}: {errno_text(exc.errno)}") from None
        try:  # the mode PicoD's directories get under umask 022, whatever ours is
            fd = os.open(name, _LIST, dir_fd=self.fd)
        except OSError:
            return
        try:
            os.fchmod(fd, DIR_MODE & ~UMASK)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _mkdir_error(
        self, code: int, index: int, via_link: bool, pending: list[_Step]
    ) -> MkdirError:
        """What ``os.MkdirAll`` says when component ``index`` cannot be a directory."""
        prefix = self.prefix(index)
        if via_link:
            # Go stats the link's path: a target that resolves to a non-directory is
            # ENOTDIR; one that does not resolve makes it mkdir the link itself: EEXIST
            last = not pending or pending[-1][1] != index
            code = errno.ENOTDIR if code == errno.ENOTDIR and last else errno.EEXIST
        return MkdirError(f"mkdir {prefix}: {errno_text(code)}")


def _final_list(walker: _Walker, name: str | None) -> int | _Follow:
    """Open the directory to list."""
    if name is None:
        return os.open(".", _LIST, dir_fd=walker.fd)
    _fsname(name)
    try:
        return os.open(name, _LIST, dir_fd=walker.fd)
    except OSError as exc:
        if exc.errno not in _LINK_ERRNOS:
            raise
        target = _readlink(name, walker.fd)
        if target is not None:
            return _Follow(target)
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None  # not a link


def _final_read(walker: _Walker, name: str | None) -> int | _Follow | None:
    """Open the file to download; None for a directory (PicoD refuses those)."""
    if name is None:
        return None
    _fsname(name)
    try:
        fd = os.open(name, _READ, dir_fd=walker.fd)
    except OSError as exc:
        code = exc.errno or errno.EIO
        if code in _LINK_ERRNOS:
            target = _readlink(name, walker.fd)
            if target is not None:
                return _Follow(target)
        try:
            info = os.stat(name, dir_fd=walker.fd, follow_symlinks=False)
        except OSError as missing:
            raise OSError(missing.errno, missing.strerror) from None  # stat fails: as stat
        if stat.S_ISDIR(info.st_mode):
            return None
        raise OpenFailed(code, os.strerror(code)) from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _final_create(mode: int) -> Callable[[_Walker, str | None], tuple[int, bool] | _Follow]:
    """Open the file to write: (descriptor, whether it was created)."""

    def create(walker: _Walker, name: str | None) -> tuple[int, bool] | _Follow:
        if name is None:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        _fsname(name)
        for _ in range(_MAX_RETRIES):
            try:
                fd = os.open(name, _CREATE, mode & ~UMASK, dir_fd=walker.fd)
            except FileExistsError:
                pass
            else:
                try:
                    os.fchmod(fd, mode & ~UMASK)
                except OSError:
                    pass
                return fd, True
            try:
                return os.open(name, _TRUNCATE, dir_fd=walker.fd), False
            except FileNotFoundError:
                continue  # removed meanwhile: create it
            except OSError as exc:
                if exc.errno in _LINK_ERRNOS:
                    target = _readlink(name, walker.fd)
                    if target is not None:
                        return _Follow(target)
                raise
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    return create


# -- the workspace -------------------------------------------------------------------------------


class Workspace:
    """A sandbox's workspace directory, PicoD's path rules for it, and its file operations."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        #: set when deletion begins (it then waits for operations in flight)
        self.closing = threading.Event()
        self._cond = threading.Condition()
        self._fd: int | None = None
        self._busy = 0
        self._closed = False
        self._removal = threading.Lock()
        self._real: str | None = None

    def create(self) -> None:
        make_dirs(self.root)
        self._fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    # -- PicoD's texts, from path strings ---------------------------------------------------------
    def _resolved_root(self) -> str:
        """``filepath.EvalSymlinks(workspace)``, resolved once: the workspace is ours."""
        if self._real is None:
            self._real = clean(eval_symlinks(self.root) or self.root)
        return self._real

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
                raise PathDenied(_via_symlink(resolved, user_path))
            return resolved
        return candidate

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
            raise PathDenied(_via_symlink(resolved, user_path))

    def relative(self, path: str) -> str:
        """The answer's ``path``: ``filepath.Rel(workspace, path)``."""
        return rel(self.root, path)

    # -- the operations, relative to the root handle ----------------------------------------------
    @contextlib.contextmanager
    def _operation(self) -> Iterator[int]:
        with self._cond:
            if self._closed or self._fd is None:
                raise WorkspaceGone()
            self._busy += 1
            fd = self._fd
        try:
            yield fd
        finally:
            with self._cond:
                self._busy -= 1
                last = self._busy == 0
                if last:
                    self._cond.notify_all()
                late = last and self._closed and self._fd is not None
            if late:  # deletion stopped waiting for us: finish its work
                self._remove()

    def _walk(
        self,
        target: str,
        final: Callable[[_Walker, str | None], T | _Follow] | None,
        create: bool = False,
    ) -> T | None:
        root = self._resolved_root()
        relative = rel(root, target)
        parts = [] if relative == "." else relative.split("/")
        with self._operation() as root_fd:
            if not create and _too_long(target):  # Go's stat or open of the whole path
                raise _name_too_long()
            walker = _Walker(root_fd, root, parts)
            try:
                return walker.run(final, create)
            finally:
                walker.close()

    def open_directory(self, target: str) -> int:
        """A descriptor of the directory ``target`` (from :meth:`sanitize`) to list.

        Raises FileNotFoundError (also for a walk that would leave the workspace: PicoD
        would have looked outside and found nothing, or it was swapped meanwhile),
        OSError (errno; ENOTDIR for anything but a directory), :class:`WorkspaceGone`.
        """
        try:
            fd = self._walk(target, _final_list)
        except _Escape:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)) from None
        assert fd is not None
        return fd

    def open_file(self, target: str) -> int | None:
        """A descriptor of the file ``target`` to download; None when it is a directory.

        Raises FileNotFoundError (also for a walk that would leave the workspace), OSError
        (a ``stat`` would fail so), :class:`OpenFailed` (the open itself failed),
        :class:`WorkspaceGone`.
        """
        try:
            return self._walk(target, _final_read)
        except _Escape:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)) from None

    def create_file(self, target: str, user_path: str, mode: int) -> tuple[int, bool]:
        """``os.MkdirAll(filepath.Dir(target), 0755)``, then ``os.OpenFile(target,
        O_WRONLY|O_CREATE|O_TRUNC, mode)`` under umask 022, in one walk.

        Returns (descriptor, created). Raises :class:`MkdirError` (the directories),
        OSError (errno, for Go's ``open PATH: ...``), :class:`PathDenied`,
        :class:`WorkspaceGone`.
        """
        try:
            opened = self._walk(target, _final_create(mode), create=True)
        except _Escape as escape:
            raise PathDenied(_via_symlink(escape.path, user_path)) from None
        assert opened is not None
        return opened

    def mkdir_safe(self, path: str) -> None:
        """PicoD's ``mkdirSafe``: create ``path`` unless its existing part leaves the workspace.

        Raises :class:`PathDenied`, OSError (Go's text in ``args[0]``), :class:`WorkspaceGone`.
        """
        root = self._resolved_root()
        existing = path
        while True:
            if os.path.lexists(existing):
                resolved = eval_symlinks(existing)
                if resolved is None:
                    raise OSError(f'failed to resolve path "{existing}"')
                if _escapes(rel(root, resolved)):
                    raise PathDenied(_mkdir_escape(path))
                break
            parent = os.path.dirname(existing)
            if parent == existing:
                break
            existing = parent
        try:
            self._walk(path, None, create=True)
        except _Escape:
            raise PathDenied(_mkdir_escape(path)) from None
        except MkdirError:
            raise
        except OSError as exc:
            raise MkdirError(f"mkdir {path}: {errno_text(exc.errno)}") from None

    # -- deletion ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Refuse new operations, wait (bounded) for those in flight, remove the tree."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self.closing.set()
        with self._cond:
            self._cond.wait_for(lambda: self._busy == 0, timeout=CLOSE_WAIT_SECONDS)
            idle = self._busy == 0
        if idle:
            self._remove()
        else:
            logger.warning("removing %s while file operations still run in it", self.root)
            with self._removal:
                self._remove_tree()

    def _remove(self) -> None:
        with self._removal:
            self._remove_tree()
            with self._cond:
                fd, self._fd = (self._fd, None) if self._busy == 0 else (None, self._fd)
            if fd is not None:
                os.close(fd)

    def _remove_tree(self) -> None:
        try:
            here = os.lstat(self.root)
        except OSError:
            return
        fd = self._fd
        if fd is not None and not os.path.samestat(here, os.fstat(fd)):
            logger.warning("%s is no longer this session's workspace; not removing it", self.root)
            return
        rmtree(self.root)


def _via_symlink(resolved: str, user_path: str) -> str:
    return (
        f"access denied: resolved path '{resolved}' (from '{user_path}') escapes "
        "workspace jail via symlink"
    )


def _mkdir_escape(path: str) -> str:
    return f'access denied: path "{path}" escapes workspace jail via symlink'
