"""Replay every recorded exchange with the real AgentCube against ``agentcube.local``.

All scenarios run once, concurrently, in a module-scoped fixture (so the 35-second one
overlaps the rest); each parametrized test then reports its own scenario's mismatches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentcube.local import LocalAgentCube

from .replay import NAME, Target, load_scenarios, replay

SCENARIOS = load_scenarios()
_WORKERS = 32
# A real PicoD binary to replay against instead of the built-in one (never set in CI).
_PICOD = os.environ.get("AGENTCUBE_TEST_PICOD") or None


# The corpus was recorded with a workspace two levels below / (a temporary directory): the texts
# of escape answers count the levels ("../../etc/passwd"), so the sessions get one as deep.
_WORKSPACE = "/tmp/workspace"


@pytest.fixture(scope="module", params=["auto", "none"])
def results(request: pytest.FixtureRequest) -> Iterator[dict[str, list[str]]]:
    isolation = request.param
    options = {"workspaces": {NAME: _WORKSPACE}} if isolation != "none" else {}
    with LocalAgentCube(
        quiet=True, code_interpreters=(NAME,), picod=_PICOD, isolation=isolation, **options
    ) as cube:
        target = Target(cube.workload_manager_url, cube.router_url)
        # the slowest scenarios first, so they overlap everything else
        ordered = sorted(SCENARIOS, key=lambda s: -_expected_seconds(s))
        with ThreadPoolExecutor(_WORKERS) as pool:
            futures = {s["id"]: pool.submit(_safe_replay, target, s) for s in ordered}
            outcome = {sid: future.result() for sid, future in futures.items()}
        assert cube.sessions() == [], "a scenario left its session behind"
        yield outcome


def _expected_seconds(scenario: dict[str, object]) -> float:
    total = 0.0
    for step in scenario["steps"]:  # type: ignore[attr-defined]
        total += step["response"].get("elapsed_s", [0, 0])[0]
        total += step["request"].get("timeout_s", 0) / 60
    return total


def _safe_replay(target: Target, scenario: dict[str, object]) -> list[str]:
    try:
        return replay(target, scenario)  # type: ignore[arg-type]
    except Exception as exc:  # the scenario could not even run
        return [f"replay failed: {exc!r}"]


def test_corpus_is_complete() -> None:
    assert len(SCENARIOS) >= 90
    assert len({s["id"] for s in SCENARIOS}) == len(SCENARIOS)


@pytest.mark.parametrize("scenario_id", [s["id"] for s in SCENARIOS])
def test_scenario(results: dict[str, list[str]], scenario_id: str) -> None:
    problems = results[scenario_id]
    assert not problems, f"{scenario_id}:\n" + "\n".join(problems)
