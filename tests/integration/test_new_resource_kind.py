"""A third resource kind, added the way ARCHITECTURE.md says: on the SDK side a ResourceKind value
and a ManagedSessionClient subclass; on the local side one LocalKind entry in the kind table.

Everything else (create, routing, ownership, stop, delete, exit bookkeeping) comes from the shared
lifecycle and services: this file writes no request and no route of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from agentcube import ManagedSessionClient, ResourceKind, StopOutcome
from agentcube._flows import commands
from agentcube._flows._common import RouterTarget
from agentcube.local import LocalAgentCube
from agentcube.local import _kinds as local_kinds
from agentcube.local import _server as local_server

# SDK side: the kind as the wire names it...
BROWSER = ResourceKind("Browser", "browser", "browsers")


# ...and its client: the kind, how it opens its data plane, and the calls it offers.
class BrowserClient(ManagedSessionClient):
    kind = BROWSER

    def _open_data_plane(self, session_id: str) -> RouterTarget:
        return self._open_target(session_id)

    def run(self, argv: list[str]) -> str:
        return self._run(commands.command_output(self._target(), argv, None, False, None))


# Local side: one entry in the kind table, served by the PicoD backend.
LOCAL_BROWSER = dataclasses.replace(
    local_kinds.CODE_INTERPRETER,
    name="Browser",
    control_plane_segment="browser",
    router_segment="browsers",
    resource="browsers",
    not_found="browser not found",
    default_templates=("my-browser",),
    label="browser",
    cube_argument=None,
    cli_option="",
    cli_help="",
)


@pytest.fixture(scope="module")
def browser_cube() -> Iterator[LocalAgentCube]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local_server, "KINDS", (*local_kinds.KINDS, LOCAL_BROWSER))
        with LocalAgentCube(quiet=True) as cube:
            yield cube
            assert cube.sessions() == []


def _urls(cube: LocalAgentCube) -> dict[str, str]:
    return {"workload_manager_url": cube.workload_manager_url, "router_url": cube.router_url}


def test_a_third_kind_creates_runs_and_is_deleted_by_stop(browser_cube: LocalAgentCube) -> None:
    with BrowserClient(name="my-browser", **_urls(browser_cube)) as browser:
        sid = browser.session_id
        assert sid is not None
        [info] = browser_cube.sessions()
        assert (info.session_id, info.kind, info.name) == (sid, "Browser", "my-browser")
        assert browser.run(["echo", "hello from a browser"]) == "hello from a browser\n"
    assert browser.session_id is None
    assert not browser_cube.has_session(sid)
    seen = [
        (r.method, r.path) for r in browser_cube.requests_seen() if r.server == "workload_manager"
    ]
    assert ("POST", "/v1/browser") in seen
    assert ("DELETE", f"/v1/browser/sessions/{sid}") in seen


def test_a_third_kind_attached_follows_the_shared_lifecycle(browser_cube: LocalAgentCube) -> None:
    sid = BrowserClient(name="my-browser", **_urls(browser_cube)).detach()
    attached = BrowserClient(name="my-browser", session_id=sid, **_urls(browser_cube))
    try:
        assert attached.run(["true"]) == ""
        # A new kind inherits the base's rule: a session it only attached to is kept on stop().
        assert attached.stop() is StopOutcome.KEPT
        assert browser_cube.has_session(sid)
    finally:
        assert attached.delete() is StopOutcome.DELETED  # delete() ends it, attached or not
    assert not browser_cube.has_session(sid)
