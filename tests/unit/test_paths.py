"""Paths: what reaches the sandbox is the path it would resolve, in its plain form."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentcube._config import workspace_path
from agentcube._flows.agent_runtime import encode_invoke_path

PATHS = st.lists(st.sampled_from(["a", "b", ".", "..", "/", " ", "é", "%", "?"]), max_size=20).map(
    "".join
)


@given(st.text(max_size=60))
def test_encode_invoke_path_refuses_dot_segments_and_keeps_the_rest(path):
    route = path.partition("?")[0]
    has_dot_segment = any(s in (".", "..") for s in route.lstrip("/").split("/"))
    forbidden = any(c in path for c in "\0\r\n#")
    try:
        encoded = encode_invoke_path(path)
    except ValueError:
        assert has_dot_segment or forbidden or "\ud800" <= max(path, default="a")
        return
    assert not has_dot_segment and not forbidden
    encoded_route = encoded.partition("?")[0]
    assert unquote(encoded_route) == route.lstrip("/")
    assert all(segment not in (".", "..") for segment in encoded_route.split("/"))
    assert all(33 <= ord(c) < 127 for c in encoded)


def _sandbox_segments(path: str) -> list[str] | None:
    """The segments the sandbox resolves ``path`` to below its workspace (Go's Clean, then an
    absolute path taken as relative), or None when it leaves the workspace."""
    rooted = path.startswith("/")
    stack: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if stack:
                stack.pop()
            elif not rooted:
                return None
            continue
        stack.append(segment)
    return stack


@given(PATHS.filter(lambda p: p != ""))
def test_workspace_path_is_what_the_sandbox_resolves(path):
    expected = _sandbox_segments(path)
    try:
        clean = workspace_path(path)
    except ValueError:
        assert expected is None
        return
    assert expected is not None
    assert clean == ("/".join(expected) or ".")
    assert clean == "." or all(s not in ("", ".", "..") for s in clean.split("/"))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/b/../c", "a/c"),
        ("/abs/x.txt", "abs/x.txt"),
        ("//abs//x.txt", "abs/x.txt"),
        ("/../x", "x"),  # rooted: ".." stops at the root, as the sandbox's Clean does
        ("./site/./index.html", "site/index.html"),
        ("/", "."),
    ],
)
def test_workspace_path_examples(path, expected):
    assert workspace_path(path) == expected


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "", "a\0b", "a\ud800b", None, 3])
def test_workspace_path_refuses(path):
    with pytest.raises(ValueError):
        workspace_path(path)


def test_workspace_itself_is_refused_where_a_file_is_meant():
    with pytest.raises(ValueError, match="names the workspace"):
        workspace_path("/", allow_root=False)
