"""Commands in a code-interpreter sandbox: ``POST api/execute`` (an argv in a fresh process),
shell commands under a deadline, and background processes, with the shell programs they run."""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from typing import Any

from .._config import check_argv, check_env, check_text, command_timeout, workspace_path
from .._protocol import Flow, Reply, encode_json
from ..exceptions import CommandExecutionError, DataPlaneError, InvalidArgumentError
from ._common import Executed, RouterTarget, Started, logger, read_answer
from ._go import go_duration

# The HTTP read timeout of api/execute is the command's own timeout plus this margin, so that
# the sandbox always answers (exit code 124) before the client gives up.
EXECUTE_MARGIN = 30.0

# A command string runs as ``timeout -k 5 LIMIT sh -c SCRIPT``, sent as the argv itself:
# timeout(1) puts itself and the shell in a process group of their own and signals the whole
# group at the deadline (the sandbox kills only the process it started, and whatever that
# started would keep the call open until it exits). The shell execs a simple command in place,
# so a command costs one process start more than a bare argv: timeout(1)'s. Without timeout(1)
# in the image the sandbox answers exit code 1 and Go's text below, nothing having run, and
# the call is sent again as ``sh -c SCRIPT``.
UNDER_DEADLINE = ("timeout", "-k", "5")
_NO_TIMEOUT = 'exec: "timeout": executable file not found'
# The sandbox's own deadline comes after timeout(1)'s TERM and its KILL 5 s later.
_DEADLINE_SLACK = 10.0

# Start a command detached from the call, its output in a log file, and print its pid. A plain
# ``cmd &`` keeps api/execute open: the sandbox answers only once every process holding the
# command's output pipe has exited, and a background job inherits that pipe. The command runs
# as the child of a watcher shell that writes its exit status, in a new session (setsid, when
# the sandbox has it) so that a kill reaches its whole process group; the watcher outlives
# INT/TERM/HUP to record the status. The state directory D gets: pid, log (the log's path)
# and, at the end, exit. Arguments: D, the log file, then the command string (START_STRING)
# or the argv (START_ARGV).
_WATCH = 'trap : INT TERM HUP; "$@"; echo $? >"$D/exit.tmp" && mv -f -- "$D/exit.tmp" "$D/exit"'
_LAUNCH = (
    'd=$1 log=$2; shift 2; mkdir -p -- "$d" "$(dirname -- "$log")" || exit 1; '
    'printf "%s\\n" "${log#./}" >"$d/log"; S=; command -v setsid >/dev/null 2>&1 && S=setsid; '
    f"D=$d $S sh -c '{_WATCH}' sh "
)
_DETACHED = ' >"$log" 2>&1 </dev/null & echo $! >"$d/pid"; echo $!'
START_STRING = _LAUNCH + 'sh -c "$1"' + _DETACHED
START_ARGV = _LAUNCH + '"$@"' + _DETACHED
# Where the SDK keeps what it leaves in a sandbox, under the workspace.
STATE_DIR = ".agentcube"


def execute(
    target: RouterTarget,
    command: list[str],
    timeout: float | None = None,
    *,
    working_dir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Flow[Executed]:
    """``POST api/execute``: run an argv in a fresh process; never raises for its exit code.

    ``timeout`` (seconds; None or 0: 120) is enforced by the sandbox (exit code 124); the HTTP
    read timeout is that plus 30 s, so the sandbox always answers first.
    """
    argv = check_argv(command)
    seconds = command_timeout(timeout)
    body: dict[str, Any] = {"command": argv, "timeout": go_duration(seconds)}
    if working_dir is not None:
        body["working_dir"] = workspace_path(working_dir, "working_dir")
    if env is not None:
        body["env"] = check_env(env)
    reply = yield target.call(
        "POST",
        "api/execute",
        body=encode_json(body),
        content_type="application/json",
        read_timeout=seconds + EXECUTE_MARGIN,
    )
    return parse_executed(reply, target.session_id)


def _usual_execute_answer(body: dict[str, Any]) -> bool:
    """An int exit code and string or null output: read as is, no model built."""
    out, err = body.get("stdout"), body.get("stderr")
    return (
        type(body.get("exit_code")) is int
        and (out is None or type(out) is str)
        and (err is None or type(err) is str)
    )


def parse_executed(reply: Reply, session_id: str | None) -> Executed:
    """An ``api/execute`` answer as :class:`~agentcube.models.ExecuteResponse` reads it
    (DataPlaneError when it is not one); the model is built only for an unusual shape."""
    answer = read_answer(reply, "ExecuteResponse", _usual_execute_answer, "api/execute", session_id)
    return Executed(answer, reply)


def execute_command(
    target: RouterTarget, command: str | list[str], timeout: float | None
) -> Flow[Executed]:
    """Run a string (through ``sh -c``, its whole process group stopped at the timeout) or an
    argv list (run as is); the answer, whatever the exit code."""
    if not isinstance(command, str):
        return (yield from execute(target, check_argv(command), timeout))
    if not command.strip():
        raise InvalidArgumentError("command must not be empty")
    return (yield from execute_shell(target, command, command_timeout(timeout)))


def execute_shell(target: RouterTarget, script: str, seconds: float) -> Flow[Executed]:
    """Run ``script`` through ``sh -c`` under timeout(1) (``seconds``; see
    :data:`UNDER_DEADLINE`)."""
    check_text(script, "command")
    limit = f"{math.ceil(seconds * 1000) / 1000:.3f}"
    result = yield from execute(
        target, [*UNDER_DEADLINE, limit, "sh", "-c", script], seconds + _DEADLINE_SLACK
    )
    if result.exit_code == 1 and not result.stdout and result.stderr.startswith(_NO_TIMEOUT):
        result = yield from execute(target, ["sh", "-c", script], seconds)
    if result.exit_code == 124 and "Command timed out after" not in result.stderr:
        result.stderr += f"Command timed out after {seconds:.0f} seconds"
    return result


def check_exit(result: Executed, command: str | list[str] | None) -> str:
    """stdout of a command that exited 0; CommandExecutionError otherwise."""
    if result.exit_code != 0:
        raise CommandExecutionError(result.exit_code, result.stderr, command, result.stdout)
    return result.stdout


def command_result(
    target: RouterTarget, command: str | list[str], timeout: float | None
) -> Flow[dict[str, Any]]:
    """``execute_command_result``: ``{"stdout", "stderr", "exit_code"}`` whatever the exit."""
    result = yield from execute_command(target, command, timeout)
    return {"stdout": result.stdout, "stderr": result.stderr, "exit_code": result.exit_code}


def command_output(
    target: RouterTarget,
    command: str | list[str],
    timeout: float | None,
    background: bool,
    log_file: str | None,
) -> Flow[str | Started]:
    """``execute_command``: stdout of a command that exited 0, or the :class:`Started`
    background process; CommandExecutionError for a non-zero exit."""
    if background:
        return (yield from start_background(target, command, log_file))
    if log_file is not None:
        raise InvalidArgumentError("log_file is only for background=True")
    result = yield from execute_command(target, command, timeout)
    return check_exit(result, command)


def start_background(
    target: RouterTarget, command: str | list[str], log_file: str | None = None
) -> Flow[Started]:
    """Start ``command`` detached from the call (see :data:`START_STRING`): its output goes to
    ``log_file`` (default ``.agentcube-bg-<random>.log`` in the workspace), its state to
    ``.agentcube/processes/<random>``, and the call returns at once."""
    if log_file is None:
        log = f".agentcube-bg-{secrets.token_hex(6)}.log"
    else:
        log = workspace_path(log_file, "log_file", allow_root=False)
    state = f"{STATE_DIR}/processes/{secrets.token_hex(8)}"
    if isinstance(command, str):
        if not command.strip():
            raise InvalidArgumentError("command must not be empty")
        check_text(command, "command")
        argv = ["sh", "-c", START_STRING, "sh", state, "./" + log, command]
    else:
        argv = ["sh", "-c", START_ARGV, "sh", state, "./" + log, *check_argv(command)]
    result = yield from execute(target, argv, 30.0)
    pid = check_exit(result, command).strip()
    if not pid.isdigit():
        raise DataPlaneError(f"the sandbox did not report the background process id: {pid!r}")
    logger.debug("started background process %s (output in %s)", pid, log)
    return Started(int(pid), log, state)


def run_checked(target: RouterTarget, argv: list[str], what: str) -> Flow[Executed]:
    """Run one of the SDK's own commands (60 s); DataPlaneError naming ``what`` if it fails."""
    result = yield from execute(target, argv, 60.0)
    if result.exit_code != 0:
        raise DataPlaneError(f"{what}: {result.stderr.strip() or f'exit code {result.exit_code}'}")
    return result


def clean_up(target: RouterTarget, argv: list[str], what: str) -> Flow[None]:
    """Best effort: run a cleanup command; a failure is logged, never raised."""
    try:
        yield from execute(target, argv, 10.0)
    except Exception as exc:
        logger.warning("could not remove %s: %s", what, exc)
