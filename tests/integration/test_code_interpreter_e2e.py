"""CodeInterpreterClient end to end against the local AgentCube."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import requests

from agentcube import (
    CodeInterpreterClient,
    CommandExecutionError,
    NotFoundError,
    SessionError,
    SessionNotFoundError,
    StopOutcome,
)
from agentcube.local import LocalAgentCube


@pytest.fixture
def ci(urls: dict[str, str]) -> CodeInterpreterClient:
    client = CodeInterpreterClient(**urls)
    yield client
    client.stop()


def test_create_then_stop_deletes_on_the_server(cube: LocalAgentCube, urls: dict[str, str]) -> None:
    client = CodeInterpreterClient(**urls)
    assert cube.has_session(client.session_id)
    assert client.stop() is StopOutcome.DELETED
    assert not cube.has_session(client.session_id)
    assert client.stop() is StopOutcome.NOTHING_TO_DO


def test_run_python_and_bash(ci: CodeInterpreterClient) -> None:
    assert ci.run_code("python", "print(6 * 7)") == "42\n"
    assert ci.run_code("py", "import sys; print(sys.version_info[0])") == "3\n"
    assert ci.run_code("bash", 'x=5; echo "$((x * 3))"') == "15\n"
    assert ci.run_code("sh", "printf '%s' \"it's\"") == "it's"


def test_run_code_quoting_and_length_are_no_issue(ci: CodeInterpreterClient) -> None:
    body = "s = 0\n" + "".join(f"s += {i}  # '\"$`\\\n" for i in range(20000)) + "print(s)\n"
    assert len(body) > 200_000
    assert ci.run_code("python3", body) == f"{sum(range(20000))}\n"


def test_run_code_imports_workspace_modules_and_leaves_no_script(
    ci: CodeInterpreterClient,
) -> None:
    ci.write_file("def triple(x):\n    return 3 * x\n", "helpers.py")
    assert ci.run_code("python", "from helpers import triple\nprint(triple(14))") == "42\n"
    with pytest.raises(CommandExecutionError):
        ci.run_code("python", "import time; time.sleep(30)", timeout=0.5)
    names = {f["name"] for f in ci.list_files(".")} - {"__pycache__"}
    assert names == {"helpers.py"}


def test_second_run_sees_files_not_variables(ci: CodeInterpreterClient) -> None:
    ci.run_code("python", "x = 41\nopen('state.txt', 'w').write('kept')")
    out = ci.run_code(
        "python",
        "print('x' in globals())\nprint(open('state.txt').read())",
    )
    assert out == "False\nkept\n"


def test_execute_command_result_and_errors(ci: CodeInterpreterClient) -> None:
    result = ci.execute_command_result("echo out; echo err >&2; exit 7")
    assert result == {"stdout": "out\n", "stderr": "err\n", "exit_code": 7}
    with pytest.raises(CommandExecutionError) as info:
        ci.execute_command(["sh", "-c", "echo boom >&2; exit 3"])
    assert info.value.exit_code == 3
    assert info.value.stderr == "boom\n"
    assert info.value.command == ["sh", "-c", "echo boom >&2; exit 3"]


def test_command_timeout_gives_exit_code_124(ci: CodeInterpreterClient) -> None:
    result = ci.execute_command_result("sleep 30", timeout=0.5)
    assert result["exit_code"] == 124
    with pytest.raises(CommandExecutionError) as info:
        ci.run_code("python", "import time; time.sleep(30)", timeout=0.5)
    assert info.value.exit_code == 124


def test_write_list_download(ci: CodeInterpreterClient, tmp_path: Path) -> None:
    ci.write_file("héllo\n", "docs/a.txt")
    ci.write_file(bytes(range(256)), "docs/b.bin")
    names = {f["name"]: f for f in ci.list_files("docs")}
    assert set(names) == {"a.txt", "b.bin"}
    assert names["b.bin"]["size"] == 256 and names["b.bin"]["is_dir"] is False
    ci.download_file("docs/b.bin", tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == bytes(range(256))
    assert ci.execute_command("cat docs/a.txt") == "héllo\n"


def test_upload_download_20_mib_byte_for_byte(ci: CodeInterpreterClient, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(20 * 1024 * 1024))
    ci.upload_file(src, "big/big.bin")
    remote_sum = ci.execute_command("sha256sum big/big.bin").split()[0]
    assert remote_sum == hashlib.sha256(src.read_bytes()).hexdigest()
    ci.download_file("big/big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_missing_file_is_not_found_and_leaves_nothing(
    ci: CodeInterpreterClient, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError):
        ci.download_file("nope.txt", tmp_path / "nope.txt")
    assert list(tmp_path.iterdir()) == []


def test_attached_code_interpreter_stop_still_deletes(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    owner = CodeInterpreterClient(**urls)
    attached = CodeInterpreterClient(**urls, session_id=owner.session_id)
    assert attached.execute_command("echo hi") == "hi\n"
    assert attached.stop() is StopOutcome.DELETED
    assert not cube.has_session(owner.session_id)
    assert owner.stop() is StopOutcome.ALREADY_GONE


def test_unknown_session_is_a_requests_http_error(urls: dict[str, str]) -> None:
    client = CodeInterpreterClient(**urls, session_id="no-such-session")
    with pytest.raises(requests.HTTPError) as info:
        client.execute_command("true")
    assert info.value.response.status_code == 404
    assert isinstance(info.value, SessionNotFoundError)
    # Issue 17 (upstream #460): the client forgets the session; stop() sends no DELETE.
    assert client.session_id is None
    with pytest.raises(SessionError):
        client.detach()
    assert client.stop() is StopOutcome.ALREADY_GONE


def test_unknown_template_is_404(urls: dict[str, str]) -> None:
    with pytest.raises(NotFoundError) as info:
        CodeInterpreterClient("no-such-template", **urls)
    assert info.value.status_code == 404


def test_detach_then_delete_from_another_client(cube: LocalAgentCube, urls: dict[str, str]) -> None:
    first = CodeInterpreterClient(**urls)
    sid = first.detach()
    assert first.stop() is StopOutcome.KEPT
    assert cube.has_session(sid)
    other = CodeInterpreterClient(**urls, session_id=sid)
    assert other.delete() is StopOutcome.DELETED
    assert not cube.has_session(sid)
