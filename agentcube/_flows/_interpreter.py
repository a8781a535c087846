"""The program a code context runs inside the sandbox: its source is sent as ``python3 -c``
(the sandbox has no SDK), so it imports only the standard library and runs on Python 3.7+.

It is a supervisor and a worker. The supervisor (``python3 -c SOURCE DIR LANGUAGE``) makes the
two FIFOs ``DIR/in`` and ``DIR/out``, forks the worker, touches ``DIR/ready``, then serves one
request at a time: it reads a JSON request from ``in`` until EOF (the SDK's ``sh`` writes it
with ``printf``), hands it to the worker over a pipe, waits for the worker's answer, adds the
cell's output (the worker's stdout and stderr are the files ``DIR/stdout`` and ``DIR/stderr``)
and writes the answer to ``out`` (read by the same ``sh`` with ``cat``) or, for a run followed
live, to ``DIR/result.json``. The worker holds the state: a Python namespace, or a bash shell
that sources each cell. It is in a process group of its own, so that a cell past its timeout is
interrupted as Ctrl-C would (SIGINT to the group), and killed with its children if it does
not stop. A worker that dies is replaced on the next request; the answer says what was lost.
"""

# It runs users' code by design (exec, eval) and keeps going past their errors.
# ruff: noqa: S102, S307, S110, S112, S606

from __future__ import annotations

import ast
import base64
import errno
import json
import linecache
import os
import select
import shutil
import signal
import sys
import time
import traceback
from typing import Any

INTERRUPT_GRACE = 3.0  # seconds from SIGINT to SIGKILL for a cell past its timeout
REPLY_WAIT = 10.0  # seconds to wait for the SDK's reader of ``out`` before dropping an answer

_MIME_METHODS = (
    ("html", "_repr_html_"),
    ("markdown", "_repr_markdown_"),
    ("svg", "_repr_svg_"),
    ("png", "_repr_png_"),
    ("jpeg", "_repr_jpeg_"),
    ("latex", "_repr_latex_"),
    ("json", "_repr_json_"),
)


def bundle(obj: Any) -> dict[str, Any]:
    """The notebook's rich representations of ``obj``, from its ``_repr_*_`` methods."""
    try:
        text = repr(obj)
    except Exception as exc:  # a broken __repr__ must not break the cell's answer
        text = f"<unrepresentable {type(obj).__name__}: {exc}>"
    out: dict[str, Any] = {"text": text}
    if isinstance(obj, type):  # a class: its _repr_*_ are unbound methods
        return out
    for key, name in _MIME_METHODS:
        method = getattr(obj, name, None)
        if not callable(method):
            continue
        try:
            value = method()
        except Exception:
            continue
        if isinstance(value, tuple) and value:  # (data, metadata)
            value = value[0]
        if value is None:
            continue
        if key in ("png", "jpeg"):
            if isinstance(value, (bytes, bytearray)):
                value = base64.b64encode(bytes(value)).decode("ascii")
            elif not isinstance(value, str):
                continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


class PythonWorker:
    """The Python state: one namespace; each cell's last expression is its value."""

    def __init__(self) -> None:
        self.count = 0
        self.in_cell = False
        self.shown: list[dict[str, Any]] = []
        self.namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": __builtins__,
            "display": self.display,
        }
        signal.signal(signal.SIGINT, self.on_interrupt)

    def on_interrupt(self, signum: int, frame: Any) -> None:
        if self.in_cell:  # a late interrupt between cells is ignored
            raise KeyboardInterrupt

    def display(self, *objects: Any) -> None:
        """Show objects as rich results of the cell (as a notebook's ``display``)."""
        for obj in objects:
            self.shown.append(bundle(obj))

    def run(self, code: str) -> dict[str, Any]:
        self.count += 1
        filename = f"<cell {self.count}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        self.shown = []
        value: Any = None
        error = None
        try:
            tree = ast.parse(code, filename, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)  # type: ignore[attr-defined]
            body = compile(tree, filename, "exec")
            tail = compile(last, filename, "eval") if last is not None else None
            self.in_cell = True
            try:
                exec(body, self.namespace)
                if tail is not None:
                    value = eval(tail, self.namespace)
            finally:
                self.in_cell = False
        except BaseException as exc:  # the user's error (SystemExit too) is the cell's result
            error = describe(exc)
        flush()
        results = list(self.shown)
        text = None
        if value is not None:
            self.namespace["_"] = value
            main = bundle(value)
            main["main"] = True
            results.append(main)
            text = main["text"]
        return {"text": text, "results": results, "error": error, "count": self.count}


def describe(exc: BaseException) -> dict[str, Any]:
    """name, value and the traceback from the first frame of the user's code."""
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell "):
        tb = tb.tb_next
    frames = traceback.extract_tb(tb)
    if frames and frames[-1].name == "on_interrupt":  # the driver's own handler
        frames.pop()
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    return {"name": type(exc).__name__, "value": str(exc), "traceback": "".join(lines)}


def flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def python_worker(requests: int, answers: int) -> None:
    sys.stdin = open(os.devnull)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    worker = PythonWorker()
    reader = os.fdopen(requests, "rb")
    while True:
        try:
            line = reader.readline()
            if not line:
                return
            answer = worker.run(json.loads(line.decode("utf-8"))["code"])
            os.write(answers, (json.dumps(answer) + "\n").encode("utf-8"))
        except KeyboardInterrupt:
            continue


def bash_worker(requests: int, answers: int) -> None:
    """Replace this process with bash, reading commands from ``requests``; each cell is
    sourced (so ``cd`` and ``export`` last) and its status written to fd 9."""
    os.dup2(requests, 0)
    os.dup2(answers, 9)
    os.execvp("bash", ["bash", "--noprofile", "--norc", "-s"])


class Supervisor:
    def __init__(self, directory: str, language: str) -> None:
        self.dir = directory
        self.language = language
        self.worker = 0
        self.to_worker = -1
        self.from_worker = -1
        if language == "bash" and shutil.which("bash") is None:
            sys.stderr.write("there is no bash on the sandbox's PATH: a bash context needs it\n")
            sys.exit(2)
        for name in ("in", "out"):
            path = self.path(name)
            if not os.path.exists(path):
                os.mkfifo(path, 0o600)
        for name in ("stdout", "stderr"):
            open(self.path(name), "ab").close()
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.spawn()
        open(self.path("ready"), "w").close()

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def on_term(self, signum: int, frame: Any) -> None:
        self.kill_worker()
        os._exit(0)

    def spawn(self) -> None:
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setpgid(0, 0)
                os.close(requests_w)
                os.close(answers_r)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                # A job started with ``&`` by a shell without job control ignores SIGINT:
                # the interrupt at a timeout must reach the cell.
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGQUIT, signal.SIG_DFL)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
                os.dup2(os.open(self.path("stdout"), flags, 0o600), 1)
                os.dup2(os.open(self.path("stderr"), flags, 0o600), 2)
                if self.language == "bash":
                    bash_worker(requests_r, answers_w)
                else:
                    python_worker(requests_r, answers_w)
            except BaseException:
                traceback.print_exc()
            os._exit(1)
        os.close(requests_r)
        os.close(answers_w)
        if self.language == "bash":  # an interrupt ends the sourced cell, not the shell
            os.write(requests_w, b"trap 'return 130 2>/dev/null' INT\n")
        self.worker, self.to_worker, self.from_worker = pid, requests_w, answers_r
        with open(self.path("worker"), "w") as f:
            f.write(f"{pid}\n")

    def kill_worker(self) -> int | None:
        """Kill the worker's process group; its exit status, if it could be reaped."""
        if not self.worker:
            return None
        try:
            os.killpg(self.worker, signal.SIGKILL)
        except OSError:
            pass
        return self.reap()

    def reap(self) -> int | None:
        status = None
        try:
            _, raw = os.waitpid(self.worker, 0)
            exit_code = getattr(os, "waitstatus_to_exitcode", None)  # Python 3.9+
            status = exit_code(raw) if exit_code is not None else raw
        except OSError:
            pass
        for fd in (self.to_worker, self.from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        self.worker = 0
        return status

    def serve(self) -> None:
        while True:
            fd = os.open(self.path("in"), os.O_RDONLY)
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(fd)
            if not chunks:
                continue
            try:
                request = json.loads(b"".join(chunks).decode("utf-8"))
            except ValueError as exc:
                self.reply({"error": {"name": "ProtocolError", "value": str(exc)}}, "fifo")
                continue
            self.reply(self.handle(request), request.get("reply", "fifo"))

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "restart":
            self.kill_worker()
            self.spawn()
            return {"restarted": True}
        code = request.get("code")
        if code is None:
            with open(os.path.join(self.dir, request["code_file"]), encoding="utf-8") as f:
                code = f.read()
            os.unlink(os.path.join(self.dir, request["code_file"]))
        if not self.worker:
            self.spawn()
        answer = self.run(code, float(request.get("timeout") or 0))
        for name in ("stdout", "stderr"):
            with open(self.path(name), "rb") as f:
                answer[name] = f.read().decode("utf-8", "replace")
        return answer

    def send(self, code: str) -> bool:
        if self.language == "bash":
            cell = self.path("cell.sh")
            with open(cell, "w", encoding="utf-8") as f:
                f.write(code)
                f.write("\n")
            quoted = "'" + cell.replace("'", "'\\''") + "'"
            line = f". {quoted} </dev/null; printf '%s\\n' \"$?\" >&9\n"
        else:
            line = json.dumps({"code": code}) + "\n"
        data = line.encode("utf-8")
        try:
            while data:
                data = data[os.write(self.to_worker, data) :]
        except OSError:
            return False
        return True

    def run(self, code: str, timeout: float) -> dict[str, Any]:
        if not self.send(code):
            return self.died()
        deadline = time.monotonic() + timeout if timeout > 0 else None
        interrupted = False
        buffer = b""
        while b"\n" not in buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.from_worker], [], [], wait)
            if ready:
                chunk = os.read(self.from_worker, 65536)
                if not chunk:
                    return self.died()
                buffer += chunk
            elif not interrupted:
                interrupted = True
                self.signal_worker(signal.SIGINT)
                deadline = time.monotonic() + INTERRUPT_GRACE
            else:
                self.kill_worker()
                return {
                    "error": {
                        "name": "TimeoutError",
                        "value": f"the cell ran past its timeout of {timeout:g} s and did not stop "
                        "when interrupted, so its interpreter was killed: its state is lost "
                        "and the next run starts a fresh one",
                        "traceback": "",
                    },
                    "reset": True,
                }
        line = buffer.split(b"\n", 1)[0].decode("utf-8", "replace")
        if self.language == "bash":
            status = int(line) if line.strip().lstrip("-").isdigit() else 1
            answer: dict[str, Any] = {"text": None, "results": [], "error": None}
            if status != 0 and not interrupted:
                answer["error"] = {"name": "ExitStatus", "value": str(status), "traceback": ""}
        else:
            answer = json.loads(line)
        if interrupted:
            answer["error"] = {
                "name": "TimeoutError",
                "value": f"the cell ran past its timeout of {timeout:g} s and was interrupted; the "
                "context and its state are kept",
                "traceback": (answer.get("error") or {}).get("traceback", ""),
            }
        return answer

    def signal_worker(self, signum: int) -> None:
        try:
            os.killpg(self.worker, signum)
        except OSError:
            pass

    def died(self) -> dict[str, Any]:
        status = self.kill_worker()
        what = "bash" if self.language == "bash" else "the Python interpreter"
        return {
            "error": {
                "name": "InterpreterExited",
                "value": f"{what} exited (status {status}) during this cell: its state is lost "
                "and the next run starts a fresh one",
                "traceback": "",
            },
            "reset": True,
        }

    def reply(self, answer: dict[str, Any], how: str) -> None:
        data = (json.dumps(answer) + "\n").encode("utf-8")
        if how == "file":
            tmp = self.path("result.json.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, self.path("result.json"))
            return
        # The reader (``cat out``) is normally waiting; if it is gone, drop the answer
        # rather than block every later request.
        give_up = time.monotonic() + REPLY_WAIT
        pause = 0.0002  # the reader is an exec away: poll briskly, then back off
        while True:
            try:
                fd = os.open(self.path("out"), os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO or time.monotonic() > give_up:
                    return
                time.sleep(pause)
                pause = min(0.01, pause * 1.5)
        try:
            os.set_blocking(fd, True)
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            pass
        finally:
            os.close(fd)


def main() -> None:
    directory, language = sys.argv[1], sys.argv[2]
    Supervisor(directory, language).serve()


if __name__ == "__main__":
    main()
