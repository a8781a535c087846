"""Every operation the SDK performs, as a flow (see :mod:`agentcube._protocol`).

One place for each rule: the request (path, body, headers, timeouts, how it may be retried),
its validation before anything is sent, and how the answer becomes a result or an error. The
sync and the async clients run these same flows; only the driver differs.
"""

from __future__ import annotations

import logging
import math
import posixpath
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import quote

from . import _files
from ._config import (
    check_name,
    check_namespace,
    check_server_session_id,
    check_session_id,
    check_timeout,
    is_valid_session_id,
)
from ._protocol import (
    ONCE,
    Call,
    Endpoint,
    FileRange,
    Flow,
    Local,
    Multipart,
    Reply,
    encode_json,
)
from .exceptions import (
    SESSION_HEADER,
    CommandExecutionError,
    DataPlaneError,
    InvalidArgumentError,
    InvalidResponseError,
    SessionError,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .kinds import ResourceKind
    from .models import CreateSessionResponse, ExecuteResponse, FileInfo

_M = TypeVar("_M", bound="BaseModel")

logger = logging.getLogger("agentcube.ops")

# The read timeout of a create (WorkloadManager POST or Router bootstrap): longer than the
# 2 minutes after which the WorkloadManager answers 504 for a sandbox that is not ready.
CREATE_READ_TIMEOUT = 150.0
DEFAULT_COMMAND_TIMEOUT = 120.0
# The HTTP read timeout of api/execute is the command's own timeout plus this margin, so that
# the sandbox always answers (exit code 124) before the client gives up.
EXECUTE_MARGIN = 30.0
# PicoD refuses request bodies over 32 MiB, and the Router must receive a whole request within
# 30 s: larger files go in parts of this size (8 MiB arrives in 30 s down to ~2.3 Mbit/s).
PART_SIZE = 8 * 1024 * 1024
MAX_PART_SIZE = 32 * 1024 * 1024 - 64 * 1024
MIN_PART_SIZE = 64 * 1024

_NOT_FOUND = frozenset({404})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# A bare GET may be answered 3xx-5xx by the agent itself: the session exists all the same,
# and the router's session header names it.
_BOOTSTRAP_OK = frozenset(range(300, 600))

_LANGUAGES: dict[str, str] = {
    # language -> how the wrapper runs the script it opened on fd 3
    "python": "exec python3 - <&3",  # the program on stdin: cwd (the workspace) on sys.path
    "py": "exec python3 - <&3",
    "python3": "exec python3 - <&3",
    "bash": "exec bash /dev/fd/3",  # stdin stays empty, as for any command
    "sh": "exec bash /dev/fd/3",  # sh scripts have always run under bash
}


class BackgroundProcess(NamedTuple):
    """A command started with ``execute_command(..., background=True)``.

    Attributes:
        pid: its process id in the sandbox (``kill <pid>`` stops it).
        log_file: the workspace file receiving its stdout and stderr.
    """

    pid: int
    log_file: str


class RouterTarget(NamedTuple):
    """One template's sandboxes behind the Router (and, with ``session_id``, one of them)."""

    endpoint: Endpoint
    prefix: str  # path from the endpoint's base URL to ``.../invocations/`` (ends with "/")
    session_id: str | None
    headers: Mapping[str, str]

    @classmethod
    def of(
        cls,
        endpoint: Endpoint,
        kind: ResourceKind,
        namespace: str,
        name: str,
        session_id: str | None = None,
    ) -> RouterTarget:
        return cls.with_prefix(
            endpoint,
            kind.invocations_path(check_namespace(namespace), check_name(name, "name")),
            session_id,
        )

    @classmethod
    def with_prefix(
        cls, endpoint: Endpoint, prefix: str, session_id: str | None = None
    ) -> RouterTarget:
        headers = {SESSION_HEADER: session_id} if session_id else {}
        return cls(endpoint, prefix, session_id, headers)

    def call(self, method: str, subpath: str, **kw: Any) -> Call:
        return Call(
            self.endpoint,
            method,
            self.prefix + subpath,
            headers=self.headers,
            session_id=self.session_id,
            session_scoped=self.session_id is not None,
            **kw,
        )


# -- WorkloadManager -----------------------------------------------------------------------------


def create_session(
    endpoint: Endpoint,
    kind: ResourceKind,
    name: str,
    namespace: str,
    *,
    ttl: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    sent: list[Call] | None = None,
    on_id: Callable[[str], None] | None = None,
) -> Flow[CreateSessionResponse]:
    """``POST /v1/<segment>`` with ``{"name", "namespace", "ttl", "metadata"}``.

    Sent once (a retry could make a second sandbox), with a read timeout past the server's own
    2-minute bound. Only a valid ``sessionId`` is required of the answer. The call is appended
    to ``sent`` before it goes out, and ``on_id`` gets the new id the moment it is read.
    """
    body = yield from _create(endpoint, kind, name, namespace, ttl, metadata, sent, on_id)
    return _create_model(body)


def create_session_id(
    endpoint: Endpoint,
    kind: ResourceKind,
    name: str,
    namespace: str,
    *,
    ttl: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    sent: list[Call] | None = None,
    on_id: Callable[[str], None] | None = None,
) -> Flow[str]:
    """:func:`create_session` returning only the new id (no wire model is built)."""
    body = yield from _create(endpoint, kind, name, namespace, ttl, metadata, sent, on_id)
    session_id: str = body["sessionId"]
    return session_id


def _create(
    endpoint: Endpoint,
    kind: ResourceKind,
    name: str,
    namespace: str,
    ttl: int | None,
    metadata: Mapping[str, Any] | None,
    sent: list[Call] | None,
    on_id: Callable[[str], None] | None,
) -> Flow[dict[str, Any]]:
    check_name(name, "name")
    check_namespace(namespace)
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
        raise InvalidArgumentError(f"ttl must be a positive number of seconds, not {ttl!r}")
    if metadata is not None and (
        not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata)
    ):
        raise InvalidArgumentError("metadata must be a dict with string keys")
    body = encode_json(
        {"name": name, "namespace": namespace, "ttl": ttl, "metadata": dict(metadata or {})}
    )
    call = Call(
        endpoint,
        "POST",
        kind.create_path,
        body=body,
        content_type="application/json",
        read_timeout=max(endpoint.read_timeout, CREATE_READ_TIMEOUT),
        finish_on_cancel=True,
    )
    if sent is not None:
        sent.append(call)
    reply = yield call
    answer = _create_body(reply, kind, on_id)
    logger.info("created %s session %s", kind.name, answer["sessionId"])
    return answer


def created_session_id(reply: Reply | None) -> str | None:
    """The valid session id a create answer carries, if any (never raises)."""
    if reply is None:
        return None
    try:
        body = reply.json()
    except ValueError:
        return None
    session_id = body.get("sessionId") if isinstance(body, dict) else None
    return session_id if is_valid_session_id(session_id) else None


def parse_create_answer(
    reply: Reply, kind: ResourceKind, on_id: Callable[[str], None] | None = None
) -> CreateSessionResponse:
    return _create_model(_create_body(reply, kind, on_id))


def _create_body(
    reply: Reply, kind: ResourceKind, on_id: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The create answer as a dict with a valid ``sessionId`` (handed to ``on_id`` at once)."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    session_id = body.get("sessionId") if isinstance(body, dict) else None
    if not session_id:
        raise InvalidResponseError(
            f"Failed to create session: 'sessionId' missing from response (HTTP {reply.status});"
            f" a {kind.name} sandbox may be running"
        )
    check_server_session_id(session_id)
    if on_id is not None:
        on_id(session_id)
    assert isinstance(body, dict)
    return body


def _create_model(body: dict[str, Any]) -> CreateSessionResponse:
    from .models import CreateSessionResponse

    try:
        return CreateSessionResponse.model_validate(body)
    except ValueError:  # the id is what matters; never lose it over another field
        return CreateSessionResponse.model_construct(session_id=body["sessionId"])


def delete_session(
    endpoint: Endpoint,
    kind: ResourceKind,
    session_id: str,
    *,
    timeout: float | None = None,
    deadline: float | None = None,
) -> Flow[bool]:
    """``DELETE /v1/<segment>/sessions/<id>``: True if deleted now, False if already gone.

    Retried (it is idempotent). Only the WorkloadManager's own 404 (``{"message"}``) means
    "already gone": a 404 from anything else at that URL (a misconfigured URL) raises.
    """
    check_session_id(session_id)
    reply = yield Call(
        endpoint,
        "DELETE",
        kind.session_path(session_id),  # validated: only URL-safe characters
        read_timeout=timeout,
        ok=_NOT_FOUND,
        session_id=session_id,
        deadline=deadline,
        finish_on_cancel=True,
    )
    if reply.status == 404:
        if not _is_workload_manager_message(reply):
            where = f"DELETE {endpoint.base_url}{kind.session_path(session_id)}"
            raise reply.error(where, session_id)
        logger.info("%s session %s was already gone", kind.name, session_id)
        return False
    logger.info("deleted %s session %s", kind.name, session_id)
    return True


def _is_workload_manager_message(reply: Reply) -> bool:
    try:
        body = reply.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("message"), str)


# -- Router: agent runtimes ----------------------------------------------------------------------


def bootstrap_reply(target: RouterTarget, sent: list[Call] | None = None) -> Flow[Reply]:
    """A bare ``GET .../invocations/``: the Router creates a session and names it in the
    answer's session header, whatever the agent answered for that path. Sent once."""
    call = Call(
        target.endpoint,
        "GET",
        target.prefix,
        ok=_BOOTSTRAP_OK,
        retry=ONCE,
        read_timeout=max(target.endpoint.read_timeout, CREATE_READ_TIMEOUT),
        finish_on_cancel=True,
    )
    if sent is not None:
        sent.append(call)
    reply: Reply = yield call
    return reply


def bootstrapped_session_id(reply: Reply | None) -> str | None:
    """The valid session id a bootstrap answer's header carries, if any (never raises)."""
    header = reply.headers.get(SESSION_HEADER) if reply is not None else None
    return header if is_valid_session_id(header) else None


def bootstrap(
    target: RouterTarget,
    sent: list[Call] | None = None,
    on_id: Callable[[str], None] | None = None,
) -> Flow[str]:
    """Bootstrap a session (see :func:`bootstrap_reply`) and return its id; ``sent`` and
    ``on_id`` as for :func:`create_session`."""
    reply = yield from bootstrap_reply(target, sent)
    header = reply.headers.get(SESSION_HEADER)
    if not header:
        if reply.status >= 300:  # the Router refused without opening a session
            raise reply.error(f"GET {target.endpoint.base_url}{target.prefix}")
        raise InvalidResponseError(
            f"Missing required response header: {SESSION_HEADER} (status: {reply.status}, "
            f"content-type: {reply.headers.get('Content-Type')}, "
            f"content-length: {reply.headers.get('Content-Length')})"
        )
    session_id = check_server_session_id(header)
    if on_id is not None:
        on_id(session_id)
    logger.info("bootstrapped agent-runtime session %s", session_id)
    return session_id


def invoke_reply(
    target: RouterTarget, payload: Any, timeout: float | None, path: str, *, raise_errors: bool
) -> Flow[Reply]:
    """``POST invocations/<path>`` with ``payload`` as JSON; sent once."""
    if target.session_id is None:
        raise SessionError("no session: bootstrap one first")
    body = encode_json(payload)
    reply: Reply = yield target.call(
        "POST",
        encode_invoke_path(path),
        body=body,
        content_type="application/json",
        read_timeout=check_timeout(timeout, "timeout"),
        ok=frozenset() if raise_errors else frozenset(range(300, 600)),
    )
    return reply


def invoke(target: RouterTarget, payload: Any, timeout: float | None, path: str) -> Flow[Any]:
    """Invoke the agent; return its JSON answer, or the text when it is not JSON."""
    reply = yield from invoke_reply(target, payload, timeout, path, raise_errors=True)
    try:
        return reply.json()
    except ValueError:
        return reply.text


def encode_invoke_path(path: str) -> str:
    """Encode the path (and optional query) an agent is invoked at; refuse dot segments."""
    if not isinstance(path, str):
        raise InvalidArgumentError("path must be a string")
    if not path:
        return ""
    _check_text(path, "path")
    if any(c in path for c in "\r\n#"):
        raise InvalidArgumentError("path must not contain line breaks or '#'")
    route, sep, query = path.partition("?")
    route = route.lstrip("/")
    if any(s in (".", "..") for s in route.split("/")):
        raise InvalidArgumentError(f"path must not contain '.' or '..' segments: {path!r}")
    encoded = quote(route, safe="/:@!$&'()*+,;=-._~")
    return encoded + sep + quote(query, safe="=&:@!$'()*+,;/?-._~")


# -- Router: code interpreters -------------------------------------------------------------------


def execute(
    target: RouterTarget,
    command: list[str],
    timeout: float | None = None,
    *,
    working_dir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Flow[ExecuteResponse]:
    """``POST api/execute``: run an argv in a fresh process; never raises for its exit code.

    ``timeout`` (seconds; None or 0: 120) is enforced by the sandbox (exit code 124); the HTTP
    read timeout is that plus 30 s, so the sandbox always answers first.
    """
    reply = yield _execute_call(target, command, timeout, working_dir, env)
    return parse_execute_answer(reply, target.session_id)


class Executed:
    """What the SDK's own commands read of an ``api/execute`` answer (no wire model built)."""

    __slots__ = ("exit_code", "stderr", "stdout")

    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr


def run_argv(target: RouterTarget, command: list[str], timeout: float | None) -> Flow[Executed]:
    """:func:`execute` for the SDK's own use: the exit code and the output, nothing more."""
    reply = yield _execute_call(target, command, timeout, None, None)
    return parse_executed(reply, target.session_id)


def parse_executed(reply: Reply, session_id: str | None) -> Executed:
    """The answer as :func:`parse_execute_answer` reads it, without building the model when
    the answer has the usual shape (an int exit code, string or null output)."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    if type(body) is dict:
        code = body.get("exit_code")
        out = body.get("stdout")
        err = body.get("stderr")
        if (
            type(code) is int
            and (out is None or type(out) is str)
            and (err is None or type(err) is str)
        ):
            return Executed(code, out or "", err or "")
    # Any other shape: the model decides (it accepts some, and words the error).
    model = parse_execute_answer(reply, session_id)
    return Executed(model.exit_code, model.stdout, model.stderr)


def _execute_call(
    target: RouterTarget,
    command: list[str],
    timeout: float | None,
    working_dir: str | None,
    env: Mapping[str, str] | None,
) -> Call:
    argv = check_argv(command)
    seconds = command_timeout(timeout)
    body: dict[str, Any] = {"command": argv, "timeout": go_duration(seconds)}
    if working_dir is not None:
        body["working_dir"] = workspace_path(working_dir, "working_dir")
    if env is not None:
        if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
            for k, v in env.items()
        ):
            raise InvalidArgumentError("env must map variable names to string values")
        body["env"] = dict(env)
    return target.call(
        "POST",
        "api/execute",
        body=encode_json(body),
        content_type="application/json",
        read_timeout=seconds + EXECUTE_MARGIN,
    )


def parse_execute_answer(reply: Reply, session_id: str | None) -> ExecuteResponse:
    from .models import ExecuteResponse

    return _parse_model(ExecuteResponse, reply, "api/execute", session_id)


def _parse_model(model: type[_M], reply: Reply, route: str, session_id: str | None) -> _M:
    """The answer as a wire model; DataPlaneError when it is not one."""
    try:
        return model.model_validate_json(reply.content)
    except ValueError as exc:
        raise DataPlaneError(
            f"{route} answered HTTP {reply.status} without a valid {model.__name__} "
            f"(session {session_id}): {_first_line(exc)}"
        ) from None


def check_argv(command: object) -> list[str]:
    if isinstance(command, tuple):
        command = list(command)
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise InvalidArgumentError("command must be a non-empty list of strings")
    for arg in command:
        _check_text(arg, "a command argument")
    return command


def command_timeout(timeout: object) -> float:
    """A command's timeout in seconds: None or 0 mean the default (120 s)."""
    if timeout is None or (
        isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout == 0
    ):
        return DEFAULT_COMMAND_TIMEOUT
    seconds = check_timeout(timeout, "timeout")
    assert seconds is not None
    return seconds


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration string ("30s", "1500ms"), rounded up to the millisecond."""
    millis = math.ceil(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


# A command string runs under timeout(1), which signals its whole process group at the
# deadline: the sandbox itself kills only the process it started (the shell), and whatever
# the shell started would keep the call open until it exits. Without timeout(1) in the
# image, the shell runs as is.
_UNDER_DEADLINE = (
    'if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 "$2" sh -c "$1"; fi; '
    'exec sh -c "$1"'
)
# The sandbox's own deadline comes after timeout(1)'s TERM and its KILL 5 s later.
_DEADLINE_SLACK = 10.0


def execute_command(
    target: RouterTarget, command: str | list[str], timeout: float | None
) -> Flow[Executed]:
    """Run a string (through ``sh -c``, its whole process group stopped at the timeout) or an
    argv list (run as is); the answer, whatever the exit code."""
    if not isinstance(command, str):
        return (yield from run_argv(target, check_argv(command), timeout))
    if not command.strip():
        raise InvalidArgumentError("command must not be empty")
    return (yield from _execute_shell(target, command, command_timeout(timeout)))


def _execute_shell(target: RouterTarget, script: str, seconds: float) -> Flow[Executed]:
    _check_text(script, "command")
    limit = f"{math.ceil(seconds * 1000) / 1000:.3f}"
    argv = ["sh", "-c", _UNDER_DEADLINE, "sh", script, limit]
    result = yield from run_argv(target, argv, seconds + _DEADLINE_SLACK)
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
) -> Flow[str | BackgroundProcess]:
    """``execute_command``: stdout of a command that exited 0, or the started
    :class:`BackgroundProcess`; CommandExecutionError for a non-zero exit."""
    if background:
        return (yield from start_background(target, command, log_file))
    if log_file is not None:
        raise InvalidArgumentError("log_file is only for background=True")
    result = yield from execute_command(target, command, timeout)
    return check_exit(result, command)


def code_output(target: RouterTarget, language: str, code: str, timeout: float | None) -> Flow[str]:
    """``run_code``: stdout of code that exited 0; CommandExecutionError otherwise."""
    result = yield from run_code(target, language, code, timeout)
    return check_exit(result, language)


def start_background(
    target: RouterTarget, command: str | list[str], log_file: str | None = None
) -> Flow[BackgroundProcess]:
    """Start ``command`` detached from the call: its output goes to ``log_file`` (default
    ``.agentcube-bg-<random>.log`` in the workspace), and the call returns at once.

    A plain ``cmd &`` keeps ``api/execute`` open: the sandbox answers only once every process
    holding the command's output pipe has exited, and a background job inherits that pipe.
    """
    if log_file is None:
        log = f".agentcube-bg-{secrets.token_hex(6)}.log"
    else:
        log = workspace_path(log_file, "log_file", allow_root=False)
    launch = 'log=$1; shift; mkdir -p -- "$(dirname -- "$log")" && '
    if isinstance(command, str):
        if not command.strip():
            raise InvalidArgumentError("command must not be empty")
        _check_text(command, "command")
        argv = [
            "sh",
            "-c",
            launch + 'sh -c "$1" >"$log" 2>&1 </dev/null & echo $!',
            "sh",
            "./" + log,
            command,
        ]
    else:
        argv = [
            "sh",
            "-c",
            launch + '"$@" >"$log" 2>&1 </dev/null & echo $!',
            "sh",
            "./" + log,
            *check_argv(command),
        ]
    result = yield from run_argv(target, argv, 30.0)
    pid = check_exit(result, command).strip()
    if not pid.isdigit():
        raise DataPlaneError(f"the sandbox did not report the background process id: {pid!r}")
    logger.debug("started background process %s (output in %s)", pid, log)
    return BackgroundProcess(int(pid), log)


def run_code(
    target: RouterTarget, language: str, code: str, timeout: float | None
) -> Flow[Executed]:
    """Write ``code`` to a file, then run it with the language's interpreter (two requests).

    The script is opened and removed before the code starts (so nothing is left behind, even
    when the run is stopped at its timeout, with everything it started), and the working
    directory is the workspace.
    """
    if not isinstance(language, str) or language.lower() not in _LANGUAGES:
        raise InvalidArgumentError(
            f"Unsupported language: {language}; use one of {', '.join(_LANGUAGES)}"
        )
    if not isinstance(code, str):
        raise InvalidArgumentError("code must be a string")
    _check_text(code, "code")
    runner = _LANGUAGES[language.lower()]
    if runner.startswith("exec python3"):
        code = repair_escaped_newlines(code)
    script = f"./.agentcube-run-{secrets.token_hex(16)}"  # no character the shell reads
    yield from upload(target, code.encode("utf-8"), script, None)
    return (
        yield from _execute_shell(
            target, f"exec 3<{script} && rm -f -- {script} && {runner}", command_timeout(timeout)
        )
    )


def repair_escaped_newlines(code: str) -> str:
    """Python code that does not parse but would with every literal backslash-n made a line
    break (LLMs often send such double-escaped code) is repaired; anything else is unchanged."""
    if "\\n" not in code:
        return code
    import ast

    try:
        ast.parse(code)
        return code
    except SyntaxError:
        pass
    except Exception:  # e.g. NUL bytes on older Pythons: leave it to the interpreter
        return code
    fixed = code.replace("\\n", "\n")
    try:
        ast.parse(fixed)
    except Exception:
        return code
    logger.warning("Detected and fixed double-escaped newlines in Python code.")
    return fixed


# -- files ---------------------------------------------------------------------------------------


def workspace_path(path: object, what: str = "remote_path", *, allow_root: bool = True) -> str:
    """A sandbox path as the sandbox resolves it: relative to the workspace, cleaned.

    An absolute path is taken relative to the workspace (as the sandbox does); ``..`` that
    stays inside is resolved here, so the path reaches the sandbox in its plain form. ``"."``
    is the workspace itself.

    Raises:
        InvalidArgumentError: not a non-empty string, NUL or invalid text, or it leaves the
            workspace (or names the workspace itself where ``allow_root`` is False).
    """
    if not isinstance(path, str) or not path:
        raise InvalidArgumentError(f"{what} must be a non-empty string")
    _check_text(path, what)
    clean = posixpath.normpath(path)
    if clean.startswith("/"):
        clean = clean.lstrip("/") or "."
    if clean == ".." or clean.startswith("../"):
        raise InvalidArgumentError(f"{what} {path!r} leaves the sandbox's workspace")
    if clean == "." and not allow_root:
        raise InvalidArgumentError(f"{what} {path!r} names the workspace directory, not a file")
    return clean


def check_mode(mode: object) -> int | None:
    """A file mode: None, an int, or an octal string such as "0755" or "755"."""
    if mode is None:
        return None
    if isinstance(mode, int) and not isinstance(mode, bool):
        bits = mode
    elif isinstance(mode, str) and 1 <= len(mode) <= 4 and all(c in "01234567" for c in mode):
        bits = int(mode, 8)
    else:
        raise InvalidArgumentError(f"mode must be an octal string like '0644', not {mode!r}")
    if not 0 <= bits <= 0o7777:
        raise InvalidArgumentError(f"mode {mode!r} is out of range (0 to 0o7777)")
    return bits


def parse_mode(text: object) -> int | None:
    """Permission bits from a file-info ``mode``: Go's FileMode string (``-rwxr-xr-x``,
    ``urwxr-xr-x`` for setuid) or an octal string; None when it is neither."""
    if not isinstance(text, str) or not text:
        return None
    if text.isdigit() and all(c in "01234567" for c in text):
        return int(text, 8)
    if len(text) < 10:
        return None
    perms, prefix = text[-9:], text[:-9]
    bits = 0
    for i, c in enumerate(perms):
        if c == "rwxrwxrwx"[i]:
            bits |= 1 << (8 - i)
        elif c != "-":
            return None
    for letter, bit in (("u", 0o4000), ("g", 0o2000), ("t", 0o1000)):
        if letter in prefix:
            bits |= bit
    return bits


def go_mode_string(bits: int) -> str:
    """A regular file's mode as Go prints it."""
    prefix = "".join(c for c, bit in (("u", 0o4000), ("g", 0o2000), ("t", 0o1000)) if bits & bit)
    perms = "".join(c if bits & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
    return (prefix or "-") + perms


def check_part_size(part_size: object) -> int:
    if part_size is None:
        return PART_SIZE
    if (
        isinstance(part_size, bool)
        or not isinstance(part_size, int)
        or not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE
    ):
        raise InvalidArgumentError(
            f"part_size must be an int between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes"
        )
    return part_size


def write_file(
    target: RouterTarget,
    content: object,
    remote_path: str,
    mode: object = None,
    part_size: object = None,
) -> Flow[FileInfo]:
    """Write text (UTF-8) or bytes to ``remote_path`` in the sandbox (see :func:`upload`)."""
    info = yield from write_file_answer(target, content, remote_path, mode, part_size)
    return file_info(info)


def write_file_answer(
    target: RouterTarget,
    content: object,
    remote_path: str,
    mode: object = None,
    part_size: object = None,
) -> Flow[dict[str, Any]]:
    """:func:`write_file` returning the file's info as a dict (no wire model is built)."""
    if isinstance(content, str):
        _check_text(content, "content")
        data = content.encode("utf-8")
    elif isinstance(content, (bytes, bytearray, memoryview)):
        data = bytes(content)
    else:
        raise InvalidArgumentError("content must be str or bytes")
    return (yield from upload(target, data, remote_path, mode, part_size))


def upload_file(
    target: RouterTarget,
    local_path: str,
    remote_path: str,
    mode: object = None,
    part_size: object = None,
) -> Flow[FileInfo]:
    """Stream a local file to ``remote_path`` (see :func:`upload`); FileNotFoundError before
    anything is sent when it does not exist."""
    info = yield from upload_file_answer(target, local_path, remote_path, mode, part_size)
    return file_info(info)


def upload_file_answer(
    target: RouterTarget,
    local_path: str,
    remote_path: str,
    mode: object = None,
    part_size: object = None,
) -> Flow[dict[str, Any]]:
    """:func:`upload_file` returning the file's info as a dict (no wire model is built)."""
    import os

    path = os.fspath(local_path)
    if not isinstance(path, str):
        raise InvalidArgumentError("local_path must be a str path")
    remote = workspace_path(remote_path, allow_root=False)
    size: int = yield Local(_files.file_size, (path,))
    return (yield from upload(target, FileRange(path, 0, size), remote, mode, part_size))


def upload(
    target: RouterTarget,
    source: bytes | FileRange,
    remote_path: str,
    mode: object = None,
    part_size: object = None,
) -> Flow[dict[str, Any]]:
    """Put ``source`` at ``remote_path``: one multipart ``POST api/files`` up to ``part_size``
    bytes (8 MiB), else in parts assembled in the sandbox (see :func:`_upload_in_parts`).

    A ``mode`` asked for holds also over an existing file (the sandbox applies it only when it
    creates the file): when the answer shows another mode, one ``chmod`` follows. Without a
    mode, a new file gets the sandbox's default (0644 less its umask) and an existing file
    keeps its mode. Returns the file's info as the sandbox answered it (see :func:`file_info`).
    """
    remote = workspace_path(remote_path, allow_root=False)
    bits = check_mode(mode)
    limit = check_part_size(part_size)
    size = len(source) if isinstance(source, bytes) else source.length
    if size > limit:
        return (yield from _upload_in_parts(target, source, size, remote, bits, limit))
    info = yield from _upload_one(target, source, remote, bits)
    if bits is not None and parse_mode(info.get("mode")) != bits:
        yield from _run_checked(
            target,
            ["chmod", f"{bits:o}", "./" + (info.get("path") or remote)],
            f"{remote_path!r} was written but its mode could not be set",
        )
        info["mode"] = go_mode_string(bits)
    return info


def _upload_one(
    target: RouterTarget, source: bytes | FileRange, remote: str, bits: int | None
) -> Flow[dict[str, Any]]:
    fields = {"path": remote, "mode": f"{0o644 if bits is None else bits & 0o777:04o}"}
    body = Multipart(fields, source, secrets.token_hex(16))
    reply = yield target.call("POST", "api/files", body=body)
    return parse_file_info(reply, target.session_id)


# Joins the parts (in name order) into a temporary file beside the target, checks its size,
# sets the mode, and renames it over the target: the target is whole or untouched. The parts
# and the temporary file are removed whatever happens.
_ASSEMBLE = (
    'parts=$1 tmp=$2 dst=$3 size=$4 mode=$5; trap \'rm -rf -- "$parts" "$tmp"\' EXIT; '
    'if [ -d "$dst" ]; then echo "cannot write $dst: is a directory" >&2; exit 1; fi; '
    'for p in "$parts"/*; do cat -- "$p" || exit 1; done >"$tmp" || exit 1; '
    'n=$(($(wc -c <"$tmp"))); if [ "$n" -ne "$size" ]; then '
    'echo "assembled $n of $size bytes" >&2; exit 1; fi; '
    'if [ -n "$mode" ]; then chmod "$mode" "$tmp" || exit 1; fi; '
    'mv -f -- "$tmp" "$dst"'
)


def _upload_in_parts(
    target: RouterTarget,
    source: bytes | FileRange,
    size: int,
    remote: str,
    bits: int | None,
    part_size: int,
) -> Flow[dict[str, Any]]:
    """Upload ``source`` as parts under a hidden directory beside the target, then assemble
    them into the target in the sandbox, atomically (``ceil(size / part_size) + 1`` requests).
    A failure removes the parts; no half file ever appears at the target."""
    parent = posixpath.dirname(remote)
    stem = posixpath.join(parent, f".agentcube-upload-{secrets.token_hex(8)}")
    parts_dir, tmp = "./" + stem, f"./{stem}.tmp"
    try:
        for index, offset in enumerate(range(0, size, part_size)):
            length = min(part_size, size - offset)
            chunk: bytes | FileRange
            if isinstance(source, bytes):
                chunk = source[offset : offset + length]
            else:
                chunk = FileRange(source.path, source.offset + offset, length)
            yield from _upload_one(target, chunk, f"{stem}/{index:08d}", None)
        mode = "" if bits is None else f"{bits:o}"
        yield from _run_checked(
            target,
            ["sh", "-c", _ASSEMBLE, "sh", parts_dir, tmp, "./" + remote, str(size), mode],
            f"upload of {remote!r} could not be assembled in the sandbox",
        )
    except GeneratorExit:
        raise
    except BaseException:
        yield from _clean_up(
            target, ["rm", "-rf", "--", parts_dir, tmp], f"the parts of {remote!r}"
        )
        raise
    return {"path": remote, "size": size, "mode": None if bits is None else go_mode_string(bits)}


def _clean_up(target: RouterTarget, argv: list[str], what: str) -> Flow[None]:
    """Best effort: run a cleanup command; a failure is logged, never raised."""
    try:
        yield from run_argv(target, argv, 10.0)
    except Exception as exc:
        logger.warning("could not remove %s: %s", what, exc)


def _run_checked(target: RouterTarget, argv: list[str], what: str) -> Flow[Executed]:
    result = yield from run_argv(target, argv, 60.0)
    if result.exit_code != 0:
        raise DataPlaneError(f"{what}: {result.stderr.strip() or f'exit code {result.exit_code}'}")
    return result


def parse_file_info(reply: Reply, session_id: str | None) -> dict[str, Any]:
    """The answer of ``POST api/files`` as a dict, checked as :class:`~agentcube.models.FileInfo`
    checks it (the model is built only when the answer has an unusual shape)."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    if type(body) is dict:
        mode = body.get("mode")
        if (
            type(body.get("path", "")) is str
            and type(body.get("size", 0)) is int
            and (mode is None or type(mode) is str)
        ):
            return body
    from .models import FileInfo

    model = _parse_model(FileInfo, reply, "api/files", session_id)
    return model.model_dump()


def file_info(info: dict[str, Any]) -> FileInfo:
    """The :class:`~agentcube.models.FileInfo` of a checked file-info dict."""
    from .models import FileInfo

    return FileInfo.model_validate(info)


def download_file(target: RouterTarget, remote_path: str, local_path: str) -> Flow[None]:
    """Stream ``remote_path`` into ``local_path`` (see :class:`agentcube._files.FileSink`).

    The path is cleaned first (the sandbox's file server refuses any ``..`` element). The file
    server redirects every ``.../index.html`` to its directory; on a redirect the file is
    linked to a temporary name beside it, fetched under that name, and the link removed.
    """
    import os

    remote = workspace_path(remote_path, allow_root=False)
    local = os.fspath(local_path)
    if not isinstance(local, str):
        raise InvalidArgumentError("local_path must be a str path")
    sink = _files.FileSink(os.path.abspath(local), remote_path, target.session_id)
    yield Local(sink.prepare)
    reply = yield _download_call(target, remote, sink)
    if reply.status not in _REDIRECTS:
        return None
    alias = posixpath.join(posixpath.dirname(remote), f".agentcube-download-{secrets.token_hex(8)}")
    yield from _run_checked(
        target,
        [
            "sh",
            "-c",
            'ln -f -- "$1" "$2" 2>/dev/null || cp -- "$1" "$2"',
            "sh",
            "./" + remote,
            "./" + alias,
        ],
        f"{remote_path!r} could not be prepared for download",
    )
    try:
        reply = yield _download_call(target, alias, sink)
    except GeneratorExit:
        raise
    except BaseException:
        yield from _clean_up(target, ["rm", "-f", "--", "./" + alias], f"the link to {remote!r}")
        raise
    yield from _clean_up(target, ["rm", "-f", "--", "./" + alias], f"the link to {remote!r}")
    if reply.status in _REDIRECTS:
        raise DataPlaneError(f"the sandbox redirected the download of {remote_path!r} twice")
    return None


def _download_call(target: RouterTarget, remote: str, sink: _files.FileSink) -> Call:
    encoded = "/".join(quote(segment, safe="") for segment in remote.split("/"))
    return target.call("GET", "api/files/" + encoded, sink=sink, ok=_REDIRECTS)


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


def _check_text(value: str, what: str) -> None:
    if "\0" in value:
        raise InvalidArgumentError(f"{what} must not contain NUL")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no URL or JSON text can carry it as is
            raise InvalidArgumentError(f"{what} must be valid Unicode text") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
