"""The CLI in a subprocess, and the server's memory use for big uploads and downloads."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import psutil
import pytest
import requests

from .helpers import CI, NS, SESSION_HEADER

MiB = 1024 * 1024


class CliServer:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentcube.local", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        lines = [self.proc.stdout.readline(), self.proc.stdout.readline()]
        urls = dict(re.findall(r"^export (\w+)=(\S+)$", "".join(lines), re.MULTILINE))
        assert set(urls) == {"WORKLOAD_MANAGER_URL", "ROUTER_URL"}, lines
        self.wm = urls["WORKLOAD_MANAGER_URL"]
        self.router = urls["ROUTER_URL"]

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return self.proc.returncode, err

    def ci(self, subpath: str) -> str:
        return f"{self.router}/v1/namespaces/{NS}/code-interpreters/{CI}/invocations/{subpath}"


def test_cli_serves_and_exits_cleanly_on_sigint(tmp_path: os.PathLike[str]) -> None:
    root = os.path.join(os.fspath(tmp_path), "root")
    server = CliServer("--root-dir", root, "--agent", "extra-agent", "--code-interpreter", "ci-2")
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.wm)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.router)
        assert requests.get(server.wm + "/health", timeout=5).json() == {"status": "healthy"}
        created = requests.post(
            server.wm + "/v1/code-interpreter", json={"name": "ci-2", "namespace": NS}, timeout=5
        )
        assert created.status_code == 200
        response = requests.post(server.ci(""), timeout=5)  # bootstrap a session via the router
        sid = response.headers[SESSION_HEADER]
        result = requests.post(
            server.ci("api/execute"),
            json={
                "command": [
                    "bash",
                    "-c",
                    "echo hi > f.txt; sleep 60 >/dev/null 2>&1 & echo started",
                ]
            },
            headers={SESSION_HEADER: sid},
            timeout=10,
        )
        assert result.json()["stdout"] == "started\n"
        for agent in ("echo-agent", "extra-agent"):
            url = f"{server.router}/v1/namespaces/{NS}/agent-runtimes/{agent}/invocations/x"
            assert requests.post(url, json=1, timeout=5).json() == {"echo": 1, "path": "x"}
        assert len([n for n in os.listdir(root) if not n.startswith(".")]) == 2
    finally:
        code, err = server.stop()
    assert code == 0, err
    assert os.listdir(root) == []
    assert "run isolated" in err or "NOT isolated" in err
    assert "Traceback" not in err


def test_cli_temp_root_is_removed() -> None:
    server = CliServer()
    try:
        requests.post(
            server.wm + "/v1/code-interpreter", json={"name": CI, "namespace": NS}, timeout=10
        )
    finally:
        code, err = server.stop()
    assert code == 0
    match = re.search(r"workspaces under (\S+);", err)
    assert match is not None, err
    assert not os.path.exists(match.group(1))


def test_cli_sigterm_and_help() -> None:
    server = CliServer("--quiet", "--token", "tok")
    try:
        assert requests.get(server.router + "/health/ready", timeout=5).status_code == 200
        assert requests.get(server.ci("api/files/x"), timeout=5).status_code == 401
    finally:
        server.proc.send_signal(signal.SIGTERM)
        _, err = server.proc.communicate(timeout=15)
    assert server.proc.returncode == 0
    assert err == ""
    out = subprocess.run(
        [sys.executable, "-m", "agentcube.local", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for option in ("--port", "--router-port", "--token", "--agent", "--code-interpreter"):
        assert option in out
    bad = subprocess.run(
        [sys.executable, "-m", "agentcube.local", "--agent", "x=http://10.1.1.1:80"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode != 0
    assert "loopback" in bad.stderr


# -- memory ---------------------------------------------------------------------------------
class _Multipart:
    """A streamed multipart body of ``size`` bytes of file content, with a known length."""

    boundary = "agentcube-test-boundary"

    def __init__(self, path: str, size: int, chunk: bytes) -> None:
        self._head = (
            f"--{self.boundary}\r\n"
            'Content-Disposition: form-data; name="path"\r\n\r\n'
            f"{path}\r\n"
            f"--{self.boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._size = size
        self._chunk = chunk

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        left = self._size
        while left > 0:
            piece = self._chunk[: min(left, len(self._chunk))]
            left -= len(piece)
            yield piece
        yield self._tail


class _PeakRss:
    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(0.002)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("size_mib", [64])
def test_big_upload_and_download_stream(size_mib: int) -> None:
    size = size_mib * MiB
    chunk = os.urandom(MiB)
    expected = hashlib.sha256()
    for _ in range(size_mib):
        expected.update(chunk)
    server = CliServer("--quiet", "--max-body-bytes", str(2 * size))
    try:
        with requests.Session() as http:
            sid = http.post(server.ci(""), timeout=10).headers[SESSION_HEADER]
            headers = {SESSION_HEADER: sid}
            content_type = {"Content-Type": f"multipart/form-data; boundary={_Multipart.boundary}"}
            # warm up both paths so lazy imports and buffers are not counted
            warm = _Multipart("warm.bin", MiB, chunk)
            assert http.post(
                server.ci("api/files"), data=warm, headers=headers | content_type, timeout=30
            ).ok
            assert len(http.get(server.ci("api/files/warm.bin"), headers=headers).content) == MiB
            baseline = psutil.Process(server.proc.pid).memory_info().rss

            with _PeakRss(server.proc.pid) as upload_rss:
                response = http.post(
                    server.ci("api/files"),
                    data=_Multipart("big.bin", size, chunk),
                    headers=headers | content_type,
                    timeout=120,
                )
            assert response.status_code == 200, response.text
            assert response.json()["size"] == size

            digest = hashlib.sha256()
            received = 0
            with _PeakRss(server.proc.pid) as download_rss:
                with http.get(
                    server.ci("api/files/big.bin"),
                    headers=headers | {"Accept-Encoding": "identity"},
                    stream=True,
                    timeout=120,
                ) as download:
                    assert download.status_code == 200
                    assert download.headers["Content-Length"] == str(size)
                    for piece in download.iter_content(MiB):
                        digest.update(piece)
                        received += len(piece)
            assert received == size
            assert digest.hexdigest() == expected.hexdigest()
    finally:
        code, _ = server.stop()
    assert code == 0
    limit = 24 * MiB  # far below the 64 MiB moved each way
    assert upload_rss.peak - baseline < limit, (upload_rss.peak - baseline) / MiB
    assert download_rss.peak - baseline < limit, (download_rss.peak - baseline) / MiB
