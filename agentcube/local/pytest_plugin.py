"""pytest plugin (entry point ``agentcube``): fixtures serving a LocalAgentCube.

``agentcube_local``: one LocalAgentCube for the whole test session (quiet).
``agentcube_env``: per test; points ``WORKLOAD_MANAGER_URL`` and ``ROUTER_URL`` at it,
yields the cube, and clears injected faults afterwards.

This module imports nothing but pytest at import time, so it loads even where
werkzeug (the ``local`` extra) is not installed; the fixtures import it when used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from agentcube.local._server import LocalAgentCube


@pytest.fixture(scope="session")
def agentcube_local() -> Iterator[LocalAgentCube]:
    """A running LocalAgentCube shared by the test session."""
    from agentcube.local import LocalAgentCube

    cube = LocalAgentCube(quiet=True)
    cube.start()
    try:
        yield cube
    finally:
        cube.stop()


@pytest.fixture
def agentcube_env(
    agentcube_local: LocalAgentCube, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalAgentCube]:
    """The shared LocalAgentCube, with the SDK's environment variables pointing at it."""
    monkeypatch.setenv("WORKLOAD_MANAGER_URL", agentcube_local.workload_manager_url)
    monkeypatch.setenv("ROUTER_URL", agentcube_local.router_url)
    try:
        yield agentcube_local
    finally:
        agentcube_local.clear_faults()
