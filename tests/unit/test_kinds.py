"""ResourceKind: the one place that knows each kind's URL segments."""

from __future__ import annotations

import dataclasses

import pytest

from agentcube import AGENT_RUNTIME, CODE_INTERPRETER, ResourceKind


def test_code_interpreter_kind_matches_the_contract():
    assert CODE_INTERPRETER.name == "CodeInterpreter"
    assert CODE_INTERPRETER.create_path == "/v1/code-interpreter"
    assert CODE_INTERPRETER.session_path("s-1") == "/v1/code-interpreter/sessions/s-1"
    assert (
        CODE_INTERPRETER.invocations_path("default", "my-interpreter")
        == "/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
    )


def test_agent_runtime_kind_matches_the_contract():
    assert AGENT_RUNTIME.name == "AgentRuntime"
    assert AGENT_RUNTIME.create_path == "/v1/agent-runtime"
    assert AGENT_RUNTIME.session_path("s-1") == "/v1/agent-runtime/sessions/s-1"
    assert (
        AGENT_RUNTIME.invocations_path("ns", "agent")
        == "/v1/namespaces/ns/agent-runtimes/agent/invocations/"
    )


def test_new_kind_follows_the_same_shape():
    browser = ResourceKind("Browser", "browser", "browsers")
    assert browser.create_path == "/v1/browser"
    assert browser.session_path("b") == "/v1/browser/sessions/b"
    assert browser.invocations_path("ns", "x") == "/v1/namespaces/ns/browsers/x/invocations/"


@pytest.mark.parametrize(
    ("cp", "router"),
    [
        ("Browser", "browsers"),
        ("browser", "Browsers"),
        ("", "browsers"),
        ("a/b", "browsers"),
        ("-browser", "browsers"),
        ("browser", "browsers/"),
        ("browser\n", "browsers"),
        ("browser", "browsers\n"),
    ],
)
def test_invalid_segments_are_refused(cp, router):
    with pytest.raises(ValueError):
        ResourceKind("Browser", cp, router)


def test_kinds_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CODE_INTERPRETER.control_plane_segment = "x"  # type: ignore[misc]
