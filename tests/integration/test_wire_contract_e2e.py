"""The SDK against agentcube.local, which answers as the real services do (gzip, the 32 MiB
body cap, the file server's rules, mode on create only, pipe-holding processes, 429).

Each test is one SDK point of issue 8; it works here because it works against the real
PicoD behind the real Router (the conformance suite checks the local side).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agentcube import (
    APIConnectionError,
    BackgroundProcess,
    CodeInterpreterClient,
    RetryPolicy,
    ServerError,
)
from agentcube.clients import CodeInterpreterDataPlaneClient
from agentcube.local import LocalAgentCube

from .loopback import Answer, RecordingServer

PREFIX = "/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"


@pytest.fixture
def ci(urls: dict[str, str]) -> Iterator[CodeInterpreterClient]:
    with CodeInterpreterClient(**urls) as client:
        yield client


def _workspace(cube: LocalAgentCube, ci: CodeInterpreterClient) -> Path:
    (info,) = [s for s in cube.sessions() if s.session_id == ci.session_id]
    return Path(info.workspace or "")


# -- downloads: compressed answers, truncation ---------------------------------------------------


CONTENTS = {
    "small.txt": b"hello",
    "bin16k.bin": bytes(range(256)) * 64,
    "t100k.txt": b"line of text\n" * 8000,
    "r3000.bin": os.urandom(3000),
    "img.png": b"\x89PNG\r\n\x1a\n" + os.urandom(61),
    "name with spaces.txt": b"spaced out",
    "empty.bin": b"",
}


@pytest.mark.parametrize("name", sorted(CONTENTS))
def test_downloads_arrive_byte_for_byte_whatever_the_encoding(
    ci: CodeInterpreterClient, tmp_path: Path, urls: dict[str, str], name: str
) -> None:
    ci.write_file(CONTENTS[name], "d/" + name)
    ci.download_file("d/" + name, tmp_path / name)
    assert (tmp_path / name).read_bytes() == CONTENTS[name]


def test_the_local_router_really_gzips_what_the_sdk_downloads(
    ci: CodeInterpreterClient, urls: dict[str, str]
) -> None:
    # Without this, the test above would prove nothing about compressed answers.
    ci.write_file(CONTENTS["t100k.txt"], "g.txt")
    raw = requests.get(
        urls["router_url"] + PREFIX + "api/files/g.txt",
        headers={"x-agentcube-session-id": str(ci.session_id), "Accept-Encoding": "gzip"},
        stream=True,
        timeout=10,
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    assert int(raw.headers["Content-Length"]) < len(CONTENTS["t100k.txt"])
    raw.close()


def _lying_server(body: bytes, declared: int, encoding: str | None) -> RecordingServer:
    headers = {"Content-Type": "application/octet-stream", "x-agentcube-session-id": "s-1"}
    if encoding:
        headers["Content-Encoding"] = encoding
    return RecordingServer(lambda seen: Answer(200, body, headers, declared_length=declared))


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_a_truncated_download_is_an_error_and_leaves_no_file(
    tmp_path: Path, encoding: str | None
) -> None:
    import gzip

    payload = b"x" * 5000
    wire = gzip.compress(payload) if encoding else payload
    server = _lying_server(wire[: len(wire) // 2], len(wire), encoding)
    try:
        dp = CodeInterpreterDataPlaneClient(
            "s-1", base_url=server.url + "/inv", retry=RetryPolicy(max_attempts=1)
        )
        target = tmp_path / "out.bin"
        target.write_bytes(b"previous")
        with pytest.raises(APIConnectionError):
            dp.download_file("f.bin", target)
        assert target.read_bytes() == b"previous"
        assert sorted(os.listdir(tmp_path)) == ["out.bin"], "no partial file is left"
    finally:
        server.close()


# -- uploads of any size -------------------------------------------------------------------------


def test_a_file_over_the_body_cap_goes_in_parts_and_leaves_none(
    cube: LocalAgentCube, ci: CodeInterpreterClient, tmp_path: Path
) -> None:
    data = os.urandom(40 * 1024 * 1024 + 17)  # one request of it would be a 413
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    ci.upload_file(source, "up/big.bin", mode="0600")
    workspace = _workspace(cube, ci)
    assert (workspace / "up" / "big.bin").read_bytes() == data
    assert oct((workspace / "up" / "big.bin").stat().st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(workspace / "up")) == ["big.bin"], "no part left behind"
    ci.download_file("up/big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == data


def test_a_failed_part_leaves_no_part_and_no_half_file(
    cube: LocalAgentCube, ci: CodeInterpreterClient
) -> None:
    workspace = _workspace(cube, ci)
    ci.write_file(b"old contents", "keep.bin")
    cube.inject_fault("POST", PREFIX + "api/files", status=500, times=1)
    cube.inject_fault("POST", PREFIX + "api/files", status=500, times=1)  # the second part
    with pytest.raises(ServerError):
        ci.write_file(os.urandom(3 * 64 * 1024), "keep.bin", part_size=64 * 1024)
    assert (workspace / "keep.bin").read_bytes() == b"old contents"
    assert sorted(os.listdir(workspace)) == ["keep.bin"]


def test_empty_files_and_empty_programs_work(
    cube: LocalAgentCube, ci: CodeInterpreterClient, tmp_path: Path
) -> None:
    ci.write_file(b"", "empty.txt")
    ci.write_file("", "empty2.txt")
    assert (_workspace(cube, ci) / "empty.txt").read_bytes() == b""
    ci.download_file("empty.txt", tmp_path / "e")
    assert (tmp_path / "e").read_bytes() == b""
    assert ci.run_code("python", "") == ""
    assert ci.run_code("bash", "") == ""


_MEMORY_CHILD = r"""
import json, os, resource, sys
from agentcube import CodeInterpreterClient

def reset_peak():  # Linux: VmHWM starts again from the current RSS
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

size = int(sys.argv[1]); source = sys.argv[2]; back = sys.argv[3]
growth = {}
with CodeInterpreterClient() as ci:
    ci.execute_command("true")
    for name, transfer in (("upload", lambda: ci.upload_file(source, "big.bin")),
                           ("download", lambda: ci.download_file("big.bin", back))):
        exact = reset_peak()
        before = rss("VmRSS") if exact else rss("VmHWM")
        transfer()
        growth[name] = rss("VmHWM") - before
print(json.dumps(growth))
"""


def test_100_mib_moves_both_ways_byte_for_byte_in_constant_memory(
    urls: dict[str, str], tmp_path: Path
) -> None:
    size = 100 * 1024 * 1024
    source, back = tmp_path / "src.bin", tmp_path / "back.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as f:
        for _ in range(size // (4 * 1024 * 1024)):
            block = os.urandom(4 * 1024 * 1024)
            digest.update(block)
            f.write(block)
    env = {
        **os.environ,
        "WORKLOAD_MANAGER_URL": urls["workload_manager_url"],
        "ROUTER_URL": urls["router_url"],
    }
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(size), str(source), str(back)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    growth = json.loads(done.stdout.strip().splitlines()[-1])
    assert growth["upload"] < 32 * 1024 * 1024, growth
    assert growth["download"] < 32 * 1024 * 1024, growth
    check = hashlib.sha256()
    with open(back, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            check.update(chunk)
    assert check.hexdigest() == digest.hexdigest()


# -- paths the file server refuses as written ----------------------------------------------------


def test_index_html_and_dot_dot_paths_download(
    cube: LocalAgentCube, ci: CodeInterpreterClient, tmp_path: Path
) -> None:
    ci.write_file("<h1>y</h1>", "site/index.html")
    ci.download_file("site/index.html", tmp_path / "index.html")
    assert (tmp_path / "index.html").read_text() == "<h1>y</h1>"
    ci.write_file("hello", "dir1/dir2/hello.txt")
    ci.download_file("dir1/../dir1/dir2/hello.txt", tmp_path / "hello.txt")
    assert (tmp_path / "hello.txt").read_text() == "hello"
    listing = {e["name"] for e in ci.list_files("site")}
    assert listing == {"index.html"}, "the temporary link is removed"


# -- mode: it holds over an existing file --------------------------------------------------------


def test_a_mode_asked_for_holds_over_an_existing_file(
    cube: LocalAgentCube, ci: CodeInterpreterClient
) -> None:
    ci.write_file("#!/bin/sh\necho ran\n", "run.sh", mode="0600")
    ci.write_file("#!/bin/sh\necho ran\n", "run.sh", mode="0755")
    assert ci.execute_command(["./run.sh"]) == "ran\n"
    assert (_workspace(cube, ci) / "run.sh").stat().st_mode & 0o777 == 0o755
    ci.write_file("x", "run.sh")  # no mode asked: it stays
    assert (_workspace(cube, ci) / "run.sh").stat().st_mode & 0o777 == 0o755


# -- background processes ------------------------------------------------------------------------


def test_a_background_process_returns_at_once_and_logs_to_the_workspace(
    cube: LocalAgentCube, ci: CodeInterpreterClient
) -> None:
    started = time.monotonic()
    bg = ci.execute_command("echo serving; sleep 30", background=True)
    assert time.monotonic() - started < 5
    assert isinstance(bg, BackgroundProcess) and bg.pid > 0
    deadline = time.monotonic() + 5
    while "serving" not in ci.execute_command(["cat", bg.log_file]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ci.execute_command(f"kill -0 {bg.pid} && echo alive") == "alive\n"
    ci.execute_command(f"kill {bg.pid}")


def test_a_plain_ampersand_keeps_the_call_open_until_the_job_exits(
    ci: CodeInterpreterClient,
) -> None:
    # Why background=True exists: the answer waits for every process holding the output pipe.
    started = time.monotonic()
    assert ci.execute_command("sleep 2 & echo started") == "started\n"
    assert time.monotonic() - started >= 1.8


# -- 429: the Router sheds what it cannot take, the SDK sends it again ---------------------------


def test_requests_shed_with_429_are_sent_again() -> None:
    with LocalAgentCube(quiet=True, max_in_flight=1) as cube:
        policy = RetryPolicy(max_attempts=30, backoff=0.05, max_backoff=0.2)
        with CodeInterpreterClient(
            workload_manager_url=cube.workload_manager_url,
            router_url=cube.router_url,
            retry=policy,
        ) as ci:
            slow = threading.Thread(target=ci.execute_command, args=("sleep 1",))
            slow.start()
            time.sleep(0.3)
            cube.reset_counters()
            assert ci.execute_command("echo through") == "through\n"  # a POST, sent again
            slow.join()
            executes = [r for r in cube.requests_seen() if r.path.endswith("api/execute")]
            assert len(executes) >= 2, "the first attempt was shed"
