"""Entering a sandbox (Linux): namespaces, the root filesystem, limits. Standard library only.

The one place that talks to the kernel about isolation. It runs in a process forked for one
session (see :mod:`.jail_zygote`), never in the server itself: :func:`enter` moves the calling
(single-threaded) process into a cgroup of its own, unshares the user, mount, PID, IPC, UTS and
(unless the template asks for the host's) network namespaces, maps uid and gid 0 inside to the
server's own user outside, and forks; the parent stays outside and only waits, the child is PID 1
of the new PID namespace and returns from :func:`enter` inside its new root.

The root filesystem is built in a tmpfs of the session's own (its size is the disk cap, its
pages count toward the memory limit where a memory cgroup applies): the host's system
directories (``/usr``, ``/etc``, ``/bin``... whichever the host has) each as an overlay whose
lower layer is the host's (never written) and whose upper layer is in that tmpfs, so a write
anywhere lands in the session's layer and vanishes with it; empty ``/root``, ``/home``, ``/tmp``,
``/var``, ``/run`` of its own; ``/proc`` of its PID namespace; a ``/dev`` with ``null``, ``zero``,
``full``, ``random``, ``urandom`` and ``tty`` bound from the host, ``shm`` and ``pts``. Then
``pivot_root`` and the old root is detached: nothing of the host outside those directories
exists in the sandbox's mount namespace. Commands run without ``CAP_SYS_ADMIN`` (dropped from
the bounding set), so they cannot remount or unmount any of it.
"""

from __future__ import annotations

# Every import is at the top: this module runs inside sandboxes, where the host's files (this
# Python's standard library among them) may be out of sight.
import ctypes
import fcntl
import os
import platform
import resource
import socket
import struct
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
CAP_SYS_ADMIN = 21
CAP_SYS_PTRACE = 19
CAP_SYS_MODULE = 16
CAP_SYS_BOOT = 22
CAP_SYS_TIME = 25

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

#: pivot_root has no libc wrapper: its syscall number per architecture
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41, "ppc64le": 203,
               "s390x": 217, "i686": 217, "i386": 217, "armv7l": 218}  # fmt: skip

#: top-level host directories a sandbox sees (read-only below its own writable layer)
SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "opt")
#: files of the host's /etc a sandbox does not see, even read-only
HIDDEN_FILES = ("etc/shadow", "etc/gshadow", "etc/shadow-", "etc/gshadow-")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
#: where a real PicoD binary is bound inside the sandbox
PICOD_INSIDE = "/usr/local/bin/picod"
#: the environment PicoD and its commands get, as a container image gives it
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_libc: Any = None


class JailError(OSError):
    """A step of building the sandbox failed; the text names the step."""


def _lib() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.c_ulong, ctypes.c_char_p]  # fmt: skip
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc.unshare.argtypes = [ctypes.c_int]
        _libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise JailError(code, f"{what}: {os.strerror(code)}")


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(_lib().mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


# -- limits -----------------------------------------------------------------------------------


def open_cgroups(procs_files: list[str]) -> list[int]:
    """The session's ``cgroup.procs`` files (made and limited by the server), opened while they
    are in sight, to be joined from where they are not."""
    return [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in procs_files]


def join_cgroups(fds: list[int]) -> None:
    """Move this process into the cgroups of ``fds`` (from :func:`open_cgroups`)."""
    for fd in fds:
        os.write(fd, b"0")
        os.close(fd)


def set_rlimits(limits: dict[str, int]) -> None:
    """The fallbacks where no cgroup controller is granted: ``{"data": bytes, "nproc": n}``.

    Set in the process supervisor, so they bound each command (and a real PicoD) but not the
    built-in PicoD's own threads. ``RLIMIT_DATA`` rather than ``RLIMIT_AS``: Go reserves far
    more address space than it uses, and counts only what it maps writable.
    """
    for name, value in limits.items():
        which = {"data": resource.RLIMIT_DATA, "nproc": resource.RLIMIT_NPROC}[name]
        resource.setrlimit(which, (value, value))


# -- entering ---------------------------------------------------------------------------------


def enter(config: dict[str, Any]) -> None:
    """Enter the session's namespaces and root (see the module docs); returns in PID 1 inside.

    ``config``: ``layer`` (an empty host directory for the session's tmpfs), ``disk`` (its size
    in bytes), ``workspace``, ``hostname``, ``network`` (``"none"`` or ``"host"``),
    ``cgroups`` (cgroup.procs files to join), ``rlimits``, ``uid``, ``gid`` (the server's).
    The process outside never returns: it waits for PID 1 and exits with it.
    """
    libc = _lib()
    join_cgroups(open_cgroups(config.get("cgroups", [])))
    # the command supervisor joins its cgroups from inside, through these
    config["command_cgroup_fds"] = open_cgroups(config.get("command_cgroups", []))
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if config.get("network", "none") != "host":
        flags |= CLONE_NEWNET
    _check(libc.unshare(flags), "unshare")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {int(config['uid'])} 1\n")
    _write("/proc/self/gid_map", f"0 {int(config['gid'])} 1\n")
    pid = os.fork()
    if pid != 0:
        _wait_and_exit(pid)
    set_parent_death_signal()
    build_root(config)


def _wait_and_exit(pid: int) -> None:
    """The process outside: nothing to do but wait for PID 1 (everything inside dies with it)."""
    for fd in range(3, 1024):
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            status = 0
            break
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def build_root(config: dict[str, Any]) -> None:
    """PID 1: make the root filesystem, pivot into it, set the host name, raise loopback."""
    libc = _lib()
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    layer = config["layer"]
    mount("tmpfs", layer, "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(config['disk'])},mode=0755")
    new = os.path.join(layer, "root")
    os.mkdir(new, 0o755)
    mount(new, new, None, MS_BIND | MS_REC)
    for name in sorted(os.listdir("/")):
        host = "/" + name
        if name not in SYSTEM_DIRS:
            continue
        if os.path.islink(host):
            os.symlink(os.readlink(host), os.path.join(new, name))
        elif os.path.isdir(host):
            _overlay(host, os.path.join(new, name), layer, name)
    for name, mode in (("root", 0o700), ("home", 0o755), ("tmp", 0o1777), ("var", 0o755),
                       ("var/tmp", 0o1777), ("run", 0o755), ("proc", 0o555), ("dev", 0o755),
                       ("sys", 0o555)):  # fmt: skip
        path = os.path.join(new, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
    _make_dev(os.path.join(new, "dev"))
    mount("proc", os.path.join(new, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    workspace = config.get("workspace", "/root")
    os.makedirs(os.path.join(new, workspace.lstrip("/")), mode=0o755, exist_ok=True)
    if config.get("picod"):  # a real PicoD binary, where the image has it
        target = os.path.join(new, PICOD_INSIDE.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb"):
            pass
        mount(config["picod"], target, None, MS_BIND)
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    for hidden in HIDDEN_FILES:
        try:
            os.unlink(os.path.join(new, hidden))  # a whiteout in the session's layer
        except OSError:
            pass
    hostname = os.fsencode(config.get("hostname", "sandbox"))
    _check(libc.sethostname(hostname, len(hostname)), "sethostname")
    if config.get("network", "none") != "host":
        loopback_up()
    os.chdir(new)
    _pivot_root()
    os.chdir("/")
    os.environ.clear()
    os.environ.update(
        {"PATH": SANDBOX_PATH, "HOME": "/root", "HOSTNAME": hostname.decode(), "LANG": "C.UTF-8"}
    )


def _overlay(lower: str, target: str, layer: str, name: str) -> None:
    upper = os.path.join(layer, "upper", name)
    work = os.path.join(layer, "work", name)
    for path in (target, upper, work):
        os.makedirs(path, exist_ok=True)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    try:
        mount("overlay", target, "overlay", 0, options + ",userxattr")
    except OSError:
        try:
            mount("overlay", target, "overlay", 0, options)
        except OSError:  # no overlay here: the host's directory read-only, not writable
            mount(lower, target, None, MS_BIND | MS_REC)
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)


def _make_dev(dev: str) -> None:
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=0755,size=1m")
    for name in DEVICES:
        node = os.path.join(dev, name)
        with open(node, "wb"):
            pass
        try:
            mount("/dev/" + name, node, None, MS_BIND)
        except OSError:
            os.unlink(node)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("ptmx", "pts/ptmx")):  # fmt: skip
        os.symlink(target, os.path.join(dev, name))
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    os.chmod(os.path.join(dev, "shm"), 0o1777)  # noqa: S103 - the sandbox's own /dev/shm
    os.mkdir(os.path.join(dev, "pts"), 0o755)
    try:
        mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620")  # fmt: skip
    except OSError:
        pass


def _pivot_root() -> None:
    number = _PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise JailError(0, f"pivot_root: unknown architecture {platform.machine()}")
    libc = _lib()
    _check(libc.syscall(number, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount old root")


def loopback_up() -> None:
    """Bring ``lo`` up in this (new) network namespace: its own loopback, nothing else."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def harden() -> None:
    """What commands started from now on may not do: mount, load modules, trace PID 1.

    Drops capabilities from the bounding set (commands are exec'd as uid 0 and get what the
    set still holds) and makes this process undumpable (no ``ptrace`` of it from inside).
    """
    libc = _lib()
    for cap in (CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_SYS_BOOT, CAP_SYS_TIME):
        _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
    _check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def set_parent_death_signal() -> None:
    """SIGKILL this process when its parent (a single-threaded zygote or outside process) dies."""
    _check(_lib().prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def probe() -> str | None:
    """What this machine lacks for a sandbox, in words, or None. Only what can be known without
    trying: the server then builds one whole trial sandbox, which tries every step."""
    if not hasattr(os, "pidfd_open"):
        return "pidfd_open is unavailable (Linux 5.3 or later is needed)"
    if platform.machine() not in _PIVOT_ROOT:
        return f"unknown architecture {platform.machine()}"
    return None
