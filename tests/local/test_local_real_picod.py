"""``picod=PATH`` with a real PicoD binary: the SDK end to end through the Router's forwarding.

Opt-in: runs only when ``AGENTCUBE_TEST_PICOD`` names a PicoD binary (built from
volcano-sh/agentcube's ``cmd/picod``); skipped otherwise, as in CI. Loopback only.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agentcube import CodeInterpreterClient, CommandExecutionError
from agentcube.local import LocalAgentCube

from .helpers import SESSION_HEADER, Api

REAL_PICOD = os.environ.get("AGENTCUBE_TEST_PICOD")
pytestmark = pytest.mark.skipif(
    not REAL_PICOD, reason="set AGENTCUBE_TEST_PICOD to a PicoD binary to run these"
)


@pytest.fixture(scope="module")
def real_cube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAgentCube]:
    assert REAL_PICOD is not None
    root = tmp_path_factory.mktemp("root")
    with LocalAgentCube(quiet=True, picod=REAL_PICOD, root_dir=root) as cube:
        yield cube


@pytest.fixture
def ci(real_cube: LocalAgentCube) -> Iterator[CodeInterpreterClient]:
    client = CodeInterpreterClient(
        workload_manager_url=real_cube.workload_manager_url, router_url=real_cube.router_url
    )
    yield client
    client.stop()


def test_commands_and_code_run(ci: CodeInterpreterClient) -> None:
    assert ci.execute_command("echo hello").strip() == "hello"
    assert ci.execute_command(["printf", "%s", "a b"]) == "a b"
    assert ci.run_code("python", "print(6 * 7)").strip() == "42"
    with pytest.raises(CommandExecutionError) as caught:
        ci.execute_command("echo oops >&2; exit 3")
    assert caught.value.exit_code == 3


def test_forty_mib_go_in_parts_and_come_back(ci: CodeInterpreterClient, tmp_path: Path) -> None:
    data = os.urandom(40 << 20)
    ci.write_file(data, "big/blob.bin")
    ci.download_file("big/blob.bin", tmp_path / "blob.bin")
    assert hashlib.sha256((tmp_path / "blob.bin").read_bytes()).digest() == (
        hashlib.sha256(data).digest()
    )
    (entry,) = ci.list_files("big")
    assert (entry["name"], entry["size"], entry["is_dir"]) == ("blob.bin", 40 << 20, False)


def test_modes_and_listing(ci: CodeInterpreterClient) -> None:
    ci.write_file("#!/bin/sh\necho from a script\n", "bin/hello.sh", mode="0755")
    assert ci.execute_command(["./bin/hello.sh"]).strip() == "from a script"
    names = {entry["name"] for entry in ci.list_files(".")}
    assert "bin" in names


def test_raw_answers_keep_go_s_framing(real_cube: LocalAgentCube) -> None:
    api = Api(real_cube)
    sid = api.create()
    health = api.call(sid, "GET", "health")
    assert (health.status_code, health.json()["service"]) == (200, "PicoD")
    assert health.headers[SESSION_HEADER] == sid
    body = {"path": "t.txt", "content": "aGVsbG8=", "mode": "0644"}
    assert api.call(sid, "POST", "api/files", json=body).status_code == 200
    raw = api.call(sid, "GET", "api/files/t.txt", headers={"Accept-Encoding": "gzip"}, stream=True)
    data = raw.raw.read(decode_content=False)
    if raw.headers.get("Content-Encoding") == "gzip":
        data = gzip.decompress(data)
    assert data == b"hello"
    streamed = api.call(
        sid, "POST", "api/files", data=iter([b'{"path": "u.txt", ', b'"content": "aGk="}'])
    )
    assert streamed.status_code == 200, streamed.text
    assert api.delete(sid).status_code == 200
    gone = requests.get(api.ci_url("health"), headers={SESSION_HEADER: sid}, timeout=10)
    assert gone.status_code == 404
