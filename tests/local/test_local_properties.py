"""The local server under bad input: malformed bodies and framing, oversized uploads, hostile paths.

Whatever arrives, it answers as the real services do: 4xx for a malformed request, a 500 only
where PicoD itself answers one (``Failed to write file: ...`` and the like), never a crash; it
logs no server error, keeps serving, and never reads or writes outside the session's workspace.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentcube import CodeInterpreterClient, PayloadTooLargeError
from agentcube.local import LocalAgentCube

from .helpers import CI, NS, SESSION_HEADER, Api

PROPERTY = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIMIT = 1000  # max_body_bytes of the small cube below
#: PicoD's own 500s: these are answers, not crashes
PICOD_500 = (
    "Failed to write file: ",
    "Failed to create directory: ",
    "Failed to create destination file",
    "Failed to read directory: ",
    "Failed to get file info: ",
    "Failed to create working directory: ",
)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A cube with a 1000-byte upload limit, one session, and hostile links in its workspace."""
    top = tmp_path_factory.mktemp("hostile")
    outside = top / "outside"
    outside.mkdir()
    (outside / "outside-only-7c1.txt").write_bytes(b"outside-secret")
    # unisolated: the hostile links point into this machine's own directories (isolated
    # sessions see none of them; test_local_isolation.py tries those)
    with LocalAgentCube(
        quiet=True, root_dir=top / "root", max_body_bytes=LIMIT, isolation="none"
    ) as cube:
        api = Api(cube)
        sid = api.create()
        (info,) = cube.sessions()
        workspace = Path(info.workspace or "")
        os.symlink(outside, workspace / "link-out")
        os.symlink(outside / "outside-only-7c1.txt", workspace / "link-file")
        os.symlink("..", workspace / "link-up")
        os.symlink("/", workspace / "link-root")
        os.symlink(outside / "new" / "x", workspace / "dangling")
        yield {"cube": cube, "api": api, "sid": sid, "top": top, "workspace": workspace}
        api.delete(sid)
        api.http.close()
        assert sorted(os.listdir(outside)) == ["outside-only-7c1.txt"]
        assert (outside / "outside-only-7c1.txt").read_bytes() == b"outside-secret"


@pytest.fixture
def server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Fails the test if the local server logged an error (a handler that crashed)."""
    caplog.set_level(logging.ERROR, logger="agentcube.local")
    yield caplog
    errors = [r for r in caplog.records if r.name.startswith("agentcube.local")]
    assert errors == [], [r.getMessage() for r in errors]


def _alive(api: Api) -> None:
    assert api.http.get(f"{api.wm}/health", timeout=5).status_code == 200
    assert api.http.get(f"{api.router}/health/live", timeout=5).status_code == 200


def _assert_4xx(response: requests.Response, allowed: tuple[int, ...] = ()) -> None:
    """A 4xx with one of the real services' error bodies, or PicoD's own kind of 500."""
    status, ctype = response.status_code, response.headers.get("Content-Type", "")
    if status >= 500:
        assert status == 500, (status, response.text[:200])
        body = response.json()
        assert set(body) == {"code", "error"} and body["error"].startswith(PICOD_500), body
        return
    if status < 400 or status in allowed:
        return
    if status == 404 and not ctype and response.content == b"":
        return  # gin's 404 behind gin-contrib/gzip: its text is lost
    if ctype.startswith("text/plain"):
        text = response.content
        if "Content-Encoding" not in response.headers and text.startswith(b"\x1f\x8b"):
            text = gzip.decompress(text)  # http.ServeFile's errors: gzip without the header
        assert text in (b"404 page not found", b"invalid URL path\n"), text
        return
    assert ctype.startswith("application/json"), response.text
    body = response.json()
    assert set(body) in ({"error"}, {"message"}, {"code", "error"}, {"detail", "error"}), body


# -- malformed bodies ---------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
NOT_JSON = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [b"", b" ", b"{", b"[" * 50_000, b'{"a": NaN}', b"1e99999", b"9" * 5000, b"\xff\xfe"]
    ),
)
# api/execute: a command is never anything but `true` (with arguments it ignores).
COMMANDS = st.one_of(
    JSON_VALUES,
    st.just([]),
    st.lists(st.text(max_size=5), max_size=3).map(lambda rest: ["true", *rest]),
)
EXECUTE_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "command": COMMANDS,
        "timeout": st.one_of(JSON_VALUES, st.sampled_from(["1s", "0s", "-1s", "1e400s", "5"])),
        "working_dir": st.one_of(JSON_VALUES, st.sampled_from(["..", "link-out", "link-up"])),
        "env": st.one_of(JSON_VALUES, st.dictionaries(st.text(max_size=8), JSON_VALUES)),
    },
)
FILE_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "path": st.one_of(JSON_VALUES, st.sampled_from(["link-out/x", "../x", "/", "a/b"])),
        "content": st.one_of(JSON_VALUES, st.sampled_from(["", "eA==", "eA", "====", "e A=="])),
        "mode": st.one_of(JSON_VALUES, st.sampled_from(["0644", "7777", "0o755", "x"])),
    },
)
CREATE_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(JSON_VALUES, st.just(CI), st.just("echo-agent")),
        "namespace": st.one_of(JSON_VALUES, st.just(NS)),
        "ttl": JSON_VALUES,
        "metadata": JSON_VALUES,
    },
)


def _encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@PROPERTY
@given(
    target=st.sampled_from(["execute", "files", "create-ci", "create-ar", "echo"]),
    body=st.one_of(NOT_JSON, JSON_VALUES.map(_encode)),
    content_type=st.sampled_from(["application/json", "text/plain", None]),
)
def test_malformed_bodies_never_get_a_5xx(
    small: dict[str, Any], server_errors: Any, target: str, body: bytes, content_type: str | None
) -> None:
    _post(small, target, body, content_type)


@PROPERTY
@given(data=st.data())
def test_wrongly_typed_bodies_never_get_a_5xx(
    small: dict[str, Any], server_errors: Any, data: st.DataObject
) -> None:
    target = data.draw(st.sampled_from(["execute", "files", "create-ci", "create-ar"]))
    strategy = {"execute": EXECUTE_BODIES, "files": FILE_BODIES}.get(target, CREATE_BODIES)
    _post(small, target, _encode(data.draw(strategy)), "application/json")


def _post(small: dict[str, Any], target: str, body: bytes, content_type: str | None) -> None:
    api: Api = small["api"]
    headers = {} if target == "echo" else {SESSION_HEADER: small["sid"]}
    if content_type:
        headers["Content-Type"] = content_type
    url = {
        "execute": api.ci_url("api/execute"),
        "files": api.ci_url("api/files"),
        "create-ci": f"{api.wm}/v1/code-interpreter",
        "create-ar": f"{api.wm}/v1/agent-runtime",
        "echo": api.agent_url(),
    }[target]
    response = api.http.post(url, data=body, headers=headers, timeout=30)
    _assert_4xx(response)
    if target.startswith("create"):
        assert response.status_code in (200, 400, 404), response.text
        if response.status_code == 200:
            sid = response.json()["sessionId"]
            assert (
                api.delete(
                    sid,
                    target.removeprefix("create-")
                    .replace("ci", "code-interpreter")
                    .replace("ar", "agent-runtime"),
                ).status_code
                == 200
            )
    elif target == "echo":
        created = response.headers.get(SESSION_HEADER)
        if created:
            api.delete(created, "agent-runtime")
    elif target == "execute":
        assert response.status_code in (200, 400, 413, 500), response.text
    else:
        assert response.status_code in (200, 400, 413, 500), response.text


@PROPERTY
@given(
    boundary=st.text(alphabet="abcXYZ019-_", min_size=1, max_size=20),
    parts=st.lists(
        st.tuples(
            st.sampled_from(["path", "mode", "file", "other", ""]),
            st.binary(max_size=60) | st.sampled_from([b"link-out/x", b"../x", b"ok.txt"]),
            st.booleans(),
        ),
        max_size=4,
    ),
    truncate=st.integers(min_value=0, max_value=40),
)
def test_malformed_multipart_never_gets_a_5xx(
    small: dict[str, Any],
    server_errors: Any,
    boundary: str,
    parts: list[tuple[str, bytes, bool]],
    truncate: int,
) -> None:
    chunks = []
    for name, value, as_file in parts:
        filename = '; filename="f"' if as_file else ""
        disposition = f'form-data; name="{name}"{filename}'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n"
        chunks.append(head.encode() + value + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    body = body[: len(body) - truncate] if truncate else body
    api: Api = small["api"]
    response = api.http.post(
        api.ci_url("api/files"),
        data=body,
        headers={
            SESSION_HEADER: small["sid"],
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
        timeout=30,
    )
    _assert_4xx(response)
    assert response.status_code in (200, 400, 413, 500), response.text


# -- framing: what a broken client or proxy sends -----------------------------------------------


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the body ends here, whatever Content-Length said
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


FRAMINGS = {
    "truncated": b'Content-Length: 100\r\n\r\n{"a": 1}',
    "bad chunk size": b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "chunk cut short": b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n',
    "conflicting lengths": b"Content-Length: 2\r\nContent-Length: 7\r\n\r\n{}",
    "negative length": b"Content-Length: -5\r\n\r\n{}",
    "length not a number": b"Content-Length: abc\r\n\r\n{}",
}


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
@pytest.mark.parametrize("target", ["create", "execute", "files", "multipart", "echo"])
def test_broken_framing_is_400(
    small: dict[str, Any], server_errors: Any, framing: str, target: str
) -> None:
    api: Api = small["api"]
    sid = small["sid"].encode()
    prefix = b"/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
    line, extra, server = {
        "create": (b"POST /v1/code-interpreter", b"", api.wm),
        "execute": (b"POST " + prefix + b"api/execute", b"", api.router),
        "files": (b"POST " + prefix + b"api/files", b"", api.router),
        "multipart": (
            b"POST " + prefix + b"api/files",
            b"Content-Type: multipart/form-data; boundary=b\r\n",
            api.router,
        ),
        "echo": (
            b"POST /v1/namespaces/default/agent-runtimes/echo-agent/invocations/",
            b"",
            api.router,
        ),
    }[target]
    headers = b"Host: x\r\n" + extra + SESSION_HEADER.encode() + b": " + sid + b"\r\n"
    if target == "create":
        headers = b"Host: x\r\n"
    if target == "echo":  # no session: the router opens one, then the body breaks
        headers = b"Host: x\r\n"
    answer = _raw(
        int(server.rsplit(":", 1)[1]), line + b" HTTP/1.1\r\n" + headers + FRAMINGS[framing]
    )
    assert _status(answer) == 400, answer[:300]
    created = [
        v
        for k, v in (h.split(b": ", 1) for h in answer.split(b"\r\n\r\n")[0].split(b"\r\n")[1:])
        if k.lower() == SESSION_HEADER.encode() and v != sid
    ]
    for other in created:  # a bare echo-agent call may have opened a session
        api.delete(other.decode(), "agent-runtime")
    _alive(api)


# -- oversized uploads --------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "multipart"])
def test_bodies_past_the_configured_cap_are_413(
    small: dict[str, Any], server_errors: Any, encoding: str
) -> None:
    api: Api = small["api"]
    sid = small["sid"]
    for size, expected in ((LIMIT // 2, 200), (LIMIT + 1, 413), (10 * LIMIT, 413)):
        data = os.urandom(size)
        if encoding == "json":
            response = api.upload(sid, "big.bin", data)
        else:
            response = api.call(
                sid, "POST", "api/files", data={"path": "big.bin"}, files={"file": data}
            )
        assert response.status_code == expected, (size, response.text)
        _assert_4xx(response)
        if expected == 413:
            assert response.json() == {
                "detail": f"maximum allowed size is {LIMIT} bytes",
                "error": "request body too large",
            }
    workspace: Path = small["workspace"]
    assert (workspace / "big.bin").stat().st_size == LIMIT // 2


def test_a_chunked_body_is_cut_at_the_cap(small: dict[str, Any], server_errors: Any) -> None:
    api: Api = small["api"]

    def chunks() -> Iterator[bytes]:
        yield b'{"command": ["true"], "pad": "'
        yield b"x" * LIMIT
        yield b'"}'

    response = api.call(small["sid"], "POST", "api/execute", data=chunks())
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error": "http: request body too large"}


def test_a_huge_declared_upload_is_refused_without_reading_it(
    small: dict[str, Any], server_errors: Any
) -> None:
    api: Api = small["api"]
    port = int(api.router.rsplit(":", 1)[1])
    head = (
        b"POST /v1/namespaces/default/code-interpreters/my-interpreter/invocations/api/files "
        b"HTTP/1.1\r\nHost: x\r\n"
        + SESSION_HEADER.encode()
        + b": "
        + small["sid"].encode()
        + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 1000000000000\r\n\r\n--b\r\n"
    )
    assert _status(_raw(port, head)) == 413
    _alive(api)


def test_the_sdk_sees_413_as_payload_too_large(
    small: dict[str, Any], server_errors: Any, tmp_path: Path
) -> None:
    cube: LocalAgentCube = small["cube"]
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (LIMIT + 1))
    with CodeInterpreterClient(
        workload_manager_url=cube.workload_manager_url, router_url=cube.router_url
    ) as ci:
        with pytest.raises(PayloadTooLargeError) as info:
            ci.upload_file(big, "big.bin")
        assert info.value.status_code == 413
        with pytest.raises(PayloadTooLargeError):
            ci.write_file(b"x" * (LIMIT + 1), "big.bin")
        ci.write_file(b"x" * (LIMIT // 2), "ok.bin")  # a body within the cap is fine


# -- hostile paths: nothing outside the workspace is read or written -----------------------------


def _outside_state(top: Path, workspace: Path) -> dict[str, bytes | str]:
    state: dict[str, bytes | str] = {}
    for directory, dirs, names in os.walk(top):
        for name in dirs + names:
            path = os.path.join(directory, name)
            if path == str(workspace) or path.startswith(str(workspace) + os.sep):
                continue
            if os.path.islink(path):
                state[path] = "link:" + os.readlink(path)
            elif os.path.isfile(path):
                state[path] = Path(path).read_bytes()
            else:
                state[path] = "dir"
    return state


SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "..",
            ".",
            "",
            "a",
            "link-out",
            "link-file",
            "link-up",
            "link-root",
            "dangling",
            "etc",
            "passwd",
            "\u00e9",
            "\u202e",
            "%2e%2e",
            "\\..",
            "\x00",
            "\udc80",
        ]
    ),
    st.text(max_size=5),
)
PATHS = st.builds(
    lambda lead, parts: lead + "/".join(parts),
    st.sampled_from(["", "/", "//"]),
    st.lists(SEGMENTS, min_size=1, max_size=5),
)


@PROPERTY
@given(path=PATHS)
def test_hostile_paths_never_leave_the_workspace(
    small: dict[str, Any], server_errors: Any, path: str
) -> None:
    api: Api = small["api"]
    sid = small["sid"]
    workspace: Path = small["workspace"]
    before = _outside_state(small["top"], workspace)
    raw = path.encode("utf-8", "surrogateescape")  # what a form field or a URL can carry
    responses = [
        api.upload(sid, path, b"payload"),
        api.call(sid, "POST", "api/files", data={"path": raw}, files={"file": b"payload"}),
        api.call(sid, "GET", "api/files", params={"path": raw}),
        api.call(sid, "POST", "api/execute", json={"command": ["true"], "working_dir": path}),
    ]
    quoted = "/".join(quote(s, safe="") for s in raw.split(b"/") if s)
    download = api.download(sid, quoted.replace(".", "%2E"))
    responses.append(download)
    if download.status_code == 503:
        # The file's name went raw into Content-Disposition with a control byte in it: the real
        # Router's Go transport refuses that answer and says so itself.
        assert re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", path), path
        assert download.json() == {"error": "sandbox unreachable"}
        responses.remove(download)
    for response in responses:
        _assert_4xx(response)
    statuses = [response.status_code for response in responses]
    assert all(code in (200, 400, 404, 413, 500) for code in statuses), (path, statuses)
    if download.status_code == 200:
        assert b"outside-secret" not in download.content
    listing = api.call(sid, "GET", "api/files", params={"path": raw})
    if listing.status_code == 200:
        assert "outside-only-7c1.txt" not in {f["name"] for f in listing.json()["files"]}
    assert _outside_state(small["top"], workspace) == before
