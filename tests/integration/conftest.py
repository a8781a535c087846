"""Integration tests: the SDK against the real local AgentCube over loopback.

Shared here: the local AgentCube (plain and token-secured), the leak check every test passes,
and for the reliability files a guard that refuses any address but loopback and a server that
echoes credentials back in its error answers."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from agentcube.local import LocalAgentCube

from .loopback import Answer, RecordingServer, Seen, json_answer

TOKEN = "integration-token-Zq81"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
# A real PicoD binary to serve the code-interpreter sessions instead of the built-in one (never
# set in CI; see tests/conformance/README.md).
PICOD = os.environ.get("AGENTCUBE_TEST_PICOD") or None


@pytest.fixture(scope="session")
def cube() -> Iterator[LocalAgentCube]:
    """One local AgentCube for the whole run; at the end it must hold no session."""
    with LocalAgentCube(quiet=True, max_body_bytes=64 * 1024 * 1024, picod=PICOD) as server:
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


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in these tests may reach an address other than loopback."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in _LOOPBACK and not str(host).startswith("127."):
            raise OSError(f"test guard: {host!r} is not loopback")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture
def echo() -> Iterator[RecordingServer]:
    """Answers every request with an error that echoes the Authorization header and the body."""

    def answer(seen: Seen) -> Answer:
        sent = (seen.header("Authorization") or [""])[0]
        if seen.target.endswith("/text"):
            return Answer(
                500, b"x" * 495 + sent.encode() + b" trailing", {"Content-Type": "text/plain"}
            )
        return json_answer(
            {"message": f"rejected {sent} with body {seen.body.decode('latin-1')}"}, status=401
        )

    server = RecordingServer(answer)
    yield server
    server.close()
