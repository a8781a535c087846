"""WorkloadManager: health, create/delete shapes, template lookup, malformed bodies."""

from __future__ import annotations

import json
import os
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentcube.local import LocalAgentCube

from .helpers import CI, NS, Api


def test_health(api: Api) -> None:
    response = api.http.get(f"{api.wm}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


@pytest.mark.parametrize(
    ("segment", "name", "kind"),
    [("code-interpreter", CI, "CodeInterpreter"), ("agent-runtime", "echo-agent", "AgentRuntime")],
)
def test_create_and_delete_shapes(
    api: Api, cube: LocalAgentCube, segment: str, name: str, kind: str
) -> None:
    response = api.http.post(
        f"{api.wm}/v1/{segment}",
        json={"name": name, "namespace": "team-a", "ttl": 3600, "metadata": {"a": "b"}},
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    body = response.json()
    # ttl and metadata are ignored; no ownerId without a known identity
    assert list(body) == ["kind", "sessionId", "sandboxId", "sandboxName", "entryPoints"]
    assert body["kind"] == "Sandbox"
    assert str(uuid.UUID(body["sessionId"])) == body["sessionId"]
    assert str(uuid.UUID(body["sandboxId"])) == body["sandboxId"]
    assert re.fullmatch(re.escape(name) + "-[a-z0-9]{8}", body["sandboxName"])
    endpoint = cube.router_url.removeprefix("http://")
    assert body["entryPoints"] == [{"path": "/", "protocol": "HTTP", "endpoint": endpoint}]
    sid = body["sessionId"]
    assert cube.has_session(sid)
    info = next(s for s in cube.sessions() if s.session_id == sid)
    assert (info.kind, info.name, info.namespace) == (kind, name, "team-a")
    assert (info.workspace is not None) == (kind == "CodeInterpreter")

    deleted = api.delete(sid, segment)
    assert deleted.status_code == 200
    assert deleted.json() == {"message": "Sandbox deleted successfully"}
    assert not cube.has_session(sid)

    again = api.delete(sid, segment)
    assert again.status_code == 404
    assert again.json() == {"message": f"Session ID {sid} not found, maybe already deleted"}


def test_delete_route_is_shared(api: Api, cube: LocalAgentCube) -> None:
    sid = api.create("code-interpreter")
    workspace = next(s.workspace for s in cube.sessions() if s.session_id == sid)
    assert workspace is not None and os.path.isdir(workspace)
    # the id alone decides: deleting a CodeInterpreter via the agent-runtime route works
    response = api.delete(sid, "agent-runtime")
    assert response.status_code == 200
    assert not cube.has_session(sid)
    assert not os.path.exists(workspace)


def test_session_ids_are_unique(api: Api) -> None:
    ids = {api.create("agent-runtime", "echo-agent") for _ in range(20)}
    assert len(ids) == 20
    for sid in ids:
        assert api.delete(sid, "agent-runtime").status_code == 200


@pytest.mark.parametrize(
    ("segment", "name"),
    [
        ("code-interpreter", "no-such-interpreter"),
        ("agent-runtime", "no-such-agent"),
        ("code-interpreter", "echo-agent"),  # an agent name is not a code interpreter
        ("agent-runtime", CI),
    ],
)
def test_unknown_template_404(api: Api, segment: str, name: str) -> None:
    response = api.http.post(f"{api.wm}/v1/{segment}", json={"name": name, "namespace": NS})
    assert response.status_code == 404
    kind = "code interpreter" if segment == "code-interpreter" else "agent runtime"
    assert response.json() == {"message": f"{kind} not found"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "Invalid request body"),
        (b"", "Invalid request body"),
        (b"[]", "Invalid request body"),
        (b'["name", "namespace"]', "Invalid request body"),
        (b"null", "namespace is required"),
        (b"42", "Invalid request body"),
        (b'"string"', "Invalid request body"),
        (b"{", "Invalid request body"),
        (b'{"name": "my-interpreter"}', "namespace is required"),
        (b'{"namespace": "default"}', "name is required"),
        (b"{}", "namespace is required"),
        (b'{"name": 1, "namespace": "default"}', "Invalid request body"),
        (b'{"name": "my-interpreter", "namespace": ["default"]}', "Invalid request body"),
        (b'{"name": "", "namespace": "default"}', "name is required"),
        (b'{"name": "my-interpreter", "namespace": null}', "namespace is required"),
        (b'{"name": "my-interpreter", "namespace": "default", "ttl": NaN}', "Invalid request body"),
        (b"\xff\xfe\x00garbage", "Invalid request body"),
        (b"[" * 100_000, "Invalid request body"),
        (b'{"a": ' * 50_000, "Invalid request body"),
    ],
)
def test_malformed_bodies_400(api: Api, body: bytes, message: str) -> None:
    response = api.http.post(
        f"{api.wm}/v1/code-interpreter",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json() == {"message": message}


@pytest.mark.parametrize(
    "extra",
    [{"ttl": "1h"}, {"ttl": -5}, {"ttl": True}, {"metadata": []}, {"kind": "Other"}],
)
def test_other_fields_are_ignored(api: Api, extra: dict[str, object]) -> None:
    response = api.http.post(
        f"{api.wm}/v1/code-interpreter", json={"name": CI, "namespace": NS, **extra}
    )
    assert response.status_code == 200
    api.delete(response.json()["sessionId"])


def test_huge_junk_body_is_400(api: Api) -> None:
    junk = os.urandom(5 * 1024 * 1024)
    response = api.http.post(f"{api.wm}/v1/code-interpreter", data=junk)
    assert response.status_code == 400
    assert response.json() == {"message": "Invalid request body"}
    # a huge but valid JSON object still works
    padded = {"name": CI, "namespace": NS, "metadata": {"pad": "x" * (5 * 1024 * 1024)}}
    response = api.http.post(f"{api.wm}/v1/code-interpreter", data=json.dumps(padded))
    assert response.status_code == 200
    api.delete(response.json()["sessionId"])


def test_unknown_paths_and_methods(api: Api) -> None:
    for method, path in (("GET", "/nope"), ("GET", "/v1/browser"), ("GET", "/v1/code-interpreter")):
        response = api.http.request(method, f"{api.wm}{path}")
        assert (response.status_code, response.text) == (404, "404 page not found")
        assert response.headers["Content-Type"] == "text/plain"
    # gin's trailing-slash redirect
    response = api.http.post(f"{api.wm}/v1/code-interpreter/", allow_redirects=False)
    assert (response.status_code, response.headers["Location"]) == (307, "/v1/code-interpreter")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
            max_leaves=20,
        ).map(lambda value: json.dumps(value).encode()),
        st.fixed_dictionaries(
            {},
            optional={
                "name": st.one_of(st.text(), st.integers(), st.none()),
                "namespace": st.one_of(st.text(), st.none(), st.lists(st.text())),
                "ttl": st.one_of(st.integers(), st.floats(allow_nan=False), st.text()),
                "metadata": st.one_of(st.none(), st.text(), st.dictionaries(st.text(), st.text())),
            },
        ).map(lambda value: json.dumps(value).encode()),
    )
)
def test_fuzzed_bodies_never_500(api: Api, body: bytes) -> None:
    response = api.http.post(f"{api.wm}/v1/code-interpreter", data=body, timeout=10)
    assert response.status_code in (200, 400, 404), response.text
    assert "message" in response.json() or "sessionId" in response.json()
    if response.status_code == 200:
        api.delete(response.json()["sessionId"])
