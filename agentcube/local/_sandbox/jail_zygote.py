"""The isolated sessions' zygote: one process per server that forks every sandbox.

Started once per server (``python -I`` running :func:`main`, before any session), it imports the
built-in PicoD and everything it needs, and warms it up, so that a new sandbox is a fork (a few
milliseconds) rather than a new interpreter (tens of milliseconds), and so that the PicoD
inside needs nothing from the host's files once it is in its own root.

For each session the server sends ``("sandbox", config)`` with two descriptors: a reply socket
and the listening unix socket the Router will connect to. The zygote forks the session's
*outside* process, which answers ``("forked", pid)`` with a pidfd of itself, enters the sandbox
(:func:`._jail.enter`) and waits; inside, PID 1 builds the root, drops what commands may not do,
forks the process supervisor (:mod:`._reaper`) that starts every command, and serves PicoD's
HTTP API on the listening socket, answering ``("ready", None)`` (or the error) when it does.
Killing the outside process kills PID 1 (its parent-death signal), and with it, the kernel kills
everything in the PID namespace; the session's tmpfs goes with its mount namespace.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401 - socket.create_connection looks it up (the real PicoD's relay)
import io
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

# Everything a sandbox's PicoD runs is imported here, before any sandbox exists: inside, the
# host's files (this package's among them) are out of sight.
from .._go.gin import Headers, Request
from .._picod import BuiltinPicod
from .._serving.keepalive import ConnectionTracker, serve_listener
from .._serving.wsgi import build_request, respond
from . import _jail, _reaper
from .isolation import receive_message, remove_cgroups, send_message, session_cgroups
from .procs import SubreaperSupervisor, link_to


def _pin_werkzeug_version() -> None:
    """werkzeug's server asks importlib.metadata for its own version each time one is made;
    inside a sandbox the package's metadata is out of sight, so the answer is read here once
    (this process only: it is the zygote's own interpreter)."""
    import importlib.metadata

    looked_up = importlib.metadata.version
    werkzeug = looked_up("werkzeug")

    def version(distribution_name: str) -> str:
        return werkzeug if distribution_name == "werkzeug" else looked_up(distribution_name)

    importlib.metadata.version = version


def _warm_up() -> None:
    """Run every PicoD endpoint once here, so nothing is left to import inside a sandbox."""
    import shutil
    import tempfile

    scratch = tempfile.mkdtemp(prefix="agentcube-warm-")
    try:
        picod = BuiltinPicod(os.path.join(scratch, "w"), staging_dir=scratch)
        boundary = "agentcubewarmup"
        upload = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\na.txt\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\nx\r\n--{boundary}--\r\n"
        ).encode()
        json = {"Content-Type": "application/json"}
        since = "Mon, 07 Dec 2026 10:00:00 GMT"
        calls: list[tuple[str, str, bytes, dict[str, str]]] = [
            ("POST", "/api/execute", b'{"command": ["true"]}', json),
            ("POST", "/api/files", upload,
             {"Content-Type": f"multipart/form-data; boundary={boundary}"}),
            ("POST", "/api/files", b'{"path": "b.txt", "content": "eA=="}', json),
            ("GET", "/api/files", b"", {}),
            ("GET", "/api/files/a.txt", b"", {}),
            ("GET", "/api/files/a.txt", b"", {"If-Modified-Since": since}),
            ("GET", "/api/files/a.txt", b"", {"Range": "bytes=0-0"}),
            ("GET", "/api/files/a.txt", b"", {"If-Range": since}),
            ("GET", "/api/files/.", b"", {}),
            ("GET", "/health", b"", {}),
            ("GET", "/nowhere/", b"", {}),
        ]  # fmt: skip
        for method, path, body, extra in calls:
            headers = Headers([("Accept-Encoding", "gzip"), *extra.items()])
            request = Request(
                method=method,
                path=path,
                raw_query="",
                headers=headers,
                body=io.BytesIO(body),
                content_length=len(body),
            )
            response = picod.handle(request)
            for _ in response.wire(False):
                pass
            response.close()
        picod.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _NothingMoreToImport:
    """Inside a sandbox nothing may be imported (the host's files may be out of sight there, or
    not, depending on where this Python lives): an import is refused alike everywhere, so that
    a module missing from the preloads above fails every test run, not only some machines'."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        raise ImportError(f"{name} imported inside a sandbox: preload it in jail_zygote")


def _inside(config: dict[str, Any], reply: socket.socket, listener: socket.socket) -> None:
    """PID 1 of the sandbox: the supervisor, then PicoD's HTTP API until killed."""
    sys.meta_path.insert(0, _NothingMoreToImport())
    _jail.harden()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    supervisor = os.fork()
    if supervisor == 0:
        ours.close()
        reply.close()
        listener.close()
        _jail.join_cgroups(config.get("command_cgroup_fds", []))
        _jail.set_rlimits(config.get("rlimits", {}))
        _reaper.serve(theirs)  # never returns
    theirs.close()
    for fd in config.get("command_cgroup_fds", []):
        os.close(fd)
    processes = SubreaperSupervisor(link=link_to(ours))
    if config.get("picod"):
        _real_picod(config, processes, reply, listener)
        return
    picod = BuiltinPicod(
        config.get("workspace", "/root"),
        processes=processes,
        max_body_bytes=int(config["max_body"]),
        max_output_bytes=int(config["max_output"]),
        staging_dir=None,
    )

    def app(environ: Any, start_response: Any) -> Any:
        return respond(picod.handle(build_request(environ)), start_response)

    server = serve_listener(listener, app, ConnectionTracker())
    send_message(reply, ("ready", None))
    reply.close()
    server.serve_forever(poll_interval=0.5)


def _real_picod(
    config: dict[str, Any],
    processes: SubreaperSupervisor,
    reply: socket.socket,
    listener: socket.socket,
) -> None:
    """PID 1 with a real PicoD binary: start it, then relay the Router's connections to it.

    PicoD listens on TCP (all interfaces of the sandbox's own network); the Router reaches
    the sandbox on its unix socket, so each connection is copied to ``127.0.0.1:PORT`` here.
    """
    port = int(config["picod_port"])
    log = os.memfd_create("picod-log", os.MFD_CLOEXEC)
    env = {key.encode(): value.encode() for key, value in os.environ.items()}
    env[b"PICOD_AUTH_PUBLIC_KEY"] = str(config["picod_key"]).encode("ascii")
    workspace = str(config.get("workspace", "/root"))
    argv = [_jail.PICOD_INSIDE, "-port", str(port), "-workspace", workspace]
    child = processes.spawn(
        [arg.encode() for arg in argv],
        executable=_jail.PICOD_INSIDE.encode(),
        cwd=workspace.encode(),
        env=env,
        stdout=log,
        stderr=log,
    )
    error = child.start_error()
    if error is not None:
        raise OSError(error.errno, f"cannot start PicoD: {error.strerror}")
    deadline = time.monotonic() + 15.0
    while True:
        status = child.poll()
        if status is not None:
            size = os.fstat(log).st_size
            tail = os.pread(log, 2048, max(0, size - 2048)).decode("utf-8", "replace").strip()
            raise RuntimeError(f"PicoD exited with status {status} before listening: {tail!r}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PicoD did not listen on port {port} in time") from None
            time.sleep(0.01)
    send_message(reply, ("ready", None))
    reply.close()
    while True:
        try:
            client, _ = listener.accept()
        except InterruptedError:
            continue
        threading.Thread(target=_relay, args=(client, port), daemon=True).start()


def _relay(client: socket.socket, port: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", port))
    except OSError:
        client.close()
        return
    pump = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    pump.start()
    _pump(client, upstream)
    pump.join()
    client.close()
    upstream.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until end of file, then half-close ``sink``."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _outside(config: dict[str, Any], reply: socket.socket, listener: socket.socket) -> None:
    """The session's process outside the sandbox (a fork of the zygote)."""
    _jail.set_parent_death_signal()
    pidfd = os.pidfd_open(os.getpid())
    send_message(reply, ("forked", os.getpid()), [pidfd])
    os.close(pidfd)
    try:
        _jail.enter(config)  # returns only in PID 1 inside
        _inside(config, reply, listener)
    except BaseException as exc:
        text = str(exc) or type(exc).__name__
        if not isinstance(exc, OSError):
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        try:
            send_message(reply, ("ready", text))
        except OSError:
            pass
    os._exit(1)


def serve(sock: socket.socket) -> None:
    """The zygote's loop: fork a sandbox per request, reap the outside processes that end.

    It also removes each sandbox's cgroups once the sandbox is gone (the server does it too;
    whichever comes first), so that a server that dies leaves none behind: at end of file it
    kills every sandbox it forked and removes their cgroups before it exits.
    """
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes recvmsg; reaping is below
    owned: dict[int, list[str]] = {}
    pending: list[str] = []
    while True:
        for pid in _reap():
            pending.extend(owned.pop(pid, []))
        pending = list(remove_cgroups(pending))
        try:
            message, fds = receive_message(sock, 1.0 if pending else None)
        except (InterruptedError, TimeoutError):
            continue
        except OSError:  # end of file among them: the server is gone
            break
        if message[0] != "sandbox" or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        reply = socket.socket(fileno=fds[0])
        listener = socket.socket(fileno=fds[1])
        try:
            pid = os.fork()
        except OSError as exc:
            send_message(reply, ("ready", f"fork: {exc}"))
            pid = -1
        if pid == 0:
            sock.close()
            _outside(message[1], reply, listener)
        if pid > 0:
            owned[pid] = session_cgroups(message[1])
        reply.close()
        listener.close()
    for pid in owned:  # our unreaped children: their pids are still theirs
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while owned and time.monotonic() < deadline:
        for pid in _reap():
            pending.extend(owned.pop(pid, []))
        time.sleep(0.01)
    remove_cgroups(pending, wait=5.0)
    os._exit(0)


def _reap() -> list[int]:
    """Reap every child that ended; their pids."""
    reaped: list[int] = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append(pid)


def main() -> None:
    """Entry point: ``python -I -c ... FD`` with the server's ``sys.path``."""
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)
    sock = socket.socket(fileno=fd)
    error = None
    try:
        _pin_werkzeug_version()
        _warm_up()
        error = _jail.probe()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    send_message(sock, ("ready", os.getpid(), error))
    if error is not None:
        os._exit(0)
    serve(sock)
