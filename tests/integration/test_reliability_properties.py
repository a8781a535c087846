"""Bad input, property-tested over real sockets.

* Any string given as a session id is refused with ValueError before any request, or reaches
  the server as exactly one path segment and one header value, unchanged.
* Any remote file path reaches the local server as the same path (empty segments aside), and
  the server never reads or writes outside the session's workspace, whatever the path.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentcube import (
    AgentRuntimeClient,
    APIError,
    CodeInterpreterClient,
    InvalidArgumentError,
    RetryPolicy,
)
from agentcube._config import workspace_path
from agentcube.clients import (
    AgentRuntimeDataPlaneClient,
    CodeInterpreterDataPlaneClient,
    ControlPlaneClient,
)
from agentcube.kinds import AGENT_RUNTIME, CODE_INTERPRETER
from agentcube.local import LocalAgentCube

from .loopback import RecordingServer, Seen, json_answer

ONCE = RetryPolicy(max_attempts=1)
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- session ids --------------------------------------------------------------------------------

ID_ALPHABET = "abcXYZ019_.:-/%?#&=+ \t\n\r\x00\x7f\u00e9\u0660\u202e\ufeff\\"
# "" is not an id but "create one", as the historic clients read it (tested in unit tests).
SESSION_IDS = st.one_of(
    st.text(min_size=1, max_size=40),
    st.text(alphabet=ID_ALPHABET, min_size=1, max_size=40),
    st.sampled_from(
        [".", "..", "...", ".a", "a.", ":", "a:b", "-", "_", "a" * 256, "a" * 257, "%2e%2e"]
    ),
)


DATA_PLANE_PATHS = {
    "/v1/namespaces/default/code-interpreters/my-interpreter/invocations/api/files",
    "/v1/namespaces/default/code-interpreters/my-interpreter/invocations/api/execute",
    "/v1/namespaces/default/agent-runtimes/echo-agent/invocations/",
}


@pytest.fixture(scope="module")
def recorder() -> Iterator[RecordingServer]:
    def answer(seen: Seen) -> Any:
        sid = (seen.header("x-agentcube-session-id") or ["none"])[0]
        body = {"files": [], "stdout": "", "stderr": "", "exit_code": 0, "echo": 1}
        return json_answer(body, **{"x-agentcube-session-id": sid})

    server = RecordingServer(answer)
    yield server
    server.close()


def _refused_everywhere(url: str, sid: str) -> None:
    calls = [
        lambda: CodeInterpreterClient(session_id=sid, workload_manager_url=url, router_url=url),
        lambda: AgentRuntimeClient("a", session_id=sid, workload_manager_url=url, router_url=url),
        lambda: CodeInterpreterDataPlaneClient(sid, url, "default", "a"),
        lambda: AgentRuntimeDataPlaneClient(url, "default", "a").invoke(sid, {}),
        lambda: ControlPlaneClient(url).delete(CODE_INTERPRETER, sid),
        lambda: ControlPlaneClient(url).delete_session(sid),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()


@PROPERTY
@given(sid=SESSION_IDS)
def test_a_session_id_is_refused_or_reaches_the_server_unchanged(
    recorder: RecordingServer, sid: str
) -> None:
    url = recorder.url
    recorder.clear()
    try:
        ci = CodeInterpreterClient(
            session_id=sid, workload_manager_url=url, router_url=url, retry=ONCE
        )
    except ValueError:
        _refused_everywhere(url, sid)
        assert recorder.requests() == [], "a refused id must not send anything"
        return
    ci.list_files(".")
    ci.execute_command(["true"])
    ci.delete()
    ar = AgentRuntimeClient(
        "echo-agent", session_id=sid, workload_manager_url=url, router_url=url, retry=ONCE
    )
    ar.invoke({"q": 1})
    ar.delete()
    ControlPlaneClient(url, retry=ONCE).delete(AGENT_RUNTIME, sid)

    seen = recorder.requests()
    assert len(seen) == 6
    for request in seen:
        path = request.target.partition("?")[0]
        if request.method == "DELETE":
            segment = path.rsplit("/sessions/", 1)[1]
            assert segment == sid, (request.target, sid)  # one segment, not re-encoded
            assert path.count("/") == 4
            assert request.header("x-agentcube-session-id") == []
        else:
            assert request.header("x-agentcube-session-id") == [sid]  # one header, unchanged
            assert path in DATA_PLANE_PATHS  # the id travels in the header only


# -- remote file paths --------------------------------------------------------------------------

SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "..",
            ".",
            "",
            "a",
            "f.txt",
            "link-out",
            "link-file",
            "link-up",
            "link-root",
            "dangling",
            "etc",
            "passwd",
            "\u00e9t\u00e9",
            "\u202egnp.exe",
            "%2e%2e",
            "..%2f..",
            "\\..",
            "~",
            "a b",
            "?x=1",
            "#frag",
            "%00",
            "\x00",
            "\ud800",
            "\udc80",
            "x" * 300,
        ]
    ),
    st.text(max_size=6),
)
REMOTE_PATHS = st.builds(
    lambda lead, parts: lead + "/".join(parts),
    st.sampled_from(["", "/", "//"]),
    st.lists(SEGMENTS, min_size=1, max_size=5),
)
PAYLOAD = b"agentcube-property-payload"
SECRET = b"outside-secret-contents"


def _snapshot(top: Path, skip: str) -> dict[str, bytes | str]:
    """Everything under ``top`` except the workspace: file bytes, link targets, directories."""
    found: dict[str, bytes | str] = {}
    for directory, dirs, names in os.walk(top):
        if directory.startswith(skip):
            continue
        for name in dirs + names:
            path = os.path.join(directory, name)
            if path.startswith(skip):
                continue
            if os.path.islink(path):
                found[path] = "link:" + os.readlink(path)
            elif os.path.isfile(path):
                found[path] = Path(path).read_bytes()
            else:
                found[path] = "dir"
    return found


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    top = tmp_path_factory.mktemp("confine")
    outside = top / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    # unisolated: the hostile links point into this machine's own directories
    with LocalAgentCube(quiet=True, root_dir=top / "root", isolation="none") as cube:
        ci = CodeInterpreterClient(
            workload_manager_url=cube.workload_manager_url,
            router_url=cube.router_url,
            retry=ONCE,
        )
        (info,) = cube.sessions()
        workspace = Path(info.workspace or "")
        os.symlink(outside, workspace / "link-out")
        os.symlink(outside / "secret.txt", workspace / "link-file")
        os.symlink("..", workspace / "link-up")
        os.symlink("/", workspace / "link-root")
        os.symlink(outside / "new-dir" / "x", workspace / "dangling")
        downloads = tmp_path_factory.mktemp("downloads")
        yield {
            "cube": cube,
            "ci": ci,
            "top": top,
            "workspace": workspace,
            "before": _snapshot(top, str(workspace)),
            "downloads": downloads,
        }
        ci.stop()
        shutil.rmtree(downloads)
        assert (outside / "secret.txt").read_bytes() == SECRET
        assert sorted(os.listdir(outside)) == ["secret.txt"]


def _inside(real: str, workspace: Path) -> bool:
    return real == str(workspace) or real.startswith(str(workspace) + os.sep)


def _router_paths(cube: LocalAgentCube, start: int) -> list[str]:
    return [r.path for r in cube.requests_seen()[start:] if r.server == "router"]


@PROPERTY
@given(path=REMOTE_PATHS)
def test_a_remote_path_reaches_the_server_as_written_and_stays_in_the_workspace(
    sandbox: dict[str, Any], path: str
) -> None:
    cube: LocalAgentCube = sandbox["cube"]
    ci: CodeInterpreterClient = sandbox["ci"]
    workspace: Path = sandbox["workspace"]
    prefix = "/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
    try:
        normalised: str | None = workspace_path(path, allow_root=False)
    except InvalidArgumentError:
        normalised = None  # refused before anything is sent

    # write
    start = len(cube.requests_seen())
    try:
        info = ci.data_plane.write_file(PAYLOAD, path)
    except InvalidArgumentError:
        assert normalised is None or normalised.startswith(".agentcube-")
        assert _router_paths(cube, start) == [], "refused before sending"
    except APIError as exc:
        assert exc.status_code in (400, 500), exc
    else:
        assert normalised is not None
        assert info.path == normalised, "the server got the path the sandbox resolves"
        real = os.path.realpath(os.path.join(workspace, normalised))
        assert _inside(real, workspace)
        assert Path(real).read_bytes() == PAYLOAD

    # download
    target = sandbox["downloads"] / "file"
    start = len(cube.requests_seen())
    try:
        ci.download_file(path, target)
    except InvalidArgumentError:
        assert normalised is None
        assert _router_paths(cube, start) == [], "refused before sending"
    except APIError as exc:
        # 500 where the real sandbox answers it too: a name too long to stat, say; 503 where the
        # real Router refuses the sandbox's answer (a control byte in the file's name goes raw
        # into Content-Disposition), retried as every 503 of an idempotent request is
        assert exc.status_code in (400, 404, 500, 503), exc
        assert normalised is not None
        sent = _router_paths(cube, start)
        assert sent[0] == prefix + "api/files/" + normalised and len(set(sent)) == 1
        if exc.status_code == 503:
            assert re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", normalised), exc
        else:
            assert len(sent) == 1
    else:
        assert normalised is not None
        assert _router_paths(cube, start)[0] == prefix + "api/files/" + normalised
        real = os.path.realpath(os.path.join(workspace, normalised))
        assert _inside(real, workspace) and os.path.isfile(real)
        assert target.read_bytes() == Path(real).read_bytes() != SECRET
        target.unlink()

    # list
    try:
        entries = ci.list_files(path)
    except (InvalidArgumentError, APIError) as exc:
        # 500 for a path that is a file, as the real sandbox answers
        assert not isinstance(exc, APIError) or exc.status_code in (400, 404, 500), exc
    else:
        assert "secret.txt" not in {entry["name"] for entry in entries}

    assert _snapshot(sandbox["top"], str(workspace)) == sandbox["before"]
