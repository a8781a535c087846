"""Code run in a language: the script is written to a file (:mod:`.files`), then run by the
language's interpreter under a deadline (:mod:`.commands`)."""

from __future__ import annotations

import secrets

from .._config import check_text, command_timeout
from .._protocol import Flow
from ..exceptions import InvalidArgumentError
from ._common import Executed, RouterTarget, logger
from .commands import check_exit, execute_shell
from .files import upload

LANGUAGES: dict[str, str] = {
    # language -> how the wrapper runs the script it opened on fd 3
    "python": "exec python3 - <&3",  # the program on stdin: cwd (the workspace) on sys.path
    "py": "exec python3 - <&3",
    "python3": "exec python3 - <&3",
    "bash": "exec bash /dev/fd/3",  # stdin stays empty, as for any command
    "sh": "exec bash /dev/fd/3",  # sh scripts have always run under bash
}


def run_code(
    target: RouterTarget, language: str, code: str, timeout: float | None
) -> Flow[Executed]:
    """Write ``code`` to a file, then run it with the language's interpreter (two requests).

    The script is opened and removed before the code starts (so nothing is left behind, even
    when the run is stopped at its timeout, with everything it started), and the working
    directory is the workspace.
    """
    if not isinstance(language, str) or language.lower() not in LANGUAGES:
        raise InvalidArgumentError(
            f"Unsupported language: {language}; use one of {', '.join(LANGUAGES)}"
        )
    if not isinstance(code, str):
        raise InvalidArgumentError("code must be a string")
    check_text(code, "code")
    runner = LANGUAGES[language.lower()]
    if runner.startswith("exec python3"):
        code = repair_escaped_newlines(code)
    script = f"./.agentcube-run-{secrets.token_hex(16)}"  # no character the shell reads
    yield from upload(target, code.encode("utf-8"), script, None)
    return (
        yield from execute_shell(
            target, f"exec 3<{script} && rm -f -- {script} && {runner}", command_timeout(timeout)
        )
    )


def code_output(target: RouterTarget, language: str, code: str, timeout: float | None) -> Flow[str]:
    """``run_code``: stdout of code that exited 0; CommandExecutionError otherwise."""
    result = yield from run_code(target, language, code, timeout)
    return check_exit(result, language)


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
