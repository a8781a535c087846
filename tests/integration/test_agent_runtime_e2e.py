"""AgentRuntimeClient end to end against the local AgentCube."""

from __future__ import annotations

import pytest
import requests

from agentcube import AgentRuntimeClient, NotFoundError, StopOutcome
from agentcube.local import LocalAgentCube

AGENT = "echo-agent"


def test_bootstrap_invoke_attach_and_stop(cube: LocalAgentCube, urls: dict[str, str]) -> None:
    owner = AgentRuntimeClient(AGENT, **urls)
    assert owner.owns_session and cube.has_session(owner.session_id)
    assert owner.invoke({"prompt": "hi"}) == {"echo": {"prompt": "hi"}, "path": ""}
    assert owner.invoke({"n": 1}, path="chat/v1") == {"echo": {"n": 1}, "path": "chat/v1"}

    second = AgentRuntimeClient(AGENT, **urls, session_id=owner.session_id)
    assert not second.owns_session
    assert second.invoke("plain") == {"echo": "plain", "path": ""}
    assert second.stop() is StopOutcome.KEPT
    assert cube.has_session(owner.session_id), "stop() of an attached client deleted the session"

    assert owner.stop() is StopOutcome.DELETED
    assert not cube.has_session(owner.session_id)


def test_with_block_deletes_owned_and_keeps_attached(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    with AgentRuntimeClient(AGENT, **urls) as owner:
        sid = owner.session_id
        with AgentRuntimeClient(AGENT, **urls, session_id=sid) as attached:
            attached.invoke({})
        assert cube.has_session(sid)
    assert not cube.has_session(sid)


def test_delete_ends_an_attached_session(cube: LocalAgentCube, urls: dict[str, str]) -> None:
    owner = AgentRuntimeClient(AGENT, **urls)
    sid = owner.detach()
    attached = AgentRuntimeClient(AGENT, **urls, session_id=sid)
    assert attached.delete() is StopOutcome.DELETED
    assert not cube.has_session(sid)
    assert owner.stop() is StopOutcome.KEPT


def test_without_workload_manager_url_stop_warns_and_keeps(
    cube: LocalAgentCube, urls: dict[str, str]
) -> None:
    client = AgentRuntimeClient(AGENT, router_url=urls["router_url"])
    assert client.invoke({"x": 1})["echo"] == {"x": 1}
    with pytest.warns(ResourceWarning, match=client.session_id):
        assert client.stop() is StopOutcome.LEFT_RUNNING
    assert cube.has_session(client.session_id)
    cube.delete_session(client.session_id)


def test_unknown_session_and_unknown_agent(urls: dict[str, str]) -> None:
    stale = AgentRuntimeClient(AGENT, **urls, session_id="gone-session")
    with pytest.raises(requests.HTTPError) as info:
        stale.invoke({})
    assert info.value.response.status_code == 404
    # Issue 17 (upstream #460): the Router's own 404 ends the session for the client.
    assert stale.session_id is None
    assert stale.stop() is StopOutcome.ALREADY_GONE
    with pytest.raises(NotFoundError):
        AgentRuntimeClient("no-such-agent", **urls)
