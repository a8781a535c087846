"""Paths below ``invocations/`` are encoded so that they reach the server as written."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentcube.clients._data_plane import encode_subpath
from agentcube.clients.agent_runtime_data_plane import encode_invoke_path


@given(st.text(max_size=60))
def test_encode_invoke_path_refuses_dot_segments_and_keeps_the_rest(path):
    route = path.partition("?")[0]
    has_dot_segment = any(s in (".", "..") for s in route.lstrip("/").split("/"))
    forbidden = any(c in path for c in "\0\r\n#")
    try:
        encoded = encode_invoke_path(path)
    except ValueError:
        assert has_dot_segment or forbidden
        return
    assert not has_dot_segment and not forbidden
    encoded_route = encoded.partition("?")[0]
    assert unquote(encoded_route) == route.lstrip("/")
    assert all(segment not in (".", "..") for segment in encoded_route.split("/"))
    assert all(33 <= ord(c) < 127 for c in encoded)


@given(st.text(max_size=60).filter(lambda p: "\0" not in p))
def test_encode_subpath_never_yields_dot_segments(path):
    encoded = encode_subpath(path, "remote_path")
    segments = encoded.split("/") if encoded else []
    assert all(segment not in ("", ".", "..") for segment in segments)
    assert all(33 <= ord(c) < 127 for c in encoded)
    expected = [s for s in path.split("/") if s]
    assert [unquote(s) for s in segments] == expected


def test_encode_subpath_refuses_nul():
    with pytest.raises(ValueError):
        encode_subpath("a\0b", "remote_path")
