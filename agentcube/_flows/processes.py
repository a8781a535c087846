"""Processes the SDK follows in a sandbox, over PicoD's execute and Range downloads: live output
(a command run in the background into log files, read as they grow), and the background
processes of ``execute_command(..., background=True)`` (registered under
``.agentcube/processes/``, so that they can be listed, waited for and killed later).

Everything the SDK keeps in a sandbox is under ``.agentcube/`` in the workspace.
"""

from __future__ import annotations

import math
import secrets
import signal as signals
import time
from urllib.parse import quote

from .._config import check_argv, check_text, command_timeout
from .._protocol import Call, Flow, Local, Reply
from .._wire import SESSION_HEADER
from ..exceptions import (
    CommandExecutionError,
    DataPlaneError,
    InvalidArgumentError,
    error_from_reply,
)
from ._common import OutputCallback, RouterTarget, Started, Status, Stream
from .commands import STATE_DIR, clean_up, execute

PROCESSES = STATE_DIR + "/processes"

# Shell helpers the scripts below share. alive PID: the process exists and is not a zombie
# (a sandbox whose PID 1 does not reap orphans keeps them as zombies).
ALIVE = (
    'alive() { kill -0 "$1" 2>/dev/null || return 1; s=; read -r s <"/proc/$1/stat" '
    '2>/dev/null; case $s in *") Z "*) return 1;; esac; }; '
    "nap() { sleep 0.1 2>/dev/null || sleep 1; }; "
)
# st DIR: "running", "exited N", or "gone" (killed without a status, or never started).
_STATUS = ALIVE + (
    'st() { if [ -f "$1/exit" ]; then read -r s <"$1/exit"; echo "exited $s"; '
    'elif p=; read -r p <"$1/pid" 2>/dev/null && alive "$p"; then echo running; '
    "else echo gone; fi; }; "
)
STATUS = _STATUS + 'st "$1"'
# Waits up to $2 tenths of a second.
WAIT = _STATUS + (
    'n=0; while [ "$(st "$1")" = running ] && [ "$n" -lt "$2" ]; do nap; n=$((n+1)); done; st "$1"'
)
KILL = (  # not once it has ended: its pid may belong to another process by now
    '[ -f "$1/exit" ] && exit 0; p=; read -r p <"$1/pid" 2>/dev/null || exit 0; '
    'kill -s "$2" -- "-$p" 2>/dev/null && exit 0; '
    # No group of its own (no setsid in the sandbox): the watcher's children, then the watcher.
    'k=; read -r k <"/proc/$p/task/$p/children" 2>/dev/null; '
    'kill -s "$2" $k "$p" 2>/dev/null; exit 0'
)
LIST = (
    f'for d in {PROCESSES}/*/; do [ -f "$d/pid" ] || continue; p=; l=; read -r p <"$d/pid"; '
    'read -r l <"$d/log"; printf "%s\\t%s\\t%s\\n" "${d%/}" "$p" "$l"; done; exit 0'
)
# Live output: the command (argv after the directory and the limit) runs in the background
# under timeout(1) when the sandbox has it, its stdout and stderr in DIR/stdout and DIR/stderr,
# its status in DIR/exit at the end.
_WATCH_LIVE = (
    't=$1; shift; if command -v timeout >/dev/null 2>&1; then timeout -k 5 "$t" "$@"; '
    'else "$@"; fi >"$D/stdout" 2>"$D/stderr"; '
    'echo $? >"$D/exit.tmp" && mv -f -- "$D/exit.tmp" "$D/exit"'
)
LIVE = (
    'd=$1; shift; mkdir -p -- "$d" || exit 1; S=; command -v setsid >/dev/null 2>&1 && S=setsid; '
    f"D=$d $S sh -c '{_WATCH_LIVE}' sh \"$@\" </dev/null >/dev/null 2>&1 & echo $!"
)

_MISSING = frozenset({404})
_FIRST_POLL = 0.05  # seconds between polls of live output, growing to _LAST_POLL
_LAST_POLL = 0.25


def new_state_dir(kind: str) -> str:
    """A fresh directory name under ``.agentcube/<kind>/`` (workspace-relative)."""
    return f"{STATE_DIR}/{kind}/{secrets.token_hex(8)}"


def _parse_status(stdout: str) -> Status:
    words = stdout.split()
    if words == ["running"]:
        return Status("running", None)
    if len(words) == 2 and words[0] == "exited" and words[1].lstrip("-").isdigit():
        return Status("exited", int(words[1]))
    if words == ["gone"]:
        return Status("gone", None)
    raise DataPlaneError(f"the sandbox answered an unreadable process status: {stdout!r}")


def process_status(target: RouterTarget, state: str) -> Flow[Status]:
    """Whether the process still runs, from its state directory (one request)."""
    result = yield from execute(target, ["sh", "-c", STATUS, "sh", state], 30.0)
    return _parse_status(result.stdout)


def wait_process(target: RouterTarget, state: str, timeout: float | None) -> Flow[Status]:
    """Wait in the sandbox (one request per minute of waiting) until the process ends or
    ``timeout`` seconds pass; its status then."""
    deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
    while True:
        left = 60.0 if deadline is None else min(60.0, deadline - time.monotonic())
        tenths = str(max(0, math.ceil(left * 10)))
        result = yield from execute(target, ["sh", "-c", WAIT, "sh", state, tenths], left + 30.0)
        status = _parse_status(result.stdout)
        if status.state != "running" or (deadline is not None and time.monotonic() >= deadline):
            return status


def signal_name(sig: int) -> str:
    """``TERM`` for SIGTERM: the name ``kill -s`` takes (InvalidArgumentError if none)."""
    try:
        return signals.Signals(sig).name[3:]
    except (ValueError, TypeError):
        raise InvalidArgumentError(f"signal must be a signal number, not {sig!r}") from None


def kill_process(target: RouterTarget, state: str, name: str) -> Flow[None]:
    """Send the signal ``name`` (see :func:`signal_name`) to the process's whole process group
    (one request); nothing if it has ended."""
    yield from execute(target, ["sh", "-c", KILL, "sh", state, name], 30.0)


def read_file(target: RouterTarget, path: str) -> Flow[bytes]:
    """``GET api/files/<path>`` into memory."""
    reply: Reply = yield _get(target, path)
    return reply.content


def list_processes(target: RouterTarget) -> Flow[list[Started]]:
    """Every background process registered in the sandbox (one request)."""
    result = yield from execute(target, ["sh", "-c", LIST], 30.0)
    found = []
    for line in result.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1].isdigit():
            found.append(Started(int(parts[1]), parts[2], parts[0]))
    return found


# -- live output --------------------------------------------------------------------------------


def _get(
    target: RouterTarget, path: str, offset: int | None = None, ok: frozenset[int] = frozenset()
) -> Call:
    """``GET api/files/<path>``, from byte ``offset`` on when given (416 then means nothing
    new)."""
    encoded = "/".join(quote(segment, safe="") for segment in path.split("/"))
    headers = dict(target.headers)
    if offset is not None:
        headers["Range"] = f"bytes={offset}-"
        ok = ok | {416}
    return Call(
        target.endpoint,
        "GET",
        target.prefix + "api/files/" + encoded,
        headers=headers,
        session_id=target.session_id,
        session_scoped=target.session_id is not None,
        ok=ok,
    )


def _absent(reply: Reply, target: RouterTarget) -> bool:
    """A 404 from the sandbox (the file is not there yet); a 404 the Router made itself (no
    session header: the session is gone) raises."""
    if reply.status != 404:
        return False
    if SESSION_HEADER not in reply.headers:
        raise error_from_reply(
            "api/files",
            reply.status,
            reply.headers,
            reply.content,
            response=reply.raw,
            session_id=target.session_id,
            session_scoped=True,
            secrets=reply.secrets,
        )
    return True


def follow(target: RouterTarget, streams: list[Stream], done: str, deadline: float) -> Flow[bytes]:
    """Poll until the file ``done`` appears, passing what each stream's file gained to its
    callback; the content of ``done``. Each poll costs one request for ``done`` and one per
    stream; polls come every 0.05 s, slowing to every 0.25 s.

    Raises:
        DataPlaneError: ``done`` did not appear by ``deadline`` (``time.monotonic()``).
    """
    pause = _FIRST_POLL
    while True:
        finished: Reply = yield _get(target, done, ok=_MISSING)
        ended = not _absent(finished, target)
        for stream in streams:
            reply = yield _get(target, stream.path, len(stream.data), _MISSING)
            if reply.status == 206:
                stream.take(reply.content)
            elif reply.status == 200:  # the Range was not honoured: the whole file
                stream.take(reply.content[len(stream.data) :])
            else:
                _absent(reply, target)
        if ended:
            for stream in streams:
                stream.take(b"", final=True)
            return finished.content
        if time.monotonic() > deadline:
            raise DataPlaneError(f"{done} did not appear in time (session {target.session_id})")
        yield Local(time.sleep, (pause,))
        pause = min(_LAST_POLL, pause * 1.5)


def command_live(
    target: RouterTarget,
    command: str | list[str],
    timeout: float | None,
    on_stdout: OutputCallback | None,
    on_stderr: OutputCallback | None,
) -> Flow[str]:
    """``execute_command`` with live output: the command runs in the background into log
    files that are followed (see :func:`follow`) until it ends; then its stdout, or
    CommandExecutionError as without callbacks."""
    seconds = command_timeout(timeout)
    if isinstance(command, str):
        if not command.strip():
            raise InvalidArgumentError("command must not be empty")
        check_text(command, "command")
        argv = ["sh", "-c", command]
    else:
        argv = check_argv(command)
    state = new_state_dir("live")
    limit = f"{math.ceil(seconds * 1000) / 1000:.3f}"
    started = yield from execute(target, ["sh", "-c", LIVE, "sh", state, limit, *argv], 30.0)
    if started.exit_code != 0:
        raise DataPlaneError(f"the command could not be started: {started.stderr.strip()}")
    out, err = Stream(state + "/stdout", on_stdout), Stream(state + "/stderr", on_stderr)
    try:
        status = yield from follow(
            target, [out, err], state + "/exit", time.monotonic() + seconds + 30.0
        )
    except GeneratorExit:
        raise
    except BaseException:
        yield from clean_up(target, ["rm", "-rf", "--", state], "the live output's files")
        raise
    yield from clean_up(target, ["rm", "-rf", "--", state], "the live output's files")
    code = int(status.strip() or "1")
    stdout = out.data.decode("utf-8", "replace")
    stderr = err.data.decode("utf-8", "replace")
    if code == 124 and "Command timed out after" not in stderr:
        stderr += f"Command timed out after {seconds:.0f} seconds"
    if code != 0:
        raise CommandExecutionError(code, stderr, command, stdout)
    return stdout
