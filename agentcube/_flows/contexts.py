"""Code contexts: a long-lived interpreter in the sandbox (:mod:`._interpreter`, started as a
background process) that keeps its state between runs, reached over PicoD's endpoints only.

A context lives in ``.agentcube/contexts/<id>/`` in the workspace: two FIFOs (``in``, ``out``),
the pids, and its output files. A run is one ``api/execute`` of a small ``sh`` script that
writes the request into ``in`` with ``printf`` and ``exec``\\ s ``cat out``, whose output is
the answer (no new interpreter per run). A run followed live (``on_stdout``/``on_stderr``)
submits the same way without waiting, then reads the output files with Range downloads until
``result.json`` appears (see :func:`.processes.follow`). ``close()`` kills both process groups
and removes the directory.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import secrets
import time
from typing import Any

from .._config import check_text, command_timeout
from .._protocol import Flow, Local, encode_json
from ..exceptions import CodeContextError, DataPlaneError, InvalidArgumentError
from ._common import ContextHandle, OutputCallback, RouterTarget, Stream
from .commands import execute
from .files import upload
from .processes import ALIVE, follow, new_state_dir

LANGUAGES = {"python": "python", "py": "python", "python3": "python", "bash": "bash"}

_NO_PYTHON = (
    "the sandbox has no python3 on its PATH: a code context needs it (it runs the context's "
    "interpreter driver, for bash contexts too); use run_code() or execute_command(), or a "
    "sandbox image with python3"
)
START = ALIVE + (
    f'd=$1; command -v python3 >/dev/null 2>&1 || {{ echo "{_NO_PYTHON}" >&2; exit 127; }}; '
    'mkdir -p -- "$d" || exit 1; S=; command -v setsid >/dev/null 2>&1 && S=setsid; '
    '$S python3 -c "$2" "$PWD/$d" "$3" >"$d/log" 2>&1 </dev/null & p=$!; echo "$p" >"$d/pid"; '
    'n=0; while [ ! -e "$d/ready" ]; do if ! alive "$p" || [ "$n" -ge 2000 ]; then '
    'cat "$d/log" >&2; kill -KILL "$p" 2>/dev/null; rm -rf -- "$d"; exit 1; fi; '
    'sleep 0.01 2>/dev/null || nap; n=$((n+1)); done; echo "$p"'
)
_GONE = "agentcube: the context's interpreter is not running"
# Arguments: the directory, the request (JSON), and "wait" (answer on out) or "follow".
RUN = ALIVE + (
    'd=$1; p=; read -r p <"$d/pid" 2>/dev/null; '
    f'if [ ! -p "$d/in" ] || ! alive "$p"; then echo "{_GONE}" >&2; exit 3; fi; '
    ': >"$d/stdout"; : >"$d/stderr"; '
    'if [ "$3" = follow ]; then rm -f -- "$d/result.json"; printf %s "$2" >"$d/in"; exit; fi; '
    'printf %s "$2" >"$d/in" && exec cat "$d/out"'
)
CLOSE = (
    'd=$1; for f in worker pid; do p=; read -r p <"$d/$f" 2>/dev/null || continue; '
    'kill -KILL -- "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done; rm -rf -- "$d"'
)
# A cell longer than this (the kernel's limit on one argument is 128 KiB) is uploaded first.
_INLINE_LIMIT = 100_000
# The sandbox's deadline for a run: the cell's timeout, the interrupt's grace, and slack.
_RUN_SLACK = 15.0


class ExecutionError:
    """An error raised by the code of a run (or its timeout): a result, not an exception.

    Attributes:
        name: the exception's class name (``ZeroDivisionError``); ``TimeoutError`` for a cell
            stopped at its timeout; ``InterpreterExited`` when the interpreter died during the
            run (its state is then lost); ``ExitStatus`` for a bash cell ending non-zero.
        value: the exception's message (for ``ExitStatus``, the status).
        traceback: the traceback as text, from the cell's own frames.
    """

    __slots__ = ("name", "traceback", "value")

    def __init__(self, name: str, value: str, traceback: str) -> None:
        self.name = name
        self.value = value
        self.traceback = traceback

    def __repr__(self) -> str:
        return f"ExecutionError(name={self.name!r}, value={self.value!r})"


class Result:
    """One rich value of a run, as a notebook shows it: the last expression's value (``main``)
    or an object passed to ``display()``, in the formats its ``_repr_*_`` methods give.

    Attributes:
        text: ``repr()`` of the value.
        html, markdown, svg, latex: text formats, or None.
        png, jpeg: image bytes, or None.
        json: a JSON value, or None.
        main: True for the cell's last expression.
    """

    __slots__ = ("html", "jpeg", "json", "latex", "main", "markdown", "png", "svg", "text")

    def __init__(self, data: dict[str, Any]) -> None:
        self.text: str = str(data.get("text", ""))
        self.html: str | None = _text(data, "html")
        self.markdown: str | None = _text(data, "markdown")
        self.svg: str | None = _text(data, "svg")
        self.latex: str | None = _text(data, "latex")
        self.png: bytes | None = _image(data, "png")
        self.jpeg: bytes | None = _image(data, "jpeg")
        self.json: Any = data.get("json")
        self.main: bool = bool(data.get("main"))

    def formats(self) -> list[str]:
        """The formats this value has (``text`` always)."""
        return [name for name in self.__slots__ if name != "main" and getattr(self, name)]

    def __repr__(self) -> str:
        return f"Result(formats={self.formats()}, text={self.text[:60]!r})"


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _image(data: dict[str, Any], key: str) -> bytes | None:
    value = data.get(key)
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value)
    except (binascii.Error, ValueError):
        return None


class Execution:
    """What one run of a code context gave.

    Attributes:
        stdout, stderr: everything the run printed (its subprocesses too).
        text: the last expression's value as text (its ``repr``), as a notebook shows it; None
            when the cell ends in a statement or the value is None.
        results: the rich values (:class:`Result`): objects passed to ``display()``, then the
            last expression's value.
        error: None, or the :class:`ExecutionError` the code raised.
        execution_count: the cell's number in this interpreter (Python contexts).
    """

    __slots__ = ("error", "execution_count", "results", "stderr", "stdout", "text")

    def __init__(
        self,
        stdout: str = "",
        stderr: str = "",
        text: str | None = None,
        results: list[Result] | None = None,
        error: ExecutionError | None = None,
        execution_count: int | None = None,
    ) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.text = text
        self.results = results or []
        self.error = error
        self.execution_count = execution_count

    def __repr__(self) -> str:
        return (
            f"Execution(text={self.text!r}, error={self.error!r}, stdout={self.stdout[:60]!r}, "
            f"results={len(self.results)})"
        )


@functools.lru_cache(maxsize=1)
def driver_source() -> str:
    """The interpreter driver's source (``_interpreter.py`` beside this module, read once),
    sent as ``python3 -c``."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_interpreter.py")
    with open(path, encoding="utf-8") as f:
        return f.read()


def check_language(language: object) -> str:
    if not isinstance(language, str) or language.lower() not in LANGUAGES:
        raise InvalidArgumentError(
            f"Unsupported context language: {language!r}; use python or bash"
        )
    return LANGUAGES[language.lower()]


def start_context(target: RouterTarget, language: str) -> Flow[ContextHandle]:
    """Start a context's interpreter in the background and wait until it is ready (one
    request, about the start-up time of ``python3``).

    Raises:
        CodeContextError: the sandbox has no ``python3`` (or no ``bash`` for a bash context),
            or the interpreter did not start (its own words are in the message).
    """
    lang = check_language(language)
    source: str = yield Local(driver_source)
    directory = new_state_dir("contexts")
    argv = ["sh", "-c", START, "sh", directory, source, lang]
    result = yield from execute(target, argv, 60.0)
    pid = result.stdout.strip()
    if result.exit_code != 0 or not pid.isdigit():
        why = result.stderr.strip() or f"exit code {result.exit_code}"
        if "SyntaxError" in why:
            why += " (the context's driver needs Python 3.7 or later as python3)"
        raise CodeContextError(
            f"the {lang} context could not be started in session {target.session_id}: {why}"
        )
    return ContextHandle(directory, lang, int(pid))


def run_cell(
    target: RouterTarget,
    handle: ContextHandle,
    code: str,
    timeout: float | None,
    on_stdout: OutputCallback | None = None,
    on_stderr: OutputCallback | None = None,
) -> Flow[Execution]:
    """Run ``code`` in the context: one request, or, with a callback, one to submit it and
    then the polls of :func:`.processes.follow` (the callbacks get the output as it comes)."""
    if not isinstance(code, str):
        raise InvalidArgumentError("code must be a string")
    check_text(code, "code")
    seconds = command_timeout(timeout)
    live = on_stdout is not None or on_stderr is not None
    request: dict[str, Any] = {
        "op": "run",
        "code": code,
        "timeout": seconds,
        "reply": "file" if live else "fifo",
    }
    if len(encode_json(request)) > _INLINE_LIMIT:
        name = f"cell-{secrets.token_hex(8)}.txt"
        yield from upload(target, code.encode("utf-8"), f"{handle.directory}/{name}")
        del request["code"]
        request["code_file"] = name
    answer = yield from _ask(target, handle, request, seconds + _RUN_SLACK, live)
    if live:
        streams = [
            Stream(f"{handle.directory}/stdout", on_stdout),
            Stream(f"{handle.directory}/stderr", on_stderr),
        ]
        done = f"{handle.directory}/result.json"
        deadline = time.monotonic() + seconds + _RUN_SLACK + 30.0
        answer = _read_answer((yield from follow(target, streams, done, deadline)), target)
    return _execution(answer)


def restart_context(target: RouterTarget, handle: ContextHandle) -> Flow[None]:
    """Replace the context's interpreter with a fresh one (one request): its state is gone."""
    yield from _ask(target, handle, {"op": "restart"}, 30.0, False)


def close_context(target: RouterTarget, handle: ContextHandle) -> Flow[None]:
    """Kill the context's processes and remove its directory (one request)."""
    yield from execute(target, ["sh", "-c", CLOSE, "sh", handle.directory], 30.0)


def _ask(
    target: RouterTarget, handle: ContextHandle, request: dict[str, Any], seconds: float, live: bool
) -> Flow[dict[str, Any]]:
    body = encode_json(request).decode("utf-8")
    argv = ["sh", "-c", RUN, "sh", handle.directory, body, "follow" if live else "wait"]
    result = yield from execute(target, argv, seconds)
    if result.exit_code == 3 and "agentcube:" in result.stderr:
        raise CodeContextError(
            f"the {handle.language} context's interpreter is no longer running in session "
            f"{target.session_id} (the sandbox may have restarted, or its process was killed): "
            "its state is lost; create a new context"
        )
    if result.exit_code != 0:
        raise DataPlaneError(
            f"the context did not answer (exit code {result.exit_code}): "
            f"{result.stderr.strip()[:500]}"
        )
    if live:
        return {}
    return _read_answer(result.stdout.encode("utf-8"), target)


def _read_answer(raw: bytes, target: RouterTarget) -> dict[str, Any]:
    try:
        answer = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise DataPlaneError(
            f"the context answered something unreadable (session {target.session_id}): "
            f"{raw[:200]!r}"
        )
    return answer


def _execution(answer: dict[str, Any]) -> Execution:
    error = answer.get("error")
    count = answer.get("count")
    return Execution(
        stdout=str(answer.get("stdout") or ""),
        stderr=str(answer.get("stderr") or ""),
        text=answer.get("text") if isinstance(answer.get("text"), str) else None,
        results=[Result(r) for r in answer.get("results") or () if isinstance(r, dict)],
        error=ExecutionError(
            str(error.get("name", "")), str(error.get("value", "")), str(error.get("traceback", ""))
        )
        if isinstance(error, dict)
        else None,
        execution_count=count if isinstance(count, int) else None,
    )
