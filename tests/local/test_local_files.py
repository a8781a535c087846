"""Code interpreter: api/files upload, listing, download, the body cap and path confinement."""

from __future__ import annotations

import base64
import gzip
import os
import stat
from collections.abc import Iterator

import pytest
import requests

from agentcube.local import LocalAgentCube

from .helpers import (
    MAX_UPLOAD,
    PYTHON,
    SESSION_HEADER,
    Api,
    host_view,
    host_workspace,
    inner_workspace,
)


def _error(status: int, message: str) -> dict[str, object]:
    return {"code": status, "error": message}


def test_json_upload_and_download(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    data = bytes(range(256)) * 100
    response = api.upload(session_id, "dir/sub/blob.bin", data, mode="0600")
    assert response.status_code == 200, response.text
    info = response.json()
    assert list(info) == ["path", "size", "mode", "modified"]
    assert info["path"] == "dir/sub/blob.bin"
    assert info["size"] == len(data)
    assert info["mode"] == "-rw-------"
    workspace = host_workspace(cube, session_id)
    on_disk = os.path.join(workspace, "dir", "sub", "blob.bin")
    assert stat.S_IMODE(os.stat(on_disk).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(workspace, "dir")).st_mode) == 0o755
    with open(on_disk, "rb") as handle:
        assert handle.read() == data

    download = api.call(
        session_id, "GET", "api/files/dir/sub/blob.bin", headers={"Accept-Encoding": "identity"}
    )
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Length"] == str(len(data))
    assert download.headers["Content-Disposition"] == 'attachment; filename="blob.bin"'
    assert download.headers["Accept-Ranges"] == "bytes"
    # requests asks for gzip: PicoD compresses downloads (not .png and the like)
    compressed = api.download(session_id, "dir/sub/blob.bin")
    assert compressed.headers["Content-Encoding"] == "gzip"
    assert compressed.content == data
    # a leading slash is relative to the workspace
    assert api.download(session_id, "/dir/sub/blob.bin").content == data


def test_mode_applies_on_create_only_under_umask_022(api: Api, session_id: str) -> None:
    old = os.umask(0o077)  # the server process's own umask does not matter
    try:
        assert api.upload(session_id, "f.txt", b"one").json()["mode"] == "-rw-r--r--"
        assert api.upload(session_id, "f.txt", b"two", mode="0600").json()["mode"] == "-rw-r--r--"
        assert api.upload(session_id, "x.sh", b"#!/bin/sh\n", mode="0777").json()["mode"] == (
            "-rwxr-xr-x"
        )
        for mode in ("4755", "abc", "999", "-1", "0o644"):
            answer = api.upload(session_id, f"m{mode}", b"x", mode=mode).json()
            assert answer["mode"] == "-rw-r--r--", mode
    finally:
        os.umask(old)
    body = {"path": "/f.txt", "content": base64.b64encode(b"second").decode()}
    response = api.call(session_id, "POST", "api/files", json=body)
    assert response.json()["path"] == "f.txt"  # workspace-relative, cleaned
    assert response.json()["size"] == 6
    assert api.download(session_id, "f.txt").content == b"second"


def test_files_are_visible_to_commands(api: Api, session_id: str) -> None:
    api.upload(session_id, "script.py", b"print(open('data.txt').read())")
    api.upload(session_id, "data.txt", b"payload")
    assert api.execute(session_id, ["python3", "script.py"])["stdout"] == "payload\n"
    api.execute(session_id, ["bash", "-c", "printf made-by-command > out.txt"])
    assert api.download(session_id, "out.txt").content == b"made-by-command"


def test_multipart_upload(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    data = os.urandom(300_000)
    response = api.call(
        session_id,
        "POST",
        "api/files",
        data={"path": "/up/loaded.bin", "mode": "0755"},
        files={"file": ("ignored-name.bin", data, "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["size"] == len(data)
    assert response.json()["mode"] == "-rwxr-xr-x"
    assert api.download(session_id, "up/loaded.bin").content == data
    # no temp files are left behind, in the workspace or beside it
    assert os.listdir(host_workspace(cube, session_id)) == ["up"]
    if cube.isolation == "namespaces":  # PicoD spools in the sandbox's /tmp, as Go's does
        staging = host_view(cube, session_id, "/tmp")
    else:
        staging = os.path.join(
            os.path.dirname(host_workspace(cube, session_id)), ".agentcube-staging"
        )
    assert [n for n in os.listdir(staging) if n.startswith("multipart-")] == []
    empty = api.call(
        session_id, "POST", "api/files", data={"path": "empty"}, files={"file": ("e", b"")}
    )
    assert empty.json()["size"] == 0


def test_multipart_errors(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    no_path = api.call(session_id, "POST", "api/files", files={"file": ("a", b"x")})
    assert (no_path.status_code, no_path.json()) == (400, _error(400, "Missing 'path' field"))
    no_file = api.call(session_id, "POST", "api/files", files={"path": (None, "a.txt")})
    assert no_file.json() == _error(400, "Failed to get file: http: no such file")
    garbage = api.call(
        session_id,
        "POST",
        "api/files",
        data=b"--zzz\r\nnot really multipart",
        headers={"Content-Type": "multipart/form-data; boundary=zzz"},
    )
    assert garbage.json() == _error(400, "Missing 'path' field")
    api.execute(session_id, ["mkdir", "adir"])
    onto_dir = api.call(
        session_id, "POST", "api/files", data={"path": "adir"}, files={"file": ("a", b"x")}
    )
    assert onto_dir.json() == _error(500, "Failed to create destination file")
    assert os.listdir(host_workspace(cube, session_id)) == ["adir"]


def test_listing(api: Api, session_id: str) -> None:
    api.upload(session_id, "top.txt", b"12345")
    api.upload(session_id, "d/inner.txt", b"1")
    api.upload(session_id, "B.txt", b"1")
    api.execute(session_id, ["ln", "-s", "d", "link"])
    response = api.call(session_id, "GET", "api/files", params={"path": "/"})
    assert response.status_code == 200
    files = response.json()["files"]
    assert [f["name"] for f in files] == ["B.txt", "d", "link", "top.txt"]  # byte order
    for entry in files:
        assert list(entry) == ["name", "size", "modified", "mode", "is_dir"]
    assert files[1]["is_dir"] is True and files[1]["mode"] == "drwxr-xr-x"
    assert files[2]["is_dir"] is False and files[2]["mode"] == "Lrwxrwxrwx"
    assert files[3] == files[3] | {"size": 5, "is_dir": False, "mode": "-rw-r--r--"}
    inner = api.call(session_id, "GET", "api/files", params={"path": "d"}).json()["files"]
    assert [f["name"] for f in inner] == ["inner.txt"]
    for params in ({}, {"path": ""}):
        response = api.call(session_id, "GET", "api/files", params=params)
        assert response.json() == _error(400, "Missing 'path' query parameter")


def test_listing_and_download_errors(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    workspace = inner_workspace(cube, session_id)
    api.upload(session_id, "file.txt", b"x")
    missing = api.call(session_id, "GET", "api/files", params={"path": "missing"})
    assert (missing.status_code, missing.json()) == (404, _error(404, "Directory not found"))
    a_file = api.call(session_id, "GET", "api/files", params={"path": "file.txt"})
    assert a_file.json() == _error(
        500, f"Failed to read directory: open {workspace}/file.txt: not a directory"
    )
    response = api.download(session_id, "missing.txt")
    assert (response.status_code, response.json()) == (404, _error(404, "File not found"))
    nested = api.download(session_id, "file.txt/nested")
    assert nested.json() == _error(
        500, f"Failed to get file info: stat {workspace}/file.txt/nested: not a directory"
    )
    api.execute(session_id, ["mkdir", "adir"])
    for path in ("adir", "adir/", ""):
        response = api.download(session_id, path)
        assert response.json() == _error(400, "Path is a directory, not a file"), path


def test_json_upload_errors(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    workspace = inner_workspace(cube, session_id)
    required = "Key: 'UploadFileRequest.{0}' Error:Field validation for '{0}' failed on the "
    required += "'required' tag"
    api.upload(session_id, "afile", b"x")
    cases: list[tuple[object, int, str]] = [
        ({"content": "eA=="}, 400, required.format("Path")),
        ({"path": "a"}, 400, required.format("Content")),
        ({"path": "a", "content": ""}, 400, required.format("Content")),
        ({}, 400, required.format("Path") + "\n" + required.format("Content")),
        (
            {"path": 5, "content": "eA=="},
            400,
            "json: cannot unmarshal number into Go struct field UploadFileRequest.path of type "
            "string",
        ),
        (
            {"path": "a", "content": "!!! not base64 !!!"},
            400,
            "Invalid base64 content: illegal base64 data at input byte 0",
        ),
        (
            {"path": "a", "content": "eA="},
            400,
            "Invalid base64 content: illegal base64 data at input byte 3",
        ),
        (
            {"path": "a", "content": "eA==", "mode": 420},
            400,
            "json: cannot unmarshal number into Go struct field UploadFileRequest.mode of type "
            "string",
        ),
        (
            {"path": "/", "content": "eA=="},
            500,
            f"Failed to write file: open {workspace}: is a directory",
        ),
        (
            {"path": "afile/x", "content": "eA=="},
            500,
            f"Failed to create directory: mkdir {workspace}/afile: not a directory",
        ),
        (
            ["path", "content"],
            400,
            "json: cannot unmarshal array into Go value of type picod.UploadFileRequest",
        ),
    ]
    for body, status, message in cases:
        response = api.call(session_id, "POST", "api/files", json=body)
        assert (response.status_code, response.json()) == (status, _error(status, message)), body
    # base64 with line breaks is fine, as in Go
    response = api.call(session_id, "POST", "api/files", json={"path": "nl", "content": "eA\n=="})
    assert response.status_code == 200
    assert sorted(os.listdir(host_workspace(cube, session_id))) == ["afile", "nl"]


def test_body_cap_413(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    too_big = b"\0" * MAX_UPLOAD
    expected = {
        "detail": f"maximum allowed size is {MAX_UPLOAD} bytes",
        "error": "request body too large",
    }
    response = api.upload(session_id, "big.bin", too_big)
    assert (response.status_code, response.json()) == (413, expected)
    response = api.call(
        session_id, "POST", "api/files", data={"path": "big.bin"}, files={"file": too_big}
    )
    assert (response.status_code, response.json()) == (413, expected)
    assert SESSION_HEADER_NAME in response.headers  # PicoD's answer, through the Router
    assert os.listdir(host_workspace(cube, session_id)) == []
    # a body within the cap is fine, and the connection is still usable afterwards
    response = api.call(
        session_id,
        "POST",
        "api/files",
        data={"path": "ok.bin"},
        files={"file": too_big[: MAX_UPLOAD - 1000]},
    )
    assert response.status_code == 200
    assert response.json()["size"] == MAX_UPLOAD - 1000


SESSION_HEADER_NAME = "x-agentcube-session-id"

ESCAPES = ["../probe", "../../probe", "../../../../probe", "a/../../probe", ".."]


def _tree(top: str) -> list[tuple[str, int, float]]:
    found = []
    for directory, _, names in os.walk(top):
        for name in names:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            found.append((path, info.st_size, info.st_mtime))
    return sorted(found)


@pytest.fixture(scope="module")
def nested_cube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str]]:
    top = tmp_path_factory.mktemp("escape")
    root = top / "a" / "b" / "c" / "root"
    with LocalAgentCube(quiet=True, root_dir=root) as cube:
        client = Api(cube)
        yield client, os.fspath(top)
        client.http.close()
    assert not any(os.scandir(root))  # stop() removed every workspace, kept the given root


@pytest.mark.parametrize("path", ESCAPES)
def test_path_escapes_are_refused(nested_cube: tuple[Api, str], path: str) -> None:
    api, top = nested_cube
    session_id = api.create()
    before = _tree(top)
    upload = api.upload(session_id, path, b"evil")
    assert upload.status_code == 400
    assert upload.json()["error"].startswith(f"access denied: path '{path}' escapes workspace jail")
    multipart = api.call(
        session_id, "POST", "api/files", data={"path": path}, files={"file": b"evil"}
    )
    assert multipart.status_code == 400
    listing = api.call(session_id, "GET", "api/files", params={"path": path})
    assert listing.status_code == 400
    encoded = path.replace(".", "%2e").replace("/", "%2f")
    assert api.download(session_id, encoded).status_code == 400
    response = api.call(
        session_id, "POST", "api/execute", json={"command": ["pwd"], "working_dir": path}
    )
    assert response.status_code == 400
    assert _tree(top) == before
    assert api.delete(session_id).status_code == 200


def test_absolute_paths_stay_inside(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    response = api.upload(session_id, "/../../etc/passwd", b"inside")
    assert response.json()["path"] == "etc/passwd"
    with open(os.path.join(host_workspace(cube, session_id), "etc", "passwd"), "rb") as handle:
        assert handle.read() == b"inside"


def test_dot_dot_in_a_download_url_is_refused_by_the_file_server(api: Api, session_id: str) -> None:
    api.upload(session_id, "d/f.txt", b"x")
    for path in ("d/%2E%2E/d/f.txt", "d/%2e%2e/d/f.txt"):  # requests drops a literal ..
        response = api.call(
            session_id, "GET", f"api/files/{path}", headers={"Accept-Encoding": "identity"}
        )
        assert (response.status_code, response.text) == (400, "invalid URL path\n")
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_file_server_errors_asked_with_gzip_come_compressed_without_the_header(
    api: Api, session_id: str
) -> None:
    # Since Go 1.23 http.ServeFile's error path deletes Content-Encoding while gin's gzip
    # writer still compresses (checked against the real PicoD): the 400 for "..", the 416s
    # and the open failures all arrive as gzip streams that no header announces.
    api.upload(session_id, "d/f.txt", b"hello")
    script = "import socket; socket.socket(socket.AF_UNIX).bind('d/sock')"
    api.execute(session_id, [PYTHON, "-c", script])
    cases = [
        ("d/%2E%2E/d/f.txt", {}, 400, b"invalid URL path\n"),
        ("d/f.txt", {"Range": "bytes=100-200"}, 416, b"invalid range: failed to overlap\n"),
        ("d/f.txt", {"Range": "bytes=x"}, 416, b"invalid range\n"),
        ("d/sock", {}, 404, b"404 page not found\n"),  # ENXIO reads as "does not exist"
    ]
    for path, headers, status, text in cases:
        for encoding in ("gzip", "identity"):
            response = api.call(
                session_id,
                "GET",
                f"api/files/{path}",
                headers={**headers, "Accept-Encoding": encoding},
            )
            assert response.status_code == status, (path, headers)
            assert "Content-Encoding" not in response.headers
            assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
            body = gzip.decompress(response.content) if encoding == "gzip" else response.content
            assert body == text, (path, headers, encoding)


def _path_of_length(workspace: str, total: int, last: str = "f.txt") -> str:
    """A relative path that makes ``workspace/path`` exactly ``total`` bytes long."""
    left = total - len(workspace) - 1 - len(last)
    parts = []
    while left > 202:
        parts.append("a" * 200)
        left -= 201
    parts.append("b" * (left - 1))
    return "/".join([*parts, last])


def _first_too_long(workspace: str, path: str) -> str:
    parts = path.split("/")
    for index in range(len(parts)):
        prefix = "/".join([workspace, *parts[: index + 1]])
        if len(prefix) >= 4096:
            return prefix
    raise AssertionError(path)


def test_paths_over_path_max_fail_as_the_system_call_does(
    api: Api, cube: LocalAgentCube, session_id: str
) -> None:
    # The texts are the real PicoD's: Go hands the kernel the whole path, which refuses one
    # of PATH_MAX (4096) bytes or more, NUL included, with ENAMETOOLONG.
    workspace = inner_workspace(cube, session_id)
    if cube.isolation != "namespaces":
        workspace = os.path.realpath(workspace)
    too_long = "file name too long"

    def multipart(path: str) -> requests.Response:
        return api.call(session_id, "POST", "api/files", data={"path": path}, files={"file": b"m"})

    def execute_in(path: str) -> dict[str, object]:
        return api.execute(session_id, ["true"], working_dir=path)

    fits = _path_of_length(workspace, 4095)
    assert api.upload(session_id, fits, b"x").status_code == 200
    assert multipart(fits).json()["path"] == fits
    assert api.download(session_id, fits).content == b"m"
    listing = api.call(session_id, "GET", "api/files", params={"path": os.path.dirname(fits)})
    assert [entry["name"] for entry in listing.json()["files"]] == ["f.txt"]

    over = _path_of_length(workspace, 4096)
    full = f"{workspace}/{over}"
    response = api.upload(session_id, over, b"x")
    assert (response.status_code, response.json()) == (
        500,
        _error(500, f"Failed to write file: open {full}: {too_long}"),
    )
    assert multipart(over).json() == _error(500, "Failed to create destination file")
    assert api.download(session_id, over).json() == _error(
        500, f"Failed to get file info: stat {full}: {too_long}"
    )
    listed = api.call(session_id, "GET", "api/files", params={"path": over})
    assert listed.json() == _error(500, f"Failed to read directory: open {full}: {too_long}")
    result = execute_in(over)
    assert (result["exit_code"], result["stderr"]) == (1, f"chdir {full}: {too_long}")
    # a component over NAME_MAX fails the same stat
    result = execute_in("c" * 300)
    assert result["stderr"] == f"chdir {workspace}/{'c' * 300}: {too_long}"

    # nothing exists of it: still the length, not "not found"
    missing = "missing/" + _path_of_length(workspace, 4300)
    full = f"{workspace}/{missing}"
    assert api.download(session_id, missing).json() == _error(
        500, f"Failed to get file info: stat {full}: {too_long}"
    )
    listed = api.call(session_id, "GET", "api/files", params={"path": missing})
    assert listed.json() == _error(500, f"Failed to read directory: open {full}: {too_long}")

    # os.MkdirAll makes the directories that fit, then fails at the first that does not
    for name, send in (("json", lambda p: api.upload(session_id, p, b"x")), ("mp", multipart)):
        deep = f"{name}/" + _path_of_length(workspace, 4300)
        failing = _first_too_long(workspace, deep)
        assert send(deep).json() == _error(
            500, f"Failed to create directory: mkdir {failing}: {too_long}"
        )
        assert os.listdir(host_view(cube, session_id, os.path.dirname(failing))) == []


def test_index_html_redirects(api: Api, session_id: str) -> None:
    api.upload(session_id, "site/index.html", b"<p>")
    response = api.call(
        session_id,
        "GET",
        "api/files/site/index.html",
        allow_redirects=False,
        headers={"Accept-Encoding": "identity"},
    )
    assert (response.status_code, response.headers["Location"], response.content) == (
        301,
        "./",
        b"",
    )


def test_ranges_and_conditional_requests(api: Api, session_id: str) -> None:
    api.upload(session_id, "r.txt", b"0123456789")
    identity = {"Accept-Encoding": "identity"}

    def get(**headers: str) -> object:
        return api.call(session_id, "GET", "api/files/r.txt", headers={**identity, **headers})

    one = get(Range="bytes=2-5")
    assert (one.status_code, one.content, one.headers["Content-Range"]) == (
        206,
        b"2345",
        "bytes 2-5/10",
    )  # type: ignore[attr-defined]
    many = get(Range="bytes=0-0,-1")
    assert many.status_code == 206  # type: ignore[attr-defined]
    assert many.headers["Content-Type"].startswith("multipart/byteranges; boundary=")  # type: ignore[attr-defined]
    assert b"Content-Range: bytes 9-9/10" in many.content  # type: ignore[attr-defined]
    bad = get(Range="bytes=100-")
    assert (bad.status_code, bad.text) == (416, "invalid range: failed to overlap\n")  # type: ignore[attr-defined]
    assert get(Range="items=1-2").text == "invalid range\n"  # type: ignore[attr-defined]
    assert get(**{"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}).status_code == 304  # type: ignore[attr-defined]
    assert get(**{"If-None-Match": "*"}).status_code == 304  # type: ignore[attr-defined]
    assert get(**{"If-Match": '"x"'}).status_code == 412  # type: ignore[attr-defined]


def test_nul_bytes_are_errors_not_crashes(api: Api, session_id: str) -> None:
    assert api.upload(session_id, "a\x00b", b"x").status_code == 500
    assert api.call(session_id, "GET", "api/files", params={"path": "a\x00"}).status_code == 500
    assert api.download(session_id, "a%00b").status_code == 500


def test_symlinks_pointing_outside_are_refused(
    api: Api, cube: LocalAgentCube, session_id: str, tmp_path: os.PathLike[str]
) -> None:
    # outside the workspace, as the session sees its machine
    if cube.isolation == "namespaces":
        outside = "/tmp/outside"
        api.execute(session_id, ["mkdir", outside])
    else:
        outside = os.path.join(os.fspath(tmp_path), "outside")
        os.mkdir(outside)
    secret = os.path.join(outside, "secret.txt")
    with open(host_view(cube, session_id, secret), "w") as handle:
        handle.write("secret")
    api.execute(session_id, ["ln", "-s", "/etc", "etc-link"])
    api.execute(session_id, ["ln", "-s", outside, "out-link"])
    api.execute(session_id, ["ln", "-s", secret, "secret-link"])
    api.execute(session_id, ["ln", "-s", "nowhere-yet", "dangling"])
    api.execute(session_id, ["ln", "-s", os.path.join(outside, "new"), "dangling-out"])

    response = api.download(session_id, "etc-link/passwd")
    assert response.json() == _error(
        400,
        "access denied: resolved path '/etc/passwd' (from 'etc-link/passwd') escapes "
        "workspace jail via symlink",
    )
    assert api.download(session_id, "secret-link").status_code == 400
    assert api.call(session_id, "GET", "api/files", params={"path": "etc-link"}).status_code == 400
    # the real PicoD writes through these; the local one refuses (documented difference)
    assert api.upload(session_id, "out-link/new.txt", b"x").status_code == 400
    assert api.upload(session_id, "dangling-out", b"x").status_code == 400
    multipart = api.call(
        session_id, "POST", "api/files", data={"path": "out-link/m"}, files={"file": b"x"}
    )
    assert multipart.status_code == 400
    assert api.upload(session_id, "secret-link", b"overwritten").status_code == 400
    response = api.call(
        session_id, "POST", "api/execute", json={"command": ["pwd"], "working_dir": "out-link"}
    )
    assert response.status_code == 400
    response = api.call(
        session_id, "POST", "api/execute", json={"command": ["pwd"], "working_dir": "out-link/n"}
    )
    assert response.status_code == 500  # mkdirSafe's refusal
    assert os.listdir(host_view(cube, session_id, outside)) == ["secret.txt"]
    with open(host_view(cube, session_id, secret)) as handle:
        assert handle.read() == "secret"
    # a dangling link inside the workspace resolves inside: writing through it is allowed
    assert api.upload(session_id, "dangling", b"inside").status_code == 200
    workspace = host_workspace(cube, session_id)
    with open(os.path.join(workspace, "nowhere-yet"), "rb") as handle:
        assert handle.read() == b"inside"


def test_unicode_paths(api: Api, session_id: str) -> None:
    assert api.upload(session_id, "dïr/文件 name.txt", b"u").status_code == 200
    assert api.download(session_id, "dïr/文件 name.txt").content == b"u"
    listing = api.call(session_id, "GET", "api/files", params={"path": "dïr"}).json()
    assert listing["files"][0]["name"] == "文件 name.txt"
    # a lone surrogate escape decodes to U+FFFD, as in Go
    assert api.upload(session_id, "bad\ud800", b"x").json()["path"] == "bad\ufffd"


def test_download_special_files(api: Api, session_id: str) -> None:
    api.execute(session_id, ["mkfifo", "fifo"])
    response = api.download(session_id, "fifo")  # no writer: served empty, never hangs
    assert (response.status_code, response.content) == (200, b"")


def test_unknown_subpaths(api: Api, session_id: str) -> None:
    identity = {"Accept-Encoding": "identity"}
    for method, path in (("GET", "api/nothing"), ("POST", "api/files/x"), ("GET", "api/execute")):
        response = api.call(session_id, method, path, headers=identity)
        assert (response.status_code, response.text) == (404, "404 page not found")
        assert SESSION_HEADER_NAME in response.headers  # PicoD's 404
    response = api.call(session_id, "DELETE", "api/files", headers=identity)
    assert (response.status_code, response.text) == (404, "404 page not found")
    assert SESSION_HEADER_NAME not in response.headers  # the Router's own
    redirect = api.call(session_id, "POST", "api/execute/", allow_redirects=False)
    assert (redirect.status_code, redirect.headers["Location"]) == (307, "/api/execute")


def test_a_line_break_in_a_file_name_never_breaks_the_answer(api: Api, session_id: str) -> None:
    # The name goes into Content-Disposition; Go's net/http turns CR/LF in a header value into
    # spaces. Sent raw, it ended the header block early and the answer's framing was lost.
    assert api.upload(session_id, "a\rb\nc.txt", b"payload").status_code == 200
    response = api.call(session_id, "GET", "api/files/a%0Db%0Ac.txt", timeout=5)
    assert response.status_code == 200
    assert response.content == b"payload"
    assert response.headers["Content-Disposition"] == 'attachment; filename="a b c.txt"'
    assert api.execute(session_id, ["echo", "the connection still serves"])["exit_code"] == 0


def test_a_file_name_with_a_control_byte_is_downloaded_as_the_real_router_answers_it(
    api: Api, session_id: str
) -> None:
    # PicoD puts the name raw in Content-Disposition; the Router's Go transport refuses such an
    # answer, so the client gets the Router's 503 (measured with the real PicoD behind --picod).
    assert (
        api.execute(session_id, ["sh", "-c", "printf x > \"$(printf 'a\\bb')\""])["exit_code"] == 0
    )
    response = api.call(session_id, "GET", "api/files/a%08b")
    assert response.status_code == 503
    assert response.json() == {"error": "sandbox unreachable"}
    assert SESSION_HEADER not in response.headers
    # A line break is written as a space by the sandbox's net/http: that answer goes through.
    assert (
        api.execute(session_id, ["sh", "-c", "printf y > \"$(printf 'c\\nd')\""])["exit_code"] == 0
    )
    response = api.call(session_id, "GET", "api/files/c%0Ad")
    assert response.status_code == 200
    assert response.content == b"y"
