"""Code interpreter: api/execute."""

from __future__ import annotations

import os
import sys
import time

import psutil
import pytest

from agentcube.local import LocalAgentCube
from agentcube.local._sandboxes import parse_go_duration

from .helpers import Api


def _workspace(cube: LocalAgentCube, session_id: str) -> str:
    workspace = next(s.workspace for s in cube.sessions() if s.session_id == session_id)
    assert workspace is not None
    return workspace


def test_python_and_exit_codes(api: Api, session_id: str) -> None:
    result = api.execute(
        session_id,
        [
            sys.executable,
            "-c",
            "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)",
        ],
    )
    assert set(result) == {"stdout", "stderr", "exit_code", "duration", "start_time", "end_time"}
    assert result["stdout"] == "out\n"
    assert result["stderr"] == "err\n"
    assert result["exit_code"] == 3
    assert isinstance(result["duration"], float) and result["duration"] >= 0
    assert result["start_time"] <= result["end_time"]


def test_bash_and_signals(api: Api, session_id: str) -> None:
    assert api.execute(session_id, ["bash", "-c", "echo $((6 * 7))"])["stdout"] == "42\n"
    assert api.execute(session_id, ["bash", "-c", "exit 7"])["exit_code"] == 7
    assert api.execute(session_id, ["bash", "-c", "kill -9 $$"])["exit_code"] == 137


def test_output_is_decoded_with_replacement(api: Api, session_id: str) -> None:
    result = api.execute(session_id, ["printf", "caf\\303\\251 \\377"])
    assert result["stdout"] == "café \ufffd"


def test_env_is_inherited_and_extended(
    api: Api, session_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTCUBE_TEST_INHERITED", "from-server")
    result = api.execute(
        session_id,
        ["bash", "-c", 'echo "$AGENTCUBE_TEST_INHERITED/$FOO/$BAR"'],
        env={"FOO": "foo value", "BAR": "ünïcode"},
    )
    assert result["stdout"] == "from-server/foo value/ünïcode\n"


def test_stateless_between_calls_but_files_persist(api: Api, session_id: str) -> None:
    api.execute(session_id, ["bash", "-c", "export X=1; echo data > persisted.txt"])
    second = api.execute(session_id, ["bash", "-c", 'echo "X=${X:-unset}"; cat persisted.txt'])
    assert second["stdout"] == "X=unset\ndata\n"


def test_working_dir(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    workspace = _workspace(cube, session_id)
    api.execute(session_id, ["mkdir", "-p", "sub/dir"])
    assert api.execute(session_id, ["pwd"])["stdout"] == workspace + "\n"
    result = api.execute(session_id, ["pwd"], working_dir="sub/dir")
    assert result["stdout"] == os.path.join(workspace, "sub", "dir") + "\n"
    result = api.execute(session_id, ["pwd"], working_dir="/sub")
    assert result["stdout"] == os.path.join(workspace, "sub") + "\n"


@pytest.mark.parametrize(
    "working_dir", ["..", "../..", "/../../etc", "sub/../../x", "missing-dir", "a\x00b"]
)
def test_bad_working_dir_400(api: Api, session_id: str, working_dir: str) -> None:
    response = api.call(
        session_id, "POST", "api/execute", json={"command": ["pwd"], "working_dir": working_dir}
    )
    assert response.status_code == 400
    assert set(response.json()) == {"error"}


def test_timeout_kills_the_whole_process_tree(
    api: Api, cube: LocalAgentCube, session_id: str
) -> None:
    script = "sleep 30 & echo $! > bg.pid; (sleep 30; echo never) & echo $! > sub.pid; sleep 30"
    started = time.monotonic()
    result = api.execute(session_id, ["bash", "-c", script], timeout="500ms")
    assert time.monotonic() - started < 5
    assert result["exit_code"] == 124
    assert "timed out" in result["stderr"]
    workspace = _workspace(cube, session_id)
    for name in ("bg.pid", "sub.pid"):
        with open(os.path.join(workspace, name)) as handle:
            pid = int(handle.read())
        _assert_dead(pid)


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


def test_timeout_keeps_partial_output(api: Api, session_id: str) -> None:
    result = api.execute(session_id, ["bash", "-c", "echo started; sleep 10"], timeout="0.3s")
    assert result["exit_code"] == 124
    assert result["stdout"] == "started\n"


def test_background_process_does_not_block(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    started = time.monotonic()
    result = api.execute(
        session_id, ["bash", "-c", "sleep 30 & echo $! > bg.pid; echo done"], timeout="20s"
    )
    assert time.monotonic() - started < 3
    assert (result["stdout"], result["exit_code"]) == ("done\n", 0)
    with open(os.path.join(_workspace(cube, session_id), "bg.pid")) as handle:
        pid = int(handle.read())
    assert psutil.pid_exists(pid)  # still running in the background ...
    assert api.delete(session_id).status_code == 200
    _assert_dead(pid)  # ... until the session is deleted


def test_workspace_removed_by_a_command_comes_back(api: Api, session_id: str) -> None:
    api.execute(session_id, ["bash", "-c", 'touch f; rm -rf "$PWD"'])
    result = api.execute(session_id, ["ls", "-A"])
    assert (result["stdout"], result["exit_code"]) == ("", 0)


def test_command_not_found_127(api: Api, session_id: str) -> None:
    result = api.execute(session_id, ["definitely-not-a-command-xyz", "arg"])
    assert result["exit_code"] == 127
    assert "not found" in result["stderr"]
    api.execute(session_id, ["bash", "-c", "echo 'echo hi' > script.sh"])
    result = api.execute(session_id, ["./script.sh"])  # not executable
    assert result["exit_code"] == 126


def test_stdin_is_empty(api: Api, session_id: str) -> None:
    result = api.execute(session_id, ["cat"], timeout="5s")
    assert (result["stdout"], result["exit_code"]) == ("", 0)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"command": []},
        {"command": "echo hi"},
        {"command": [1, 2]},
        {"command": ["echo", None]},
        {"command": ["echo", "a\x00b"]},
        {"command": ["true"], "timeout": "soon"},
        {"command": ["true"], "timeout": "30"},
        {"command": ["true"], "timeout": 30},
        {"command": ["true"], "timeout": "-1s"},
        {"command": ["true"], "timeout": "0s"},
        {"command": ["true"], "timeout": "99999999999h"},
        {"command": ["true"], "working_dir": 5},
        {"command": ["true"], "env": ["A=B"]},
        {"command": ["true"], "env": {"A": 1}},
        {"command": ["true"], "env": {"A=B": "c"}},
        {"command": ["true"], "env": {"": "c"}},
        {"command": ["true"], "env": {"A": "b\x00c"}},
    ],
)
def test_bad_execute_requests_400(api: Api, session_id: str, body: dict[str, object]) -> None:
    response = api.call(session_id, "POST", "api/execute", json=body)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b"", b"\xff"])
def test_execute_non_json_400(api: Api, session_id: str, raw: bytes) -> None:
    response = api.call(session_id, "POST", "api/execute", data=raw)
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
        ("10µs", 0.00001),
        ("100ns", 1e-7),
        (".5s", 0.5),
        ("0", 0.0),
        ("-2s", -2.0),
    ],
)
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "s", "1x", "1.s.", "1h 2m", "٣s", "+", "1e3s"])
def test_parse_go_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_delete_kills_running_processes_and_removes_workspace(
    api: Api, cube: LocalAgentCube
) -> None:
    import threading

    sid = api.create()
    workspace = _workspace(cube, sid)
    api.execute(sid, ["bash", "-c", "nohup sleep 60 > /dev/null 2>&1 & echo $! > lingering.pid"])
    with open(os.path.join(workspace, "lingering.pid")) as handle:
        lingering = int(handle.read())
    results: list[int] = []

    def long_command() -> None:
        response = api.call(
            sid, "POST", "api/execute", json={"command": ["sleep", "60"], "timeout": "60s"}
        )
        results.append(response.status_code)

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
    assert results and results[0] in (200, 404)
    _assert_dead(sleeper.pid)
    _assert_dead(lingering)
    assert not os.path.exists(workspace)
