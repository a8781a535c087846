"""Shared fixtures: one LocalAgentCube for these tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentcube.local import LocalAgentCube

from .helpers import CI, MAX_UPLOAD, Api


@pytest.fixture(scope="session")
def cube() -> Iterator[LocalAgentCube]:
    server = LocalAgentCube(
        quiet=True,
        code_interpreters=(CI, "other-interpreter"),
        agents={"echo-agent": None, "second-agent": None},
        max_body_bytes=MAX_UPLOAD,
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
