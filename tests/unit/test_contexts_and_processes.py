"""Code contexts, live output and background process control (mocked HTTP): what each call
sends over PicoD's endpoints, how many requests it costs, and how answers become results."""

from __future__ import annotations

import base64
import json
import re
import signal
from typing import Any

import pytest

from agentcube import (
    BackgroundProcess,
    CodeContext,
    CodeContextError,
    CommandExecutionError,
    DataPlaneError,
    Execution,
    InvalidArgumentError,
    SessionNotFoundError,
)
from agentcube._flows import contexts as context_flows
from agentcube._flows import processes as process_flows

from .conftest import ROUTER, SESSION_HEADER, FakeAgentCube

PREFIX = f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
EXECUTE = PREFIX + "api/execute"
HERE = {SESSION_HEADER: "ci-1"}


def _execute(requests_mock, stdout: str = "", stderr: str = "", exit_code: int = 0) -> Any:
    return FakeAgentCube(requests_mock).execute(stdout, stderr, exit_code)


def _answer(**kw: Any) -> str:
    body = {"text": None, "results": [], "error": None, "count": 1, "stdout": "", "stderr": ""}
    body.update(kw)
    return json.dumps(body) + "\n"


@pytest.fixture
def ci(make_ci):
    return make_ci(session_id="ci-1")


@pytest.fixture
def ctx(ci, requests_mock) -> CodeContext:
    _execute(requests_mock, "4242\n")
    return ci.create_code_context()


def _argv(request) -> list[str]:
    argv: list[str] = request.json()["command"]
    return argv


# -- create ---------------------------------------------------------------------------------------


def test_create_starts_the_driver_in_one_execute(ci, requests_mock):
    execute = _execute(requests_mock, "4242\n")
    ctx = ci.create_code_context("python")
    assert execute.call_count == 1
    argv = _argv(execute.last_request)
    assert argv[:3] == ["sh", "-c", context_flows.START]
    directory, source, language = argv[4:]
    assert directory.startswith(".agentcube/contexts/") and directory == ctx.directory
    assert source == context_flows.driver_source() and "def main()" in source
    assert language == "python" and ctx.language == "python"


def test_create_without_python3_says_what_to_do(ci, requests_mock):
    _execute(requests_mock, "", "the sandbox has no python3 on its PATH: ...", 127)
    with pytest.raises(CodeContextError, match="no python3"):
        ci.create_code_context()


def test_an_unknown_language_is_refused_before_sending(ci, requests_mock):
    with pytest.raises(InvalidArgumentError):
        ci.create_code_context("ruby")
    assert requests_mock.call_count == 0


# -- run ------------------------------------------------------------------------------------------


def test_a_run_is_one_execute_and_its_answer_the_execution(ctx, requests_mock):
    png = base64.b64encode(b"\x89PNG-bytes").decode()
    answer = _answer(
        text="42",
        stdout="hi\n",
        results=[{"text": "<H>", "html": "<b>h</b>", "png": png}, {"text": "42", "main": True}],
        count=3,
    )
    execute = _execute(requests_mock, answer)
    execution = ctx.run("x = 41\nprint('hi')\nx + 1", timeout=5)
    assert execute.call_count == 1 and requests_mock.call_count == 2  # the create, the run
    argv = _argv(execute.last_request)
    assert argv[:3] == ["sh", "-c", context_flows.RUN] and argv[4] == ctx.directory
    assert argv[-1] == "wait"
    request = json.loads(argv[5])
    assert request == {"op": "run", "code": "x = 41\nprint('hi')\nx + 1", "timeout": 5.0,
                       "reply": "fifo"}  # fmt: skip
    assert isinstance(execution, Execution)
    assert (execution.text, execution.stdout, execution.error) == ("42", "hi\n", None)
    assert execution.execution_count == 3
    shown, main = execution.results
    assert shown.html == "<b>h</b>" and shown.png == b"\x89PNG-bytes" and not shown.main
    assert main.main and main.text == "42" and main.formats() == ["text"]


def test_an_error_in_the_code_is_a_result_not_an_exception(ctx, requests_mock):
    error = {"name": "ZeroDivisionError", "value": "division by zero", "traceback": "Tb..."}
    _execute(requests_mock, _answer(error=error))
    execution = ctx.run("1/0")
    assert execution.error is not None and execution.text is None
    assert (execution.error.name, execution.error.value) == (
        "ZeroDivisionError",
        "division by zero",
    )
    assert execution.error.traceback == "Tb..."


def test_a_gone_interpreter_is_an_error_the_user_can_act_on(ctx, requests_mock):
    gone = "agentcube: the context's interpreter is not running"
    _execute(requests_mock, "", gone, 3)
    with pytest.raises(CodeContextError, match="create a new context"):
        ctx.run("x")


def test_an_unreadable_answer_is_a_data_plane_error(ctx, requests_mock):
    _execute(requests_mock, "not json")
    with pytest.raises(DataPlaneError, match="unreadable"):
        ctx.run("x")


def test_a_long_cell_is_uploaded_first(ctx, requests_mock):
    upload = requests_mock.post(PREFIX + "api/files", json={"path": "x", "size": 1}, headers=HERE)
    execute = _execute(requests_mock, _answer())
    code = "x = 1\n" * 30_000
    ctx.run(code)
    assert upload.call_count == 1 and code.encode() in upload.last_request.body
    request = json.loads(_argv(execute.last_request)[5])
    assert "code" not in request and request["code_file"].startswith("cell-")


def test_restart_and_close_are_one_request_each_and_close_is_final(ctx, requests_mock):
    execute = _execute(requests_mock, json.dumps({"restarted": True}))
    ctx.restart()
    assert json.loads(_argv(execute.last_request)[5]) == {"op": "restart"}
    ctx.close()
    assert _argv(execute.last_request)[:3] == ["sh", "-c", context_flows.CLOSE]
    count = requests_mock.call_count
    ctx.close()
    with pytest.raises(CodeContextError, match="closed"):
        ctx.run("1")
    assert requests_mock.call_count == count


def test_with_closes_the_context(ci, requests_mock):
    execute = _execute(requests_mock, "4242\n")
    with ci.create_code_context("bash") as ctx:
        assert ctx.language == "bash"
    assert ctx.closed and _argv(execute.last_request)[2] == context_flows.CLOSE


def test_stop_closes_the_contexts_of_a_kept_session(make_ci, requests_mock):
    _execute(requests_mock, "4242\n")
    kept = make_ci(session_id="ci-1")
    kept.detach()
    ctx = kept.create_code_context()
    kept.stop()
    assert ctx.closed and _argv(requests_mock.last_request)[2] == context_flows.CLOSE


def test_stop_of_a_deleted_session_ends_its_contexts_without_a_request(
    make_ci, requests_mock, cube
):
    _execute(requests_mock, "4242\n")
    delete = cube.delete(session_id="ci-2")
    client = make_ci(session_id="ci-2")
    ctx = client.create_code_context()
    posts = len(cube.calls("POST"))
    client.stop()
    assert ctx.closed and delete.call_count == 1 and len(cube.calls("POST")) == posts


# -- live output ----------------------------------------------------------------------------------


def test_a_live_run_submits_then_follows_the_output_with_range_downloads(ctx, requests_mock):
    _execute(requests_mock, "")
    d = ctx.directory
    result = requests_mock.get(
        PREFIX + f"api/files/{d}/result.json",
        [
            {"status_code": 404, "json": {"error": "File not found", "code": 404}, "headers": HERE},
            {"status_code": 200, "text": _answer(text="3", stdout="1\n2\n"), "headers": HERE},
        ],
    )
    out = requests_mock.get(
        PREFIX + f"api/files/{d}/stdout",
        [
            {"status_code": 206, "content": b"1\n", "headers": HERE},
            {"status_code": 206, "content": b"2\n", "headers": HERE},
        ],
    )
    requests_mock.get(PREFIX + f"api/files/{d}/stderr", status_code=416, headers=HERE, text="")
    seen: list[str] = []
    execution = ctx.run("print(1); print(2); 3", on_stdout=seen.append)
    assert seen == ["1\n", "2\n"] and execution.text == "3" and execution.stdout == "1\n2\n"
    assert _argv(requests_mock.request_history[1])[-1] == "follow"
    assert result.call_count == 2
    ranges = [r.headers["Range"] for r in out.request_history]
    assert ranges == ["bytes=0-", "bytes=2-"]


def test_a_404_from_the_router_while_following_is_the_lost_session(ctx, requests_mock):
    _execute(requests_mock, "")
    requests_mock.get(
        PREFIX + f"api/files/{ctx.directory}/result.json",
        status_code=404,
        json={"error": 'sessions.agentcube.volcano.sh "ci-1" not found'},
    )
    with pytest.raises(SessionNotFoundError):
        ctx.run("1", on_stderr=print)


def _files(requests_mock, name: str, answers: list[tuple[int, bytes]]) -> Any:
    """Answer GETs of ``.agentcube/live/<id>/<name>`` in turn (the last one from then on)."""

    def answer(request, context):
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        context.status_code = status
        context.headers[SESSION_HEADER] = "ci-1"
        return body

    pattern = re.compile(rf".*/api/files/\.agentcube/live/[0-9a-f]+/{name}$")
    return requests_mock.get(pattern, content=answer)


def test_execute_command_with_a_callback_follows_and_returns_as_before(ci, requests_mock):
    execute = _execute(requests_mock, "99\n")
    _files(requests_mock, "exit", [(404, b""), (200, b"0\n")])
    out = _files(requests_mock, "stdout", [(206, b"a\n"), (206, b"b\n")])
    _files(requests_mock, "stderr", [(416, b"")])
    seen: list[str] = []
    assert ci.execute_command("echo a; echo b", on_stdout=seen.append) == "a\nb\n"
    assert seen == ["a\n", "b\n"]
    assert [r.headers["Range"] for r in out.request_history] == ["bytes=0-", "bytes=2-"]
    start = _argv(execute.request_history[0])
    assert start[2] == process_flows.LIVE and start[-3:] == ["sh", "-c", "echo a; echo b"]
    assert _argv(execute.last_request)[:3] == ["rm", "-rf", "--"]  # the files are removed
    assert execute.call_count == 2


def test_a_live_command_that_fails_raises_as_before(ci, requests_mock):
    _execute(requests_mock, "99\n")
    requests_mock.get(re.compile(r".*/exit$"), content=b"3\n", headers=HERE)
    requests_mock.get(re.compile(r".*/stdout$"), status_code=416, headers=HERE, text="")
    requests_mock.get(re.compile(r".*/stderr$"), status_code=206, content=b"bad\n", headers=HERE)
    errors: list[str] = []
    with pytest.raises(CommandExecutionError) as caught:
        ci.execute_command(["false"], on_stderr=errors.append)
    assert caught.value.exit_code == 3 and errors == ["bad\n"]


def test_callbacks_with_background_are_refused(ci, requests_mock):
    with pytest.raises(InvalidArgumentError):
        ci.execute_command("x", background=True, on_stdout=print)
    assert requests_mock.call_count == 0


# -- background processes -------------------------------------------------------------------------


@pytest.fixture
def proc(ci, requests_mock) -> BackgroundProcess:
    _execute(requests_mock, "4242\n")
    started = ci.execute_command("serve", background=True)
    assert isinstance(started, BackgroundProcess)
    return started


def test_a_background_process_is_registered_in_its_state_directory(proc, requests_mock):
    argv = _argv(requests_mock.last_request)
    assert argv[4].startswith(".agentcube/processes/")
    assert proc == (4242, proc.log_file) and proc.pid == 4242


@pytest.mark.parametrize(
    ("answer", "running"), [("running\n", True), ("exited 0\n", False), ("gone\n", False)]
)
def test_is_running_asks_the_sandbox_once(proc, requests_mock, answer, running):
    execute = _execute(requests_mock, answer)
    assert proc.is_running() is running
    assert execute.call_count == 1 and _argv(execute.last_request)[-1].startswith(".agentcube/")


def test_wait_returns_the_exit_code_and_raises_past_its_timeout(proc, requests_mock):
    _execute(requests_mock, "exited 7\n")
    assert proc.wait(5) == 7
    _execute(requests_mock, "gone\n")
    assert proc.wait() == -1
    _execute(requests_mock, "running\n")
    with pytest.raises(TimeoutError):
        proc.wait(0)


def test_kill_signals_the_process_group_by_name(proc, requests_mock):
    execute = _execute(requests_mock, "")
    proc.kill()
    assert _argv(execute.last_request)[-1] == "TERM"
    proc.kill(signal.SIGKILL)
    assert _argv(execute.last_request)[-1] == "KILL"
    assert '"-$p"' in _argv(execute.last_request)[2]
    with pytest.raises(InvalidArgumentError):
        proc.kill(12345)


def test_output_downloads_the_log(proc, requests_mock):
    requests_mock.get(PREFIX + "api/files/" + proc.log_file, content=b"serving\n", headers=HERE)
    assert proc.output() == "serving\n"


def test_list_processes_reads_the_registry(ci, requests_mock):
    listing = ".agentcube/processes/ab\t12\tserver.log\n.agentcube/processes/cd\t13\tlogs/x.log\n"
    _execute(requests_mock, listing)
    found = ci.list_processes()
    assert found == [(12, "server.log"), (13, "logs/x.log")]
    _execute(requests_mock, "exited 0\n")
    assert found[1].wait() == 0
    assert _argv(requests_mock.last_request)[-2] == ".agentcube/processes/cd"


def test_a_process_built_by_hand_is_not_bound(requests_mock):
    with pytest.raises(Exception, match="not bound"):
        BackgroundProcess(1, "x.log").is_running()


def test_the_upstream_data_plane_client_binds_its_processes_too(requests_mock):
    from agentcube.clients import CodeInterpreterDataPlaneClient

    dp = CodeInterpreterDataPlaneClient("ci-1", ROUTER, "default", "my-interpreter")
    _execute(requests_mock, "77\n")
    started = dp.execute_command("serve", background=True)
    assert isinstance(started, BackgroundProcess) and started.pid == 77
    execute = _execute(requests_mock, "exited 0\n")
    assert started.wait(1) == 0 and execute.last_request.headers[SESSION_HEADER] == "ci-1"
