"""Code interpreter: api/files upload, listing, download, limits and path confinement."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator

import pytest

from agentcube.local import LocalAgentCube

from .helpers import MAX_UPLOAD, Api


def _workspace(cube: LocalAgentCube, session_id: str) -> str:
    workspace = next(s.workspace for s in cube.sessions() if s.session_id == session_id)
    assert workspace is not None
    return workspace


def test_json_upload_and_download(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    data = bytes(range(256)) * 100
    response = api.upload(session_id, "dir/sub/blob.bin", data, mode="0600")
    assert response.status_code == 200, response.text
    info = response.json()
    assert set(info) == {"path", "size", "mode", "modified"}
    assert info["path"] == "dir/sub/blob.bin"
    assert info["size"] == len(data)
    assert info["mode"] == "0600"
    on_disk = os.path.join(_workspace(cube, session_id), "dir", "sub", "blob.bin")
    assert stat.S_IMODE(os.stat(on_disk).st_mode) == 0o600
    with open(on_disk, "rb") as handle:
        assert handle.read() == data

    download = api.download(session_id, "dir/sub/blob.bin")
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Length"] == str(len(data))
    # a leading slash is relative to the workspace
    assert api.download(session_id, "/dir/sub/blob.bin").content == data


def test_upload_default_mode_and_overwrite(api: Api, session_id: str) -> None:
    assert api.upload(session_id, "f.txt", b"one").json()["mode"] == "0644"
    body = {"path": "/f.txt", "content": base64.b64encode(b"second").decode()}
    response = api.call(session_id, "POST", "api/files", json=body)
    assert response.json()["size"] == 6
    assert api.download(session_id, "f.txt").content == b"second"
    assert api.upload(session_id, "empty", b"").json()["size"] == 0
    assert api.download(session_id, "empty").content == b""


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
    assert response.json()["mode"] == "0755"
    assert api.download(session_id, "up/loaded.bin").content == data
    # no temp files are left behind
    names = os.listdir(os.path.join(_workspace(cube, session_id)))
    assert names == ["up"]


def test_multipart_missing_parts_400(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    no_path = api.call(session_id, "POST", "api/files", files={"file": ("a", b"x")})
    assert no_path.status_code == 400
    no_file = api.call(session_id, "POST", "api/files", files={"path": (None, "a.txt")})
    assert no_file.status_code == 400
    bad_mode = api.call(
        session_id, "POST", "api/files", data={"path": "a", "mode": "rwx"}, files={"file": b"x"}
    )
    assert bad_mode.status_code == 400
    garbage = api.call(
        session_id,
        "POST",
        "api/files",
        data=b"--zzz\r\nnot really multipart",
        headers={"Content-Type": "multipart/form-data; boundary=zzz"},
    )
    assert garbage.status_code == 400
    assert os.listdir(_workspace(cube, session_id)) == []


def test_listing(api: Api, session_id: str) -> None:
    api.upload(session_id, "top.txt", b"12345")
    api.upload(session_id, "d/inner.txt", b"1")
    response = api.call(session_id, "GET", "api/files", params={"path": "/"})
    assert response.status_code == 200
    files = response.json()["files"]
    assert [f["name"] for f in files] == ["d", "top.txt"]
    for entry in files:
        assert set(entry) == {"name", "size", "modified", "mode", "is_dir"}
    assert files[0]["is_dir"] is True
    assert files[1] == files[1] | {"size": 5, "is_dir": False, "mode": "0644"}
    inner = api.call(session_id, "GET", "api/files", params={"path": "d"}).json()["files"]
    assert [f["name"] for f in inner] == ["inner.txt"]
    # no path = the workspace root
    assert len(api.call(session_id, "GET", "api/files").json()["files"]) == 2


def test_listing_and_download_404(api: Api, session_id: str) -> None:
    api.upload(session_id, "file.txt", b"x")
    for path in ("missing", "file.txt"):
        response = api.call(session_id, "GET", "api/files", params={"path": path})
        assert response.status_code == 404
        assert set(response.json()) == {"error"}
    response = api.download(session_id, "missing.txt")
    assert response.status_code == 404
    assert set(response.json()) == {"error"}
    assert api.download(session_id, "file.txt/nested").status_code == 404


def test_json_upload_errors(api: Api, session_id: str) -> None:
    cases: list[object] = [
        {"content": "eA=="},
        {"path": "a"},
        {"path": "", "content": "eA=="},
        {"path": 5, "content": "eA=="},
        {"path": "a", "content": "!!! not base64 !!!"},
        {"path": "a", "content": "eA="},
        {"path": "a", "content": "eA==", "mode": "999"},
        {"path": "a", "content": "eA==", "mode": 420},
        {"path": "/", "content": "eA=="},
        ["path", "content"],
    ]
    for body in cases:
        response = api.call(session_id, "POST", "api/files", json=body)
        assert response.status_code == 400, (body, response.text)
        assert set(response.json()) == {"error"}


def test_upload_over_limit_413(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    too_big = b"\0" * (MAX_UPLOAD + 1)
    response = api.upload(session_id, "big.bin", too_big)
    assert response.status_code == 413
    assert set(response.json()) == {"error"}
    response = api.call(
        session_id, "POST", "api/files", data={"path": "big.bin"}, files={"file": too_big}
    )
    assert response.status_code == 413
    assert set(response.json()) == {"error"}
    assert os.listdir(_workspace(cube, session_id)) == []
    # exactly at the limit is fine, and the connection is still usable afterwards
    response = api.call(
        session_id, "POST", "api/files", data={"path": "ok.bin"}, files={"file": too_big[:-1]}
    )
    assert response.status_code == 200
    assert response.json()["size"] == MAX_UPLOAD


ESCAPES = [
    "../probe",
    "../../probe",
    "../../../../probe",
    "/../../etc/passwd",
    "a/../../probe",
    "/a/b/../../../probe",
    "..",
]


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
    with open("/etc/passwd", "rb") as handle:
        passwd = handle.read()
    upload = api.upload(session_id, path, b"evil")
    assert upload.status_code == 400
    assert set(upload.json()) == {"error"}
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
    with open("/etc/passwd", "rb") as handle:
        assert handle.read() == passwd
    assert api.delete(session_id).status_code == 200


def test_nul_bytes_are_refused(api: Api, session_id: str) -> None:
    assert api.upload(session_id, "a\x00b", b"x").status_code == 400
    assert api.call(session_id, "GET", "api/files", params={"path": "a\x00"}).status_code == 400
    assert api.download(session_id, "a%00b").status_code == 400


def test_symlinks_pointing_outside_are_refused(
    api: Api, cube: LocalAgentCube, session_id: str, tmp_path: os.PathLike[str]
) -> None:
    outside = os.path.join(os.fspath(tmp_path), "outside")
    os.mkdir(outside)
    secret = os.path.join(outside, "secret.txt")
    with open(secret, "w") as handle:
        handle.write("secret")
    api.execute(session_id, ["ln", "-s", "/etc", "etc-link"])
    api.execute(session_id, ["ln", "-s", outside, "out-link"])
    api.execute(session_id, ["ln", "-s", secret, "secret-link"])
    api.execute(session_id, ["ln", "-s", "nowhere-yet", "dangling"])

    assert api.download(session_id, "etc-link/passwd").status_code == 400
    assert api.download(session_id, "secret-link").status_code == 400
    assert api.call(session_id, "GET", "api/files", params={"path": "etc-link"}).status_code == 400
    assert api.upload(session_id, "out-link/new.txt", b"x").status_code == 400
    assert api.upload(session_id, "secret-link", b"overwritten").status_code == 400
    response = api.call(
        session_id, "POST", "api/execute", json={"command": ["pwd"], "working_dir": "out-link"}
    )
    assert response.status_code == 400
    assert os.listdir(outside) == ["secret.txt"]
    with open(secret) as handle:
        assert handle.read() == "secret"
    # a dangling link inside the workspace resolves inside: writing through it is allowed
    assert api.upload(session_id, "dangling", b"inside").status_code == 200
    workspace = _workspace(cube, session_id)
    with open(os.path.join(workspace, "nowhere-yet"), "rb") as handle:
        assert handle.read() == b"inside"
    # links are listed as what they are, not followed
    listing = api.call(session_id, "GET", "api/files").json()["files"]
    assert {f["name"] for f in listing} >= {"etc-link", "out-link", "secret-link"}


def test_unicode_paths(api: Api, session_id: str) -> None:
    assert api.upload(session_id, "dïr/文件 name.txt", b"u").status_code == 200
    assert api.download(session_id, "dïr/文件 name.txt").content == b"u"
    listing = api.call(session_id, "GET", "api/files", params={"path": "dïr"}).json()
    assert listing["files"][0]["name"] == "文件 name.txt"
    assert api.upload(session_id, "bad\ud800surrogate", b"x").status_code == 400


def test_download_special_files(api: Api, session_id: str) -> None:
    api.execute(session_id, ["mkfifo", "fifo"])
    api.execute(session_id, ["mkdir", "adir"])
    assert api.download(session_id, "fifo").status_code == 400
    assert api.download(session_id, "adir").status_code == 400


def test_unknown_subpaths(api: Api, session_id: str) -> None:
    assert api.call(session_id, "GET", "api/nothing").status_code == 404
    assert api.call(session_id, "DELETE", "api/files").status_code == 405
    assert api.call(session_id, "POST", "api/files/x").status_code == 405
