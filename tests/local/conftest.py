"""Shared fixtures: one LocalAgentCube for these tests; one running the PicoD stand-in."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentcube.local import LocalAgentCube

from .helpers import CI, INNER_WORKSPACE, MAX_UPLOAD, Api


@pytest.fixture(scope="session")
def cube() -> Iterator[LocalAgentCube]:
    server = LocalAgentCube(
        quiet=True,
        code_interpreters=(CI, "other-interpreter"),
        agents={"echo-agent": None, "second-agent": None},
        max_body_bytes=MAX_UPLOAD,
        workspaces={"*": INNER_WORKSPACE},
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(cube: LocalAgentCube) -> Iterator[Api]:
    client = Api(cube)
    yield client
    client.http.close()
    cube.clear_faults()


@pytest.fixture
def session_id(api: Api) -> Iterator[str]:
    sid = api.create()
    yield sid
    api.delete(sid)


STANDIN = Path(__file__).with_name("picod_standin.py")


@pytest.fixture(scope="module")
def picod_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An executable that runs the stand-in, as a PicoD binary would be run (saying a word
    on its output first, as PicoD does)."""
    path = tmp_path_factory.mktemp("bin") / "picod"
    path.write_text(
        f'#!/bin/sh\necho "picod starting on $2"\nexec "{sys.executable}" "{STANDIN}" "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture(scope="module")
def picod_cube(picod_binary: str) -> Iterator[LocalAgentCube]:
    # the stand-in is a script of this machine's Python, which a sandbox does not see
    with LocalAgentCube(quiet=True, picod=picod_binary, isolation="none") as cube:
        yield cube


@pytest.fixture
def papi(picod_cube: LocalAgentCube) -> Iterator[Api]:
    client = Api(picod_cube)
    yield client
    client.http.close()


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process of this machine that no session started: it must never be signalled (its
    command line, ``sleep 1000.125``, is a marker no session's process carries)."""
    proc = subprocess.Popen(["sleep", "1000.125"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()
