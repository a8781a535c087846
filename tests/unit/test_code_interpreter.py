"""CodeInterpreterClient: create, commands, run_code, files."""

from __future__ import annotations

import io
import os
import stat

import pytest
import requests
from requests_mock import ANY

from agentcube import (
    APIConnectionError,
    CodeInterpreterClient,
    CommandExecutionError,
    NotFoundError,
    RetryPolicy,
    ServerError,
    SessionError,
    SessionNotFoundError,
)

from .uploads import upload_fields

WM = "http://wm.test"
ROUTER = "http://router.test"
HEADER = "x-agentcube-session-id"
PREFIX = f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"


def _execute_result(stdout="", stderr="", exit_code=0):
    return {
        "stdout": stdout,
        "stderr": stderr,
        "exit_code": exit_code,
        "duration": "2ms",
        "start_time": "2024-01-01T00:00:00Z",
        "end_time": "2024-01-01T00:00:00Z",
    }


@pytest.fixture
def ci(make_ci):
    """An attached client: constructing it sends nothing."""
    return make_ci(session_id="ci-1")


# -- create -------------------------------------------------------------------------------------


def test_create_posts_name_namespace_ttl_and_metadata(cube, make_ci):
    create = cube.create()
    ci = make_ci()
    assert ci.session_id == "ci-1"
    request = create.last_request
    assert request.url == f"{WM}/v1/code-interpreter"
    assert request.json() == {
        "name": "my-interpreter",
        "namespace": "default",
        "ttl": 3600,
        "metadata": {},
    }


def test_create_sends_custom_values(requests_mock, make_ci):
    create = requests_mock.post(f"{WM}/v1/code-interpreter", json={"sessionId": "ci-2"})
    ci = make_ci(name="py-large", namespace="team-a", ttl=60, metadata={"owner": "alice"})
    assert ci.session_id == "ci-2"
    assert ci.name == "py-large"
    assert ci.namespace == "team-a"
    assert create.last_request.json() == {
        "name": "py-large",
        "namespace": "team-a",
        "ttl": 60,
        "metadata": {"owner": "alice"},
    }
    execute = requests_mock.post(
        f"{ROUTER}/v1/namespaces/team-a/code-interpreters/py-large/invocations/api/execute",
        json=_execute_result("ok"),
    )
    assert ci.execute_command("true") == "ok"
    assert execute.last_request.headers[HEADER] == "ci-2"


@pytest.mark.parametrize(
    "body",
    [{}, {"sandboxId": "sb-1"}, {"sessionId": None}, {"sessionId": ""}, [1], "not json"],
)
def test_create_answer_without_session_id_raises_session_error(requests_mock, make_ci, body):
    if isinstance(body, str):
        requests_mock.post(f"{WM}/v1/code-interpreter", text=body)
    else:
        requests_mock.post(f"{WM}/v1/code-interpreter", json=body)
    with pytest.raises(SessionError):
        make_ci()


def test_create_answer_with_unsafe_session_id_raises_session_error(requests_mock, make_ci):
    requests_mock.post(f"{WM}/v1/code-interpreter", json={"sessionId": "../../etc"})
    with pytest.raises(SessionError):
        make_ci()
    assert requests_mock.call_count == 1


def test_create_answer_with_unknown_fields_is_accepted(requests_mock, make_ci):
    requests_mock.post(
        f"{WM}/v1/code-interpreter",
        json={
            "sessionId": "ci-3",
            "kind": "CodeInterpreter",
            "ownerId": "u-1",
            "brandNewField": {"nested": [1, 2]},
            "entryPoints": [{"path": "/", "protocol": "http", "endpoint": "e", "weight": 3}],
        },
    )
    assert make_ci().session_id == "ci-3"


@pytest.mark.parametrize("status", [503, 504])
def test_create_is_not_retried_on_5xx(requests_mock, make_ci, status):
    create = requests_mock.post(f"{WM}/v1/code-interpreter", status_code=status, json={})
    with pytest.raises(ServerError):
        make_ci(retry=RetryPolicy(max_attempts=5, backoff=0))
    assert create.call_count == 1
    assert all(r.method == "POST" for r in requests_mock.request_history)


def test_create_unknown_template_is_not_found(requests_mock, make_ci):
    requests_mock.post(
        f"{WM}/v1/code-interpreter", status_code=404, json={"message": "no such template"}
    )
    with pytest.raises(NotFoundError) as info:
        make_ci(name="missing")
    assert not isinstance(info.value, SessionNotFoundError)
    assert info.value.message == "no such template"


# -- execute_command ----------------------------------------------------------------------------


def test_execute_command_sends_sh_c_with_timeout_and_header(ci, cube):
    execute = cube.execute(stdout="hello\n")
    assert ci.execute_command("echo hello") == "hello\n"
    request = execute.last_request
    assert request.url == PREFIX + "api/execute"
    body = request.json()
    # sh -c under timeout(1) as the argv itself (the whole process group stops at 120 s);
    # the sandbox's own deadline comes 10 s later.
    assert body["command"] == ["timeout", "-k", "5", "120.000", "sh", "-c", "echo hello"]
    assert body["timeout"] == "130s"
    assert request.headers[HEADER] == "ci-1"


def test_execute_command_timeout_is_sent_and_bounds_the_http_read(ci, cube, requests_mock):
    execute = cube.execute(stdout="")
    ci.execute_command("sleep 1", timeout=5)
    assert execute.last_request.json()["command"][3] == "5.000"
    assert execute.last_request.json()["timeout"] == "15s"
    _connect, read = requests_mock.last_request.timeout
    assert read > 5  # the server answers (exit 124) before the client gives up


def test_execute_command_without_timeout_in_the_image_runs_sh_alone(ci, cube):
    missing = 'exec: "timeout": executable file not found in $PATH'
    execute = cube.execute(
        response_list=[
            {"json": {"stdout": "", "stderr": missing, "exit_code": 1}},
            {"json": {"stdout": "hi\n", "stderr": "", "exit_code": 0}},
        ]
    )
    assert ci.execute_command("echo hi", timeout=5) == "hi\n"
    sent = [r.json() for r in execute.request_history]
    assert [b["command"][0] for b in sent] == ["timeout", "sh"]
    assert sent[1] == {"command": ["sh", "-c", "echo hi"], "timeout": "5s"}


def test_execute_command_exit_1_of_the_command_is_not_retried(ci, cube):
    execute = cube.execute(stderr="sh: 1: nope: not found", exit_code=1)
    assert ci.execute_command_result("nope")["exit_code"] == 1
    assert execute.call_count == 1


def test_execute_command_list_is_the_argv(ci, cube):
    execute = cube.execute(stdout="a b\n")
    assert ci.execute_command(["echo", "a b"]) == "a b\n"
    assert execute.last_request.json()["command"] == ["echo", "a b"]


def test_execute_command_nonzero_exit_raises(ci, cube):
    cube.execute(stdout="partial", stderr="ls: nope: No such file", exit_code=2)
    with pytest.raises(CommandExecutionError) as info:
        ci.execute_command("ls nope")
    err = info.value
    assert err.exit_code == 2
    assert err.stderr == "ls: nope: No such file"
    assert err.command == "ls nope"
    assert err.stdout == "partial"
    assert "2" in str(err)


def test_execute_command_result_never_raises_on_exit_code(ci, cube):
    cube.execute(stdout="out", stderr="err", exit_code=124)
    result = ci.execute_command_result("sleep 100", timeout=1)
    # timeout(1) stopped it: the message the sandbox gives its own timeouts is added.
    assert result == {
        "stdout": "out",
        "stderr": "errCommand timed out after 1 seconds",
        "exit_code": 124,
    }
    execute = cube.execute(stdout="", stderr="x", exit_code=3)
    assert ci.execute_command_result(["false"])["stderr"] == "x"
    assert execute.call_count == 1


@pytest.mark.parametrize("command", ["", "   ", [], 42, ["echo", 1]])
def test_execute_command_rejects_empty_or_bad_commands(ci, requests_mock, command):
    with pytest.raises(ValueError):
        ci.execute_command(command)
    assert requests_mock.call_count == 0


def test_execute_404_means_session_gone(ci, requests_mock):
    requests_mock.post(PREFIX + "api/execute", status_code=404, json={"error": "unknown session"})
    with pytest.raises(SessionNotFoundError) as info:
        ci.execute_command("true")
    assert info.value.session_id == "ci-1"
    assert isinstance(info.value, NotFoundError)
    assert isinstance(info.value, SessionError)


def test_execute_is_not_retried_on_503(ci, requests_mock):
    execute = requests_mock.post(PREFIX + "api/execute", status_code=503, json={})
    with pytest.raises(ServerError):
        ci.execute_command("true")
    assert execute.call_count == 1


# -- run_code -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "interpreter"),
    [
        ("python", "python3"),
        ("py", "python3"),
        ("python3", "python3"),
        ("bash", "bash"),
        ("sh", "bash"),  # sh code has always run under bash
    ],
)
def test_run_code_writes_a_file_then_executes_it(ci, requests_mock, language, interpreter):
    code = "print('quotes \"and\" $vars `ticks`')\nprint(6 * 7)\n"
    files = requests_mock.post(PREFIX + "api/files", json={"path": "x", "size": 1})
    execute = requests_mock.post(PREFIX + "api/execute", json=_execute_result("42\n"))

    assert ci.run_code(language, code) == "42\n"

    assert [r.url.rsplit("/", 1)[-1] for r in requests_mock.request_history] == [
        "files",
        "execute",
    ]
    written = upload_fields(files.last_request)
    assert written["file"].decode("utf-8") == code
    assert files.last_request.headers[HEADER] == "ci-1"

    command = execute.last_request.json()["command"]
    script = command[-1]
    assert script.count("./" + written["path"].decode()) == 2  # opened, then removed
    assert interpreter in script.split()
    assert execute.last_request.headers[HEADER] == "ci-1"


def test_run_code_nonzero_exit_raises(ci, requests_mock):
    requests_mock.post(PREFIX + "api/files", json={"path": "x"})
    requests_mock.post(
        PREFIX + "api/execute",
        json=_execute_result(stderr="ZeroDivisionError: division by zero", exit_code=1),
    )
    with pytest.raises(CommandExecutionError) as info:
        ci.run_code("python", "1/0")
    assert info.value.exit_code == 1
    assert "ZeroDivisionError" in info.value.stderr


@pytest.mark.parametrize("language", ["ruby", "javascript", "", "python2", None])
def test_run_code_unsupported_language_sends_nothing(ci, requests_mock, language):
    with pytest.raises(ValueError):
        ci.run_code(language, "print(1)")
    assert requests_mock.call_count == 0


# -- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["héllo\nwörld", b"\x00\x01\xffbinary", b"", ""])
def test_write_file_posts_multipart(ci, requests_mock, content):
    files = requests_mock.post(PREFIX + "api/files", json={"path": "data/f", "size": 3})
    ci.write_file(content, "data/f")
    fields = upload_fields(files.last_request)
    expected = content.encode("utf-8") if isinstance(content, str) else content
    assert fields["file"] == expected
    assert fields["path"] == b"data/f"
    assert fields["mode"] == b"0644"
    assert files.last_request.headers[HEADER] == "ci-1"


def test_upload_file_streams_multipart_with_content_length(ci, requests_mock, tmp_path):
    payload = os.urandom(300_000) + b"\r\n--not-a-boundary\r\n"
    local = tmp_path / "big.bin"
    local.write_bytes(payload)
    files = requests_mock.post(PREFIX + "api/files", json={"path": "up/big.bin"})

    ci.upload_file(local, "up/big.bin")

    request = files.last_request
    assert request.headers[HEADER] == "ci-1"
    assert request.headers["Content-Type"].startswith("multipart/form-data")
    assert "Transfer-Encoding" not in request.headers
    fields = upload_fields(request)
    assert fields["path"] == b"up/big.bin"
    assert fields["file"] == payload


def test_upload_missing_local_file_sends_nothing(ci, requests_mock, tmp_path):
    with pytest.raises(FileNotFoundError):
        ci.upload_file(tmp_path / "nope", "x")
    assert requests_mock.call_count == 0


def test_download_file_writes_exact_bytes(ci, requests_mock, tmp_path):
    payload = bytes(range(256)) * 4000 + b"\r\n\x00end"
    download = requests_mock.get(PREFIX + "api/files/out/data.bin", content=payload)
    target = tmp_path / "data.bin"
    ci.download_file("out/data.bin", target)
    assert target.read_bytes() == payload
    assert download.last_request.headers[HEADER] == "ci-1"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_download_file_gets_the_mode_of_a_new_file(make_ci, requests_mock, tmp_path):
    ci = make_ci(session_id="ci-1")
    prefix = (
        "http://router.test/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
    )
    requests_mock.get(
        prefix + "api/files/a.bin", content=b"abc", headers={"x-agentcube-session-id": "ci-1"}
    )
    umask = os.umask(0o022)
    try:
        ci.download_file("a.bin", tmp_path / "a.bin")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o644
    with pytest.raises(IsADirectoryError):
        ci.download_file("a.bin", tmp_path)


def test_download_file_encodes_the_remote_path(ci, requests_mock, tmp_path):
    download = requests_mock.get(ANY, content=b"x")
    ci.download_file("dir/a b#c.txt", tmp_path / "f")
    assert download.last_request.path_url.endswith("/invocations/api/files/dir/a%20b%23c.txt")


class _BrokenStream(io.RawIOBase):
    """Gives ``good`` bytes, then fails like a dropped connection."""

    def __init__(self, good: bytes) -> None:
        self._good = good
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._done:
            raise ConnectionResetError("connection reset by peer")
        self._done = True
        n = len(self._good)
        buffer[:n] = self._good
        return n


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("failure", ["mid-stream", "truncated"])
def test_failed_download_leaves_no_partial_file(ci, requests_mock, tmp_path, existing, failure):
    if failure == "mid-stream":
        requests_mock.get(PREFIX + "api/files/big", body=_BrokenStream(b"A" * 1000))
    else:
        requests_mock.get(
            PREFIX + "api/files/big",
            body=io.BytesIO(b"A" * 1000),
            headers={"Content-Length": "5000"},
        )
    target = tmp_path / "big"
    if existing:
        target.write_bytes(b"precious")

    with pytest.raises(APIConnectionError):
        ci.download_file("big", target)

    if existing:
        assert target.read_bytes() == b"precious"
        assert os.listdir(tmp_path) == ["big"]
    else:
        assert os.listdir(tmp_path) == []


def test_download_missing_file_is_not_found(ci, requests_mock, tmp_path):
    # The sandbox's own 404, forwarded by the router with the session header (the contract).
    requests_mock.get(
        PREFIX + "api/files/nope.txt",
        status_code=404,
        json={"error": "no file"},
        headers={"x-agentcube-session-id": ci.session_id},
    )
    target = tmp_path / "nope.txt"
    with pytest.raises(NotFoundError) as info:
        ci.download_file("nope.txt", target)
    assert info.value.status_code == 404
    assert not isinstance(info.value, SessionNotFoundError)  # the file is missing, not the session
    assert os.listdir(tmp_path) == []


def test_router_404_without_session_header_means_the_session_is_gone(ci, requests_mock, tmp_path):
    # The router answers an unknown session itself: no session header on its 404.
    requests_mock.get(PREFIX + "api/files/a.txt", status_code=404, json={"error": "not found"})
    requests_mock.get(PREFIX + "api/files", status_code=404, json={"error": "not found"})
    with pytest.raises(SessionNotFoundError) as info:
        ci.download_file("a.txt", tmp_path / "a.txt")
    assert info.value.session_id == "ci-1"
    # Issue 17 (upstream #460): the client forgets the session; a later call sends nothing.
    assert ci.session_id is None
    sent = len(requests_mock.request_history)
    with pytest.raises(SessionError, match="session ci-1 was not found"):
        ci.list_files(".")
    assert len(requests_mock.request_history) == sent
    assert os.listdir(tmp_path) == []


def test_download_creates_missing_directories_only_once_the_file_exists(
    ci, requests_mock, tmp_path
):
    # The sandbox's own 404, forwarded with the session header (the Router's own would end
    # the session).
    requests_mock.get(
        PREFIX + "api/files/x",
        status_code=404,
        json={"error": "File not found"},
        headers={HEADER: "ci-1"},
    )
    requests_mock.get(PREFIX + "api/files/y", content=b"why")
    with pytest.raises(NotFoundError):
        ci.download_file("x", tmp_path / "no-such-dir" / "x")
    assert not (tmp_path / "no-such-dir").exists()
    ci.download_file("y", tmp_path / "new" / "deeper" / "y")
    assert (tmp_path / "new" / "deeper" / "y").read_bytes() == b"why"


def test_download_is_retried_on_503(ci, requests_mock, tmp_path):
    download = requests_mock.get(
        PREFIX + "api/files/f",
        response_list=[{"status_code": 503, "json": {}}, {"content": b"ok"}],
    )
    ci.download_file("f", tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == b"ok"
    assert download.call_count == 2


def test_list_files_returns_entries(ci, requests_mock):
    listing = requests_mock.get(
        PREFIX + "api/files",
        json={
            "files": [
                {"name": "a.txt", "size": 3, "modified": "t", "mode": "0644", "is_dir": False},
                {"name": "sub", "size": 0, "modified": "t", "mode": "0755", "is_dir": True},
            ]
        },
    )
    entries = ci.list_files("work dir")
    assert [e["name"] for e in entries] == ["a.txt", "sub"]
    assert [e["is_dir"] for e in entries] == [False, True]
    assert entries[0]["size"] == 3
    assert {"name", "size", "modified", "mode", "is_dir"} <= set(entries[0])
    assert listing.last_request.qs == {"path": ["work dir"]}
    assert listing.last_request.headers[HEADER] == "ci-1"


def test_list_files_default_is_workspace(ci, requests_mock):
    listing = requests_mock.get(PREFIX + "api/files", json={"files": []})
    assert ci.list_files() == []
    assert listing.last_request.qs == {"path": ["."]}


def test_list_missing_directory_is_not_found(ci, requests_mock):
    requests_mock.get(PREFIX + "api/files", status_code=404, json={"error": "no such directory"})
    with pytest.raises(NotFoundError):
        ci.list_files("nope")


def test_data_plane_property_refuses_after_stop(cube, make_ci, requests_mock):
    cube.create()
    cube.delete()
    client = make_ci()
    assert client.data_plane.session_id == "ci-1"
    client.stop()
    with pytest.raises(SessionError):
        _ = client.data_plane


def test_code_interpreter_client_keeps_historic_positional_order(requests_mock):
    # CodeInterpreterClient(name, namespace, ttl, workload_manager_url, router_url, auth_token,
    # verbose, session_id)
    execute = requests_mock.post(
        f"{ROUTER}/v1/namespaces/ns1/code-interpreters/tpl/invocations/api/execute",
        json=_execute_result("ok"),
    )
    client = CodeInterpreterClient("tpl", "ns1", 60, WM, ROUTER, "tok", False, "ci-pos")
    assert client.execute_command("true") == "ok"
    assert execute.last_request.headers[HEADER] == "ci-pos"
    assert execute.last_request.headers["Authorization"] == "Bearer tok"
    client.detach()


def test_transport_error_on_execute_is_api_connection_error(ci, requests_mock):
    requests_mock.post(PREFIX + "api/execute", exc=requests.exceptions.ConnectionError("reset"))
    with pytest.raises(APIConnectionError):
        ci.execute_command("true")
