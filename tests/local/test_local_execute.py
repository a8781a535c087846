"""Code interpreter: api/execute, answered as PicoD answers it."""

from __future__ import annotations

import os
import re
import threading
import time

import psutil
import pytest

from agentcube.local import LocalAgentCube
from agentcube.local._go.stdlib import format_duration, format_seconds_rounded, parse_duration

from .helpers import PYTHON, Api, host_pid, host_workspace, inner_workspace

RFC3339_NANO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


def test_python_and_exit_codes(api: Api, session_id: str) -> None:
    result = api.execute(
        session_id,
        [
            PYTHON,
            "-c",
            "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)",
        ],
    )
    assert list(result) == ["stdout", "stderr", "exit_code", "duration", "start_time", "end_time"]
    assert result["stdout"] == "out\n"
    assert result["stderr"] == "err\n"
    assert result["exit_code"] == 3
    assert isinstance(result["duration"], float) and result["duration"] >= 0
    assert RFC3339_NANO.fullmatch(result["start_time"])
    assert RFC3339_NANO.fullmatch(result["end_time"])
    assert result["start_time"] <= result["end_time"]


def test_killed_by_a_signal_is_minus_one(api: Api, session_id: str) -> None:
    assert api.execute(session_id, ["bash", "-c", "echo $((6 * 7))"])["stdout"] == "42\n"
    assert api.execute(session_id, ["bash", "-c", "exit 7"])["exit_code"] == 7
    assert api.execute(session_id, ["bash", "-c", "kill -9 $$"])["exit_code"] == -1
    assert api.execute(session_id, ["bash", "-c", "kill -TERM $$"])["exit_code"] == -1


def test_invalid_utf8_becomes_one_replacement_per_byte(api: Api, session_id: str) -> None:
    # Go's JSON encoder: every byte of an invalid sequence is its own U+FFFD
    result = api.execute(session_id, ["printf", "caf\\303\\251 \\377 \\342\\202A"])
    assert result["stdout"] == "café \ufffd \ufffd\ufffdA"


def test_html_characters_are_escaped_like_go(api: Api, session_id: str) -> None:
    response = api.call(
        session_id,
        "POST",
        "api/execute",
        json={"command": ["printf", "<a&b>"]},
        headers={"Accept-Encoding": "identity"},
    )
    assert b'"stdout":"\\u003ca\\u0026b\\u003e"' in response.content
    assert response.json()["stdout"] == "<a&b>"


def test_env_is_appended_to_picods(
    api: Api, cube: LocalAgentCube, session_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PicoD's own environment: the server's when unisolated; the sandbox's own (as an image
    # sets it) when isolated, where nothing of the server's environment is seen
    monkeypatch.setenv("AGENTCUBE_TEST_INHERITED", "from-server")
    sid = api.create()  # made after the variable is set
    result = api.execute(
        sid,
        ["bash", "-c", 'echo "$AGENTCUBE_TEST_INHERITED/$FOO/$BAR/$PATH/$HOME"'],
        env={"FOO": "foo value", "BAR": "ünïcode", "PATH": "/usr/bin:/bin"},
    )
    api.delete(sid)
    if cube.isolation == "namespaces":
        assert result["stdout"] == "/foo value/ünïcode//usr/bin:/bin//root\n"
    else:
        home = os.environ.get("HOME", "")
        assert result["stdout"] == f"from-server/foo value/ünïcode//usr/bin:/bin/{home}\n"


def test_command_is_found_on_the_servers_path_not_the_requests(api: Api, session_id: str) -> None:
    result = api.execute(session_id, ["sh", "-c", 'echo "$PATH"'], env={"PATH": "/nowhere"})
    assert (result["stdout"], result["exit_code"]) == ("/nowhere\n", 0)


def test_pwd_is_set_only_without_env(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    workspace = inner_workspace(cube, session_id)
    assert api.execute(session_id, ["sh", "-c", 'echo "$PWD"'])["stdout"] == workspace + "\n"


def test_umask_is_022(api: Api, session_id: str) -> None:
    old = os.umask(0o077)
    try:
        result = api.execute(session_id, ["sh", "-c", "umask; touch f; stat -c %a f"])
    finally:
        os.umask(old)
    assert result["stdout"] == "0022\n644\n"


def test_stateless_between_calls_but_files_persist(api: Api, session_id: str) -> None:
    api.execute(session_id, ["bash", "-c", "export X=1; echo data > persisted.txt"])
    second = api.execute(session_id, ["bash", "-c", 'echo "X=${X:-unset}"; cat persisted.txt'])
    assert second["stdout"] == "X=unset\ndata\n"


def test_working_dir(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    workspace = inner_workspace(cube, session_id)
    api.execute(session_id, ["mkdir", "-p", "sub/dir"])
    assert api.execute(session_id, ["pwd"])["stdout"] == workspace + "\n"
    result = api.execute(session_id, ["pwd"], working_dir="sub/dir")
    assert result["stdout"] == os.path.join(workspace, "sub", "dir") + "\n"
    result = api.execute(session_id, ["pwd"], working_dir="/sub")
    assert result["stdout"] == os.path.join(workspace, "sub") + "\n"
    result = api.execute(session_id, ["pwd"], working_dir="new/deeper")
    assert result["stdout"] == os.path.join(workspace, "new", "deeper") + "\n"
    new = os.path.join(host_workspace(cube, session_id), "new")
    assert os.stat(new).st_mode & 0o777 == 0o755


@pytest.mark.parametrize(
    ("working_dir", "relative"),
    [("..", ".."), ("../..", "../.."), ("/../../etc", "etc"), ("sub/../../x", "../x")],
)
def test_escaping_working_dir_400(
    api: Api, session_id: str, working_dir: str, relative: str
) -> None:
    response = api.call(
        session_id, "POST", "api/execute", json={"command": ["pwd"], "working_dir": working_dir}
    )
    if relative == "etc":  # an absolute path is relative to the workspace: it is fine
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "error": f"Invalid working directory: access denied: path '{working_dir}' escapes "
        f"workspace jail (relative path traversal: {relative})",
    }


def test_working_dir_that_is_a_file(api: Api, session_id: str) -> None:
    api.execute(session_id, ["touch", "afile"])
    result = api.execute(session_id, ["/bin/sh", "-c", "pwd"], working_dir="afile")
    assert result["exit_code"] == 1
    assert result["stderr"] == "fork/exec /bin/sh: not a directory"


def test_timeout_kills_only_the_direct_child(
    api: Api, cube: LocalAgentCube, session_id: str
) -> None:
    started = time.monotonic()
    result = api.execute(
        session_id, ["bash", "-c", "sleep 1.5 & echo $! > bg.pid; sleep 30"], timeout="500ms"
    )
    elapsed = time.monotonic() - started
    # the background sleep holds the pipes: the answer waits for it, not for the 30 s
    assert 1.2 < elapsed < 10
    assert result["exit_code"] == 124
    assert result["stderr"] == "Command timed out after 0 seconds"  # %.0f of 0.5: half to even


def test_timeout_keeps_partial_output(api: Api, session_id: str) -> None:
    result = api.execute(session_id, ["bash", "-c", "echo started; exec sleep 10"], timeout="0.3s")
    assert result["exit_code"] == 124
    assert result["stdout"] == "started\n"
    assert result["stderr"] == "Command timed out after 0 seconds"


def test_zero_and_negative_timeouts_run_nothing(api: Api, session_id: str) -> None:
    for timeout, seconds in (("0s", "0"), ("-5s", "-5")):
        result = api.execute(session_id, ["touch", "ran"], timeout=timeout)
        assert result["exit_code"] == 124
        assert result["stderr"] == f"Command timed out after {seconds} seconds"
    assert api.execute(session_id, ["ls"])["stdout"] == ""


def test_background_process_keeps_the_answer_until_it_exits(
    api: Api, cube: LocalAgentCube, session_id: str
) -> None:
    started = time.monotonic()
    result = api.execute(session_id, ["bash", "-c", "sleep 1 & echo done"], timeout="20s")
    assert 0.8 < time.monotonic() - started < 10
    assert (result["stdout"], result["exit_code"]) == ("done\n", 0)
    started = time.monotonic()
    result = api.execute(
        session_id,
        ["bash", "-c", "sleep 30 >/dev/null 2>&1 & echo $! > bg.pid; echo done"],
        timeout="20s",
    )
    assert time.monotonic() - started < 3
    with open(os.path.join(host_workspace(cube, session_id), "bg.pid")) as handle:
        pid = host_pid(cube, session_id, int(handle.read()))
    assert psutil.pid_exists(pid)  # still running in the background ...
    assert api.delete(session_id).status_code == 200
    _assert_dead(pid)  # ... until the session is deleted


def _assert_dead(pid: int) -> None:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} is still alive")


def test_command_that_cannot_start_is_exit_1_with_gos_text(api: Api, session_id: str) -> None:
    result = api.execute(session_id, ["definitely-not-a-command-xyz", "arg"])
    assert result["exit_code"] == 1
    assert result["stderr"] == (
        'exec: "definitely-not-a-command-xyz": executable file not found in $PATH'
    )
    api.execute(session_id, ["bash", "-c", "echo 'echo hi' > script.sh"])
    result = api.execute(session_id, ["./script.sh"])  # not executable
    assert (result["exit_code"], result["stderr"]) == (
        1,
        "fork/exec ./script.sh: permission denied",
    )
    result = api.execute(session_id, [""])
    assert (result["exit_code"], result["stderr"]) == (1, "exec: no command")
    result = api.execute(session_id, ["echo", "a\x00b"])
    assert result["exit_code"] == 1 and result["stderr"].endswith(": invalid argument")
    result = api.execute(session_id, ["true"], env={"A": "b\x00c"})
    assert (result["exit_code"], result["stderr"]) == (
        1,
        "exec: environment variable contains NUL",
    )


def test_stdin_is_empty(api: Api, session_id: str) -> None:
    result = api.execute(session_id, ["cat"], timeout="5s")
    assert (result["stdout"], result["exit_code"]) == ("", 0)


def test_output_cap_is_local_and_says_so() -> None:
    with LocalAgentCube(quiet=True, max_output_bytes=10) as cube:
        api = Api(cube)
        sid = api.create()
        result = api.execute(sid, ["sh", "-c", "printf 0123456789abcdef; printf xyz >&2"])
        assert result["stdout"] == (
            "0123456789\n[agentcube.local: 6 more bytes of output were discarded]\n"
        )
        assert result["stderr"] == "xyz"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {},
            "Key: 'ExecuteRequest.Command' Error:Field validation for 'Command' failed on "
            "the 'required' tag",
        ),
        (
            {"command": None},
            "Key: 'ExecuteRequest.Command' Error:Field validation for 'Command' "
            "failed on the 'required' tag",
        ),
        ({"command": []}, "command cannot be empty"),
        (
            {"command": "echo hi"},
            "json: cannot unmarshal string into Go struct field "
            "ExecuteRequest.command of type []string",
        ),
        (
            {"command": [1, 2]},
            "json: cannot unmarshal number into Go struct field "
            "ExecuteRequest.command of type string",
        ),
        (
            {"command": ["true"], "timeout": "soon"},
            'Invalid timeout format: time: invalid duration "soon"',
        ),
        (
            {"command": ["true"], "timeout": "30"},
            'Invalid timeout format: time: missing unit in duration "30"',
        ),
        (
            {"command": ["true"], "timeout": 30},
            "json: cannot unmarshal number into Go struct "
            "field ExecuteRequest.timeout of type string",
        ),
        (
            {"command": ["true"], "timeout": "99999999999h"},
            'Invalid timeout format: time: invalid duration "99999999999h"',
        ),
        (
            {"command": ["true"], "working_dir": 5},
            "json: cannot unmarshal number into Go struct "
            "field ExecuteRequest.working_dir of type string",
        ),
        (
            {"command": ["true"], "env": ["A=B"]},
            "json: cannot unmarshal array into Go struct "
            "field ExecuteRequest.env of type map[string]string",
        ),
        (
            {"command": ["true"], "env": {"A": 1}},
            "json: cannot unmarshal number into Go struct field ExecuteRequest.env of type string",
        ),
        ([1], "json: cannot unmarshal array into Go value of type picod.ExecuteRequest"),
    ],
)
def test_bad_execute_requests_400(api: Api, session_id: str, body: object, error: str) -> None:
    response = api.call(session_id, "POST", "api/execute", json=body)
    assert response.status_code == 400, response.text
    assert response.json() == {"code": 400, "error": error}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"not json", "invalid character 'o' in literal null (expecting 'u')"),
        (b"", "EOF"),
        (b'{"command": ["echo"', "unexpected EOF"),
        (b"\xff", "invalid character '\u00ff' looking for beginning of value"),
        (b'{"command" ["x"]}', "invalid character '[' after object key"),
        (b'{"command": ["x" "y"]}', "invalid character '\"' after array element"),
    ],
)
def test_execute_non_json_400(api: Api, session_id: str, raw: bytes, error: str) -> None:
    response = api.call(session_id, "POST", "api/execute", data=raw)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error": error}


def test_decoder_reads_one_value_and_folds_field_names(api: Api, session_id: str) -> None:
    raw = b'{"COMMAND": ["echo", "first"], "unknown": [1, {}]} trailing garbage'
    response = api.call(session_id, "POST", "api/execute", data=raw)
    assert response.status_code == 200
    assert response.json()["stdout"] == "first\n"


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("30s", 30_000_000_000),
        ("1.5s", 1_500_000_000),
        ("500ms", 500_000_000),
        ("1h30m", 5_400_000_000_000),
        ("1h2m3.5s", 3_723_500_000_000),
        ("250us", 250_000),
        ("10µs", 10_000),
        (".5s", 500_000_000),
        ("0", 0),
        ("-2s", -2_000_000_000),
    ],
)
def test_parse_duration(text: str, nanos: int) -> None:
    assert parse_duration(text) == nanos


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("30", 'time: missing unit in duration "30"'),
        ("s", 'time: invalid duration "s"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("1h 2m", 'time: unknown unit "h " in duration "1h 2m"'),
        ("+", 'time: invalid duration "+"'),
    ],
)
def test_parse_duration_rejects_with_gos_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(text)


def test_format_duration_and_rounding() -> None:
    assert format_duration(61_801_351) == "61.801351ms"
    assert format_duration(3_723_500_000_000) == "1h2m3.5s"
    assert format_duration(0) == "0s"
    assert format_seconds_rounded(2_500_000_000) == "2"  # half to even
    assert format_seconds_rounded(3_500_000_000) == "4"


def test_delete_kills_running_processes_and_removes_workspace(
    api: Api, cube: LocalAgentCube
) -> None:
    sid = api.create()
    workspace = host_workspace(cube, sid)
    api.execute(sid, ["bash", "-c", "nohup sleep 60 > /dev/null 2>&1 & echo $! > lingering.pid"])
    with open(os.path.join(workspace, "lingering.pid")) as handle:
        lingering = host_pid(cube, sid, int(handle.read()))
    results: list[tuple[int, object]] = []

    def long_command() -> None:
        response = api.call(
            sid, "POST", "api/execute", json={"command": ["sleep", "60"], "timeout": "60s"}
        )
        results.append((response.status_code, response.json()))

    worker = threading.Thread(target=long_command)
    worker.start()
    deadline = time.monotonic() + 5
    sleeper: psutil.Process | None = None
    while sleeper is None and time.monotonic() < deadline:
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.cmdline() == ["sleep", "60"] and proc.pid != lingering:
                    sleeper = proc
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.02)
    assert sleeper is not None
    assert api.delete(sid).status_code == 200
    worker.join(timeout=10)
    assert not worker.is_alive()
    # the sandbox went away under the request, as a deleted pod would
    assert results == [(503, {"error": "sandbox unreachable"})]
    _assert_dead(sleeper.pid)
    _assert_dead(lingering)
    assert not os.path.exists(workspace)
