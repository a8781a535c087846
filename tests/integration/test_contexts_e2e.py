"""Code contexts, live output and background process control against the local AgentCube:
state kept between runs, interrupts, rich results, output while a command runs, and processes
that can be waited for and killed with their children."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from agentcube import (
    BackgroundProcess,
    CodeContextError,
    CodeInterpreterClient,
    CommandExecutionError,
    SessionError,
)


@pytest.fixture
def ci(urls: dict[str, str]) -> Iterator[CodeInterpreterClient]:
    client = CodeInterpreterClient(**urls)
    yield client
    client.stop()


def _listing(ci: CodeInterpreterClient, path: str) -> list[str]:
    return sorted(entry["name"] for entry in ci.list_files(path))


# -- state ----------------------------------------------------------------------------------------


def test_variables_imports_and_the_working_directory_survive_between_runs(
    ci: CodeInterpreterClient,
) -> None:
    ctx = ci.create_code_context()
    first = ctx.run("import os, json\nrows = [1, 2, 3]\nos.makedirs('sub', exist_ok=True)\n"
                    "os.chdir('sub')\nprint('loaded')")  # fmt: skip
    assert (first.stdout, first.text, first.error) == ("loaded\n", None, None)
    second = ctx.run("json.dumps({'n': sum(rows), 'cwd': os.path.basename(os.getcwd())})")
    assert second.text == '\'{"n": 6, "cwd": "sub"}\''
    assert second.error is None and second.results[-1].main


def test_contexts_are_isolated_and_restart_clears_one(ci: CodeInterpreterClient) -> None:
    a, b = ci.create_code_context(), ci.create_code_context()
    a.run("x = 'a'")
    b.run("x = 'b'")
    assert (a.run("x").text, b.run("x").text) == ("'a'", "'b'")
    a.restart()
    error = a.run("x").error
    assert error is not None and error.name == "NameError"
    assert b.run("x").text == "'b'"


def test_a_bash_context_keeps_cd_and_export(ci: CodeInterpreterClient) -> None:
    with ci.create_code_context("bash") as sh:
        sh.run("mkdir -p work && cd work && export GREETING=hello")
        run = sh.run('echo "$GREETING from $(basename "$PWD")"')
        assert run.stdout == "hello from work\n" and run.error is None
        failed = sh.run("false")
        assert failed.error is not None and failed.error.name == "ExitStatus"


def test_errors_are_results_with_the_cells_traceback(ci: CodeInterpreterClient) -> None:
    ctx = ci.create_code_context()
    run = ctx.run("def f():\n    return 1 / 0\nf()")
    assert run.error is not None and run.error.name == "ZeroDivisionError"
    assert "<cell 1>" in run.error.traceback and "return 1 / 0" in run.error.traceback
    assert "_interpreter" not in run.error.traceback
    assert ctx.run("SyntaxError is a result too (").error.name == "SyntaxError"  # type: ignore[union-attr]


def test_rich_results_come_from_repr_methods(ci: CodeInterpreterClient) -> None:
    ctx = ci.create_code_context()
    run = ctx.run(
        "class Chart:\n"
        "    def _repr_html_(self): return '<svg/>'\n"
        "    def _repr_png_(self): return b'\\x89PNG\\r\\n'\n"
        "    def __repr__(self): return 'Chart()'\n"
        "display({'a': 1})\n"
        "Chart()"
    )
    shown, main = run.results
    assert shown.text == "{'a': 1}" and not shown.main
    assert main.main and main.text == "Chart()" and run.text == "Chart()"
    assert main.html == "<svg/>" and main.png == b"\x89PNG\r\n"
    assert ctx.run("None").text is None and ctx.run("x = 1").results == []


# -- timeouts, death, concurrency -----------------------------------------------------------------


def test_a_timeout_interrupts_the_cell_and_keeps_the_state(ci: CodeInterpreterClient) -> None:
    ctx = ci.create_code_context()
    ctx.run("kept = 42")
    started = time.monotonic()
    run = ctx.run("import time\nwhile True:\n    time.sleep(0.05)", timeout=1)
    assert time.monotonic() - started < 4
    assert run.error is not None and run.error.name == "TimeoutError"
    assert "state are kept" in run.error.value
    assert ctx.run("kept").text == "42"


def test_an_interpreter_that_dies_is_replaced_and_says_so(ci: CodeInterpreterClient) -> None:
    ctx = ci.create_code_context()
    ctx.run("x = 1")
    run = ctx.run("import os\nos._exit(3)")
    assert run.error is not None and run.error.name == "InterpreterExited"
    assert "status 3" in run.error.value and "state is lost" in run.error.value
    assert ctx.run("1 + 1").text == "2"


def test_one_cell_at_a_time_from_two_threads(ci: CodeInterpreterClient) -> None:
    ctx = ci.create_code_context()
    ctx.run("import time\nlog = []")
    cell = "log.append('start'); time.sleep(0.3); log.append('end')"
    threads = [threading.Thread(target=ctx.run, args=(cell,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ctx.run("log").text == "['start', 'end', 'start', 'end']"


def test_a_context_whose_interpreter_was_killed_says_to_make_a_new_one(
    ci: CodeInterpreterClient,
) -> None:
    ctx = ci.create_code_context()
    ci.execute_command(f'kill -9 "$(cat {ctx.directory}/pid)"')
    time.sleep(0.2)
    with pytest.raises(CodeContextError, match="create a new context"):
        ctx.run("1")


def _processes_naming(text: str) -> int:
    """How many processes on this machine have ``text`` in their command line (whatever PID
    namespace they are in)."""
    found = 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found += text.encode() in f.read()
        except OSError:
            continue
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_the_sessions_end_ends_its_interpreters(urls: dict[str, str]) -> None:
    ci = CodeInterpreterClient(**urls)
    ctx = ci.create_code_context()
    ctx.run("import time")
    unique = ctx.directory.rsplit("/", 1)[1]
    assert _processes_naming(unique) >= 1  # the driver's argv names its directory
    ci.stop()
    deadline = time.monotonic() + 10
    while _processes_naming(unique):
        assert time.monotonic() < deadline, "the context's processes outlived the session"
        time.sleep(0.05)


def test_close_leaves_nothing_and_stop_ends_every_context(urls: dict[str, str]) -> None:
    with CodeInterpreterClient(**urls) as ci:
        ctx = ci.create_code_context()
        other = ci.create_code_context("bash")
        ctx.close()
        assert _listing(ci, ".agentcube/contexts") == [other.directory.rsplit("/", 1)[1]]
    assert other.closed
    with pytest.raises(CodeContextError):
        other.run("echo")


# -- live output ----------------------------------------------------------------------------------


def _timed(seen: list[tuple[float, str]]) -> object:
    return lambda chunk: seen.append((time.monotonic(), chunk))


def test_a_context_run_streams_output_while_it_runs(ci: CodeInterpreterClient) -> None:
    ctx = ci.create_code_context()
    seen: list[tuple[float, str]] = []
    started = time.monotonic()
    run = ctx.run(
        "import sys, time\nfor i in range(3):\n    print(i)\n    time.sleep(0.6)\n"
        "print('warn', file=sys.stderr)\n'done'",
        on_stdout=_timed(seen),  # type: ignore[arg-type]
    )
    assert run.text == "'done'" and run.stdout == "0\n1\n2\n" and run.stderr == "warn\n"
    assert "".join(chunk for _, chunk in seen) == "0\n1\n2\n"
    # Each line arrives within 0.5 s of its print (printed at about 0, 0.6 and 1.2 s).
    first = {chunk: at - started for at, chunk in seen}
    assert first["0\n"] < 0.5 and first["1\n"] < 1.1 and first["2\n"] < 1.7
    assert ctx.run("1 + 1").text == "2"  # the next run, without callbacks, is the usual one


def test_execute_command_streams_and_returns_as_without_callbacks(
    ci: CodeInterpreterClient,
) -> None:
    out: list[tuple[float, str]] = []
    err: list[str] = []
    started = time.monotonic()
    stdout = ci.execute_command(
        "echo one; sleep 0.8; echo two; echo oops >&2",
        on_stdout=_timed(out),  # type: ignore[arg-type]
        on_stderr=err.append,
    )
    assert stdout == "one\ntwo\n" and "".join(err) == "oops\n"
    assert out[0] == (out[0][0], "one\n") and out[0][0] - started < 0.5
    with pytest.raises(CommandExecutionError) as caught:
        ci.execute_command(["sh", "-c", "echo bad >&2; exit 4"], on_stderr=err.append)
    assert caught.value.exit_code == 4 and "bad" in caught.value.stderr
    assert _listing(ci, ".agentcube/live") == []  # its files are removed


# -- background processes -------------------------------------------------------------------------


def test_a_background_process_can_be_waited_for(ci: CodeInterpreterClient) -> None:
    bg = ci.execute_command("echo working; sleep 0.5; exit 7", background=True)
    assert isinstance(bg, BackgroundProcess) and bg.is_running()
    assert bg.wait(10) == 7 and not bg.is_running()
    assert bg.output() == "working\n"


def test_kill_ends_the_whole_process_group(ci: CodeInterpreterClient) -> None:
    bg = ci.execute_command("sleep 300 & sleep 300 & echo started; wait", background=True)
    deadline = time.monotonic() + 5
    while "started" not in bg.output():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    before = ci.execute_command("ps -eo pgid=,comm= 2>/dev/null || true")
    bg.kill()
    assert bg.wait(10) != 0 and not bg.is_running()
    if before:  # ps exists: no sleep is left in the process's group
        groups = [line.split() for line in ci.execute_command("ps -eo pgid=,comm=").splitlines()]
        assert [g for g in groups if g and g[0] == str(bg.pid)] == []


def test_wait_with_a_timeout_raises_and_list_processes_sees_them(
    ci: CodeInterpreterClient,
) -> None:
    slow = ci.execute_command(["sleep", "30"], background=True, log_file="logs/slow.log")
    quick = ci.execute_command("true", background=True)
    with pytest.raises(TimeoutError):
        slow.wait(0.3)
    assert quick.wait(10) == 0
    listed = ci.list_processes()
    assert {(p.pid, p.log_file) for p in listed} >= {
        (slow.pid, "logs/slow.log"),
        (quick.pid, quick.log_file),
    }
    (again,) = [p for p in listed if p.pid == slow.pid]
    again.kill(9)
    assert slow.wait(10) in (-1, 137)


def test_a_stopped_client_cannot_reach_its_processes(urls: dict[str, str]) -> None:
    ci = CodeInterpreterClient(**urls)
    bg = ci.execute_command("sleep 30", background=True)
    ci.stop()
    with pytest.raises(SessionError):
        bg.is_running()
