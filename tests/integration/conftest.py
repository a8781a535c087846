"""Integration tests: the SDK against the real local AgentCube over loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentcube.local import LocalAgentCube

TOKEN = "integration-token-Zq81"


@pytest.fixture(scope="session")
def cube() -> Iterator[LocalAgentCube]:
    """One local AgentCube for the whole run; at the end it must hold no session."""
    with LocalAgentCube(quiet=True, max_body_bytes=64 * 1024 * 1024) as server:
        yield server
        left = server.sessions()
        assert left == [], f"sessions left on the server after the suite: {left}"


@pytest.fixture
def urls(cube: LocalAgentCube) -> dict[str, str]:
    return {"workload_manager_url": cube.workload_manager_url, "router_url": cube.router_url}


@pytest.fixture(autouse=True)
def no_leaks(cube: LocalAgentCube) -> Iterator[None]:
    """Every test leaves the server as it found it, and its injected faults do not linger."""
    before = {s.session_id for s in cube.sessions()}
    yield
    cube.clear_faults()
    leaked = {s.session_id for s in cube.sessions()} - before
    for sid in leaked:
        cube.delete_session(sid)
    assert not leaked, f"test leaked sessions: {sorted(leaked)}"


@pytest.fixture(scope="session")
def secured_cube() -> Iterator[LocalAgentCube]:
    with LocalAgentCube(quiet=True, token=TOKEN) as server:
        yield server
        assert server.sessions() == []
