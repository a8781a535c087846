"""The SDK against the wire contract of the real services (mocked HTTP).

Each test is one point of ../shared/agentcube-api.md where the real PicoD and Router differ
from what a naive client assumes: gzip, the 32 MiB body cap, empty uploads, the file server's
rules, mode on create only, processes holding the output pipe, 429, one credential per plane.
"""

from __future__ import annotations

import gzip
import json
import os

import pytest
import requests

from agentcube import (
    BackgroundProcess,
    CodeInterpreterClient,
    DataPlaneError,
    ServerError,
    TokenAuth,
)

from .uploads import upload_fields

WM = "http://wm.test"
ROUTER = "http://router.test"
HEADER = "x-agentcube-session-id"
PREFIX = f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"


def _result(stdout: str = "", stderr: str = "", exit_code: int = 0) -> dict[str, object]:
    return {
        "stdout": stdout,
        "stderr": stderr,
        "exit_code": exit_code,
        "duration": 0.001,
        "start_time": "2026-11-24T04:40:31.346605434Z",
        "end_time": "2026-11-24T04:40:31.347990798Z",
    }


def _info(path: str, size: int, mode: str = "-rw-r--r--") -> dict[str, object]:
    return {"path": path, "size": size, "mode": mode, "modified": "2026-11-24T04:40:48Z"}


@pytest.fixture
def ci(make_ci):
    return make_ci(session_id="ci-1")


# -- downloads: any Content-Encoding, length checked on the wire ---------------------------------


@pytest.mark.parametrize("size", [5, 3000, 104_000])
def test_a_gzip_download_is_decoded_and_its_compressed_length_accepted(
    ci, requests_mock, tmp_path, size
):
    # PicoD gzips every answer when asked (requests always asks); a small answer's
    # Content-Length is the compressed length.
    data = (b"line of text\n" * (size // 13 + 1))[:size]
    packed = gzip.compress(data)
    requests_mock.get(
        PREFIX + "api/files/t.txt",
        content=packed,
        headers={"Content-Encoding": "gzip", "Content-Length": str(len(packed))},
    )
    ci.download_file("t.txt", tmp_path / "t.txt")
    assert (tmp_path / "t.txt").read_bytes() == data
    assert "gzip" in requests_mock.last_request.headers["Accept-Encoding"]


@pytest.mark.parametrize(
    ("name", "asks_gzip"),
    [
        ("t.txt", True),
        ("d/data.CSV", True),
        ("x.py", True),
        ("a.bin", False),
        ("a.tar.gz", False),
        ("photo.png", False),
        ("noext", False),
        ("dir.txt/model", False),
    ],
)
def test_a_download_asks_for_gzip_only_for_text_names(ci, requests_mock, tmp_path, name, asks_gzip):
    # The sandbox compresses whatever a client accepts gzip for: that pays only for text. The
    # identity has to be said, or the Router asks the sandbox for gzip itself.
    requests_mock.get(PREFIX + "api/files/" + name, content=b"abc")
    ci.download_file(name, tmp_path / "out")
    sent = requests_mock.last_request.headers["Accept-Encoding"]
    assert ("gzip" in sent) == asks_gzip
    assert asks_gzip or sent == "identity"
    assert (tmp_path / "out").read_bytes() == b"abc"


def test_a_chunked_gzip_download_without_length_is_decoded(ci, requests_mock, tmp_path):
    data = bytes(range(256)) * 64
    requests_mock.get(
        PREFIX + "api/files/bin", content=gzip.compress(data), headers={"Content-Encoding": "gzip"}
    )
    ci.download_file("bin", tmp_path / "bin")
    assert (tmp_path / "bin").read_bytes() == data


# -- paths: cleaned before sending; the index.html redirect -------------------------------------


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("dir1/../dir1/dir2/hello.txt", "dir1/dir2/hello.txt"),
        ("/abs//x.txt", "abs/x.txt"),
        ("./a b.txt", "a%20b.txt"),
    ],
)
def test_download_sends_the_cleaned_path(ci, requests_mock, tmp_path, path, sent):
    download = requests_mock.get(PREFIX + "api/files/" + sent, content=b"x")
    ci.download_file(path, tmp_path / "out")
    assert download.call_count == 1
    assert (tmp_path / "out").read_bytes() == b"x"


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/", "."])
def test_download_of_a_path_that_names_no_workspace_file_sends_nothing(
    ci, requests_mock, tmp_path, path
):
    with pytest.raises(ValueError):
        ci.download_file(path, tmp_path / "out")
    assert requests_mock.call_count == 0


def test_the_index_html_redirect_is_fetched_through_a_temporary_link(ci, requests_mock, tmp_path):
    # The file server answers every .../index.html with 301 to "./": following it would ask
    # for the directory (400). The file is linked to a temporary name, fetched, unlinked.
    requests_mock.get(
        PREFIX + "api/files/site/index.html", status_code=301, headers={"Location": "./"}
    )
    fetched = requests_mock.get(
        requests_mock_matcher(PREFIX + "api/files/site/.agentcube-download-"), content=b"<h1>y</h1>"
    )
    execute = requests_mock.post(PREFIX + "api/execute", json=_result())
    ci.download_file("site/index.html", tmp_path / "index.html")
    assert (tmp_path / "index.html").read_bytes() == b"<h1>y</h1>"
    link, unlink = (r.json()["command"] for r in execute.request_history)
    alias = link[-1]
    assert link[-2] == "./site/index.html" and alias.startswith("./site/.agentcube-download-")
    assert unlink == ["rm", "-f", "--", alias]
    assert fetched.last_request.url.endswith(alias[2:])


def requests_mock_matcher(prefix: str):
    import re

    return re.compile(re.escape(prefix) + ".*")


# -- uploads: one request up to a part, else parts assembled atomically ---------------------------


def test_a_small_write_is_one_json_request(ci, requests_mock):
    # PicoD's JSON body, as upstream's SDK sends it: the local PicoD reads it faster than a
    # multipart form for small content.
    files = requests_mock.post(PREFIX + "api/files", json=_info("f.bin", 3))
    ci.write_file(b"abc", "/f.bin")
    assert requests_mock.call_count == 1
    assert files.last_request.headers["Content-Type"] == "application/json"
    assert files.last_request.json() == {"path": "f.bin", "mode": "0644", "content": "YWJj"}


@pytest.mark.parametrize(("size", "shape"), [(16 * 1024, "json"), (16 * 1024 + 1, "multipart")])
def test_a_write_above_16_kib_is_multipart(ci, requests_mock, size, shape):
    files = requests_mock.post(PREFIX + "api/files", json=_info("f.bin", size))
    data = os.urandom(size)
    ci.write_file(data, "f.bin")
    request = files.last_request
    assert ("json" in request.headers["Content-Type"]) == (shape == "json")
    assert upload_fields(request) == {"path": b"f.bin", "mode": b"0644", "file": data}


@pytest.mark.parametrize("content", [b"", ""])
def test_an_empty_file_is_written(ci, requests_mock, content):
    # The JSON upload refuses empty content; the multipart one takes an empty file.
    files = requests_mock.post(PREFIX + "api/files", json=_info("empty", 0))
    ci.write_file(content, "empty")
    assert upload_fields(files.last_request)["file"] == b""


def test_an_empty_program_runs(ci, requests_mock):
    files = requests_mock.post(PREFIX + "api/files", json=_info("x", 0))
    requests_mock.post(PREFIX + "api/execute", json=_result())
    assert ci.run_code("python", "") == ""
    assert upload_fields(files.last_request)["file"] == b""


def test_a_large_write_goes_in_parts_then_one_assembly(ci, requests_mock):
    part = 64 * 1024
    data = bytes(range(256)) * (part * 3 // 256) + b"tail"  # 3 full parts and a short one
    files = requests_mock.post(PREFIX + "api/files", json=_info("p", part))
    execute = requests_mock.post(PREFIX + "api/execute", json=_result())
    ci.write_file(data, "out/big.bin", part_size=part, mode="0640")
    parts = [upload_fields(r) for r in files.request_history]
    assert len(parts) == 4
    assert all(len(p["file"]) <= part for p in parts)
    assert b"".join(p["file"] for p in parts) == data
    names = [p["path"].decode() for p in parts]
    directory = names[0].rsplit("/", 1)[0]
    assert directory.startswith("out/.agentcube-upload-")
    assert names == sorted(names) and all(n.startswith(directory + "/") for n in names)
    (assembly,) = (r.json() for r in execute.request_history)
    argv = assembly["command"]
    assert argv[:2] == ["sh", "-c"]
    assert argv[4:] == [
        "./" + directory,
        f"./{directory}.tmp",
        "./out/big.bin",
        str(len(data)),
        "640",
    ]


def test_a_failed_part_removes_the_parts_and_never_assembles(ci, requests_mock):
    part = 64 * 1024
    requests_mock.post(
        PREFIX + "api/files",
        [{"json": _info("p", part)}, {"status_code": 500, "json": {"error": "disk full"}}],
    )
    execute = requests_mock.post(PREFIX + "api/execute", json=_result())
    with pytest.raises(ServerError):
        ci.write_file(b"x" * (part * 3), "big.bin", part_size=part)
    (cleanup,) = (r.json()["command"] for r in execute.request_history)
    assert cleanup[:3] == ["rm", "-rf", "--"]
    assert cleanup[3].startswith("./.agentcube-upload-")


def test_a_failed_assembly_raises_and_cleans_up(ci, requests_mock):
    part = 64 * 1024
    requests_mock.post(PREFIX + "api/files", json=_info("p", part))
    execute = requests_mock.post(
        PREFIX + "api/execute",
        [
            {"json": _result(stderr="cannot write big.bin: is a directory", exit_code=1)},
            {"json": _result()},
        ],
    )
    with pytest.raises(DataPlaneError, match="is a directory"):
        ci.write_file(b"x" * (part + 1), "big.bin", part_size=part)
    assert execute.request_history[-1].json()["command"][:3] == ["rm", "-rf", "--"]


@pytest.mark.parametrize("bad", [0, 1024, 33 * 1024 * 1024, "8M", True])
def test_a_part_size_outside_the_cap_is_refused(ci, requests_mock, bad):
    with pytest.raises(ValueError):
        ci.write_file(b"x", "f", part_size=bad)
    assert requests_mock.call_count == 0


def test_a_1_gib_upload_takes_129_requests(ci, requests_mock, tmp_path):
    big = tmp_path / "sparse.bin"
    with open(big, "wb") as f:
        f.truncate(1024**3)  # sparse: nothing is written to disk
    files = requests_mock.post(PREFIX + "api/files", json=_info("p", 8 * 1024**2))
    execute = requests_mock.post(PREFIX + "api/execute", json=_result())
    ci.upload_file(big, "big.bin")
    assert files.call_count == 128
    assert execute.call_count == 1
    assert all(len(r.body) < 32 * 1024**2 for r in files.request_history)


# -- mode: applied only when the sandbox creates the file ----------------------------------------


def test_a_mode_that_did_not_hold_is_set_with_one_chmod(ci, requests_mock):
    requests_mock.post(PREFIX + "api/files", json=_info("run.sh", 4, "-rw-r--r--"))
    execute = requests_mock.post(PREFIX + "api/execute", json=_result())
    info = ci.data_plane.write_file("echo", "run.sh", mode="0755")
    assert execute.last_request.json()["command"] == ["chmod", "755", "./run.sh"]
    assert info.mode == "-rwxr-xr-x"


def test_a_mode_that_held_costs_no_request(ci, requests_mock):
    requests_mock.post(PREFIX + "api/files", json=_info("run.sh", 4, "-rwxr-xr-x"))
    ci.write_file("echo", "run.sh", mode="755")
    assert requests_mock.call_count == 1


def test_no_mode_asked_sends_no_chmod(ci, requests_mock):
    requests_mock.post(PREFIX + "api/files", json=_info("f", 1, "-rw-------"))
    ci.write_file("x", "f")
    assert requests_mock.call_count == 1


def test_a_failed_chmod_is_an_error(ci, requests_mock):
    requests_mock.post(PREFIX + "api/files", json=_info("f", 1))
    requests_mock.post(
        PREFIX + "api/execute", json=_result(stderr="chmod: Operation not permitted", exit_code=1)
    )
    with pytest.raises(DataPlaneError, match="Operation not permitted"):
        ci.write_file("x", "f", mode="4755")


@pytest.mark.parametrize("mode", ["0999", "rwx", "-1", 0o10000, "12345"])
def test_a_bad_mode_is_refused_before_sending(ci, requests_mock, mode):
    with pytest.raises(ValueError):
        ci.write_file("x", "f", mode=mode)
    assert requests_mock.call_count == 0


# -- background processes ------------------------------------------------------------------------


def test_background_returns_at_once_with_the_pid_and_log_file(ci, requests_mock):
    execute = requests_mock.post(PREFIX + "api/execute", json=_result("4242\n"))
    started = ci.execute_command("python3 -m http.server 8000", background=True)
    assert started == BackgroundProcess(4242, started.log_file)
    assert started.log_file.startswith(".agentcube-bg-") and started.log_file.endswith(".log")
    argv = execute.last_request.json()["command"]
    assert argv[:2] == ["sh", "-c"] and "</dev/null &" in argv[2]
    assert argv[-2:] == ["./" + started.log_file, "python3 -m http.server 8000"]


def test_background_takes_an_argv_and_a_log_file(ci, requests_mock):
    execute = requests_mock.post(PREFIX + "api/execute", json=_result("7\n"))
    started = ci.execute_command(["sleep", "100"], background=True, log_file="/logs/s.log")
    assert started == BackgroundProcess(7, "logs/s.log")
    assert execute.last_request.json()["command"][-3:] == ["./logs/s.log", "sleep", "100"]


def test_log_file_without_background_is_refused(ci, requests_mock):
    with pytest.raises(ValueError):
        ci.execute_command("true", log_file="x.log")
    assert requests_mock.call_count == 0


# -- 429: shed by the Router, safe to send again -------------------------------------------------


OVERLOADED = {
    "status_code": 429,
    "json": {"error": "server overloaded, please try again later", "code": "SERVER_OVERLOADED"},
}


def test_a_router_429_is_retried_even_for_a_post(ci, requests_mock):
    execute = requests_mock.post(PREFIX + "api/execute", [OVERLOADED, {"json": _result("ok")}])
    assert ci.execute_command("true") == "ok"
    assert execute.call_count == 2


def test_a_429_from_the_sandbox_itself_is_not_retried_for_a_post(ci, requests_mock):
    answered = {**OVERLOADED, "headers": {HEADER: "ci-1"}}
    execute = requests_mock.post(PREFIX + "api/execute", [answered, {"json": _result("ok")}])
    with pytest.raises(requests.HTTPError) as info:
        ci.execute_command("true")
    assert info.value.response.status_code == 429
    assert execute.call_count == 1


def test_429_retries_stop_at_the_policy_limit(make_ci, requests_mock):
    from agentcube import RetryPolicy

    ci = make_ci(session_id="ci-1", retry=RetryPolicy(max_attempts=4, backoff=0))
    execute = requests_mock.post(PREFIX + "api/execute", **OVERLOADED)
    with pytest.raises(requests.HTTPError):
        ci.execute_command("true")
    assert execute.call_count == 4


def test_a_502_on_a_post_is_not_retried(ci, requests_mock):
    execute = requests_mock.post(
        PREFIX + "api/execute",
        [{"status_code": 502, "json": {"error": "sandbox unreachable"}}, {"json": _result()}],
    )
    with pytest.raises(ServerError):
        ci.execute_command("true")
    assert execute.call_count == 1


# -- one credential per plane --------------------------------------------------------------------


def test_each_plane_can_have_its_own_credential(requests_mock):
    create = requests_mock.post(f"{WM}/v1/code-interpreter", json={"sessionId": "ci-1"})
    delete = requests_mock.delete(f"{WM}/v1/code-interpreter/sessions/ci-1", json={})
    execute = requests_mock.post(PREFIX + "api/execute", json=_result())
    ci = CodeInterpreterClient(
        workload_manager_url=WM,
        router_url=ROUTER,
        workload_manager_auth=TokenAuth("k8s-sa-token"),
        router_auth=TokenAuth("oidc-jwt"),
    )
    ci.execute_command("true")
    ci.stop()
    assert create.last_request.headers["Authorization"] == "Bearer k8s-sa-token"
    assert delete.last_request.headers["Authorization"] == "Bearer k8s-sa-token"
    assert execute.last_request.headers["Authorization"] == "Bearer oidc-jwt"


def test_one_auth_serves_both_planes_and_a_plane_credential_overrides_it(requests_mock):
    requests_mock.post(f"{WM}/v1/code-interpreter", json={"sessionId": "ci-1"})
    delete = requests_mock.delete(f"{WM}/v1/code-interpreter/sessions/ci-1", json={})
    execute = requests_mock.post(PREFIX + "api/execute", json=_result())
    ci = CodeInterpreterClient(
        workload_manager_url=WM,
        router_url=ROUTER,
        auth=TokenAuth("both"),
        router_auth=TokenAuth("router-only"),
    )
    ci.execute_command("true")
    ci.stop()
    assert delete.last_request.headers["Authorization"] == "Bearer both"
    assert execute.last_request.headers["Authorization"] == "Bearer router-only"


def test_a_plane_credential_must_be_a_provider(requests_mock):
    with pytest.raises(ValueError):
        CodeInterpreterClient(workload_manager_url=WM, router_url=ROUTER, router_auth="token")
    assert requests_mock.call_count == 0


def test_execute_answers_with_null_output_are_read_as_empty(ci, requests_mock):
    requests_mock.post(
        PREFIX + "api/execute", text=json.dumps({**_result(), "stdout": None, "stderr": None})
    )
    assert ci.execute_command_result("true") == {"stdout": "", "stderr": "", "exit_code": 0}
