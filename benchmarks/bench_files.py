"""File transfers: client and server memory of uploads and downloads (each in a fresh client
process), throughput against raw ``requests``, and no partial file when a download fails
(connection dropped; server killed half-way).

    .venv/bin/python benchmarks/bench_files.py --quick
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import _raw
from _harness import (
    AFTER,
    HERE,
    INTERPRETER,
    MIB,
    Report,
    Settings,
    Step,
    abba,
    median,
    run_alone,
    section,
)
from _server import ServerProcess

from agentcube import CodeInterpreterClient


def _make_file(path: str, size: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        for _ in range(size // MIB):
            f.write(block)


class RssWatcher:
    """Peak RSS growth of another process (the server): VmHWM reset through clear_refs, with
    5 ms sampling of VmRSS as the fallback when the peak cannot be reset."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self._peak = 0
        self._thread: threading.Thread | None = None
        self.before = 0
        self._hwm_reset = False

    def _status(self, field: str) -> int:
        with open(f"/proc/{self._pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # KiB
        return 0

    def __enter__(self) -> RssWatcher:
        self.before = self._status("VmRSS")
        try:
            with open(f"/proc/{self._pid}/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self._peak = self.before
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            with contextlib.suppress(OSError):
                self._peak = max(self._peak, self._status("VmRSS"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        if self._hwm_reset:
            with contextlib.suppress(OSError):
                self._peak = max(self._peak, self._status("VmHWM"))

    @property
    def growth_kib(self) -> int:
        return self._peak - self.before


def _probe(
    op: str, wm_url: str, router_url: str, sid: str, local: str, remote: str
) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "_memprobe.py"),
            op,
            wm_url,
            router_url,
            sid,
            local,
            remote,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory probe {op} failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_files(server: ServerProcess, s: Settings, report: Report, work: str) -> None:
    size = s.memory_mib * MIB
    section(f"file memory ({s.memory_mib} MiB, each transfer in a fresh client process)")
    big = os.path.join(work, "big.bin")
    _make_file(big, size)
    ci = CodeInterpreterClient(
        workload_manager_url=server.workload_manager_url, router_url=server.router_url
    )
    try:
        sid = ci.session_id
        assert sid is not None
        rows = [
            ("sdk-upload", "upload_file", big, "big.bin"),
            ("sdk-download", "download_file", os.path.join(work, "down-sdk.bin"), "big.bin"),
            ("raw-upload", "raw requests, streamed", big, "raw.bin"),
            (
                "raw-download",
                "raw requests, streamed",
                os.path.join(work, "down-raw.bin"),
                "big.bin",
            ),
            # Shows that the probe does see a body held in memory.
            ("raw-upload-in-memory", "raw requests files= (body in memory)", big, "mem.bin"),
        ]
        for op, label, local, remote in rows:
            with RssWatcher(server.pid) as watch:
                result = _probe(
                    op, server.workload_manager_url, server.router_url, sid, local, remote
                )
            if result["error"]:
                raise RuntimeError(f"{op} failed: {result['error']}")
            client_mib = result["growth_kib"] / 1024
            server_mib = watch.growth_kib / 1024
            rate = s.memory_mib / result["seconds"]
            if op.startswith("sdk"):
                what = "upload" if op.endswith("upload") else "download"
                report.add(
                    f"{what} memory: client peak RSS growth, {label} of {s.memory_mib} MiB",
                    f"{client_mib:.1f} MiB ({rate:.0f} MiB/s)",
                    "<= 32 MiB",
                    client_mib <= 32,
                    exact=True,
                )
            else:
                report.add(
                    f"{op} memory: client peak RSS growth, {label}",
                    f"{client_mib:.1f} MiB",
                    "informational",
                    None,
                )
            if op in ("sdk-upload", "sdk-download"):
                report.add(
                    f"{op.split('-')[1]} memory: server peak RSS growth",
                    f"{server_mib:.1f} MiB",
                    "<= 32 MiB",
                    server_mib <= 32,
                    exact=True,
                )
            if op.endswith("download"):
                same = _same_file(big, local)
                if not same:
                    report.add(f"{op}: file arrived intact", "no", "yes", False, exact=True)
                os.unlink(local)
        ci.execute_command(["rm", "-f", "raw.bin", "mem.bin"])
        bench_dropped_download(server, report, work, ci)
        bench_throughput(server, s, report, work, ci)
    finally:
        ci.stop()


def _same_file(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(MIB), fb.read(MIB)
            if x != y:
                return False
            if not x:
                return True


def bench_throughput(
    server: ServerProcess, s: Settings, report: Report, work: str, ci: CodeInterpreterClient
) -> None:
    """Throughput of the SDK against raw requests sending the same bytes.

    A download is one request at any size. An upload of up to 8 MiB is one request for both;
    a larger one is, for the SDK, parts under the sandbox's 32 MiB cap joined in the sandbox
    (a copy of the whole file there), while raw requests sends it in one request, which the
    bench server accepts but the real sandbox refuses over 32 MiB: that pair is informational.
    """
    size = s.throughput_mib * MIB
    one = 8  # MiB: the SDK's largest single-request upload
    section(f"file throughput ({s.throughput_mib} MiB, {s.throughput_reps} reps each, ABBA)")
    local = os.path.join(work, "tp.bin")
    small = os.path.join(work, "tp-one.bin")
    _make_file(local, size)
    _make_file(small, one * MIB)
    sid = ci.session_id
    assert sid is not None
    http = _raw.new_session()
    base = server.router_url + _raw.prefix("code-interpreters", INTERPRETER)
    dest = os.path.join(work, "tp-down.bin")
    ops: dict[str, tuple[Callable[[], None], int]] = {
        "sdk-one": (lambda: ci.upload_file(small, "tp-one.bin"), one),
        "raw-one": (lambda: _raw.upload(http, base, sid, small, "tp-one.bin"), one),
        "sdk-up": (lambda: ci.upload_file(local, "tp.bin"), s.throughput_mib),
        "raw-up": (lambda: _raw.upload(http, base, sid, local, "tp.bin"), s.throughput_mib),
        "sdk-down": (lambda: ci.download_file("tp.bin", dest), s.throughput_mib),
        "raw-down": (lambda: _raw.download(http, base, sid, "tp.bin", dest), s.throughput_mib),
    }
    rates: dict[str, list[float]] = {k: [] for k in ops}
    try:
        ops["sdk-up"][0]()  # warm-up, and the file to download
        ops["raw-down"][0]()
        os.unlink(dest)
        for direction in ("one", "up", "down"):
            reps = s.throughput_reps * (4 if direction == "one" else 1)
            for _, which in abba(reps, ("sdk", "raw")):
                key = f"{which}-{direction}"
                operation, mib = ops[key]
                os.sync()  # no transfer pays for the previous one's dirty pages
                started = time.perf_counter()
                operation()
                rates[key].append(mib / (time.perf_counter() - started))
                if direction == "down":
                    os.unlink(dest)
    finally:
        http.close()
        os.unlink(local)
        os.unlink(small)
    rows = (
        ("one", f"upload throughput, one request each ({one} MiB, SDK / raw)", True),
        (
            "up",
            f"upload throughput, {s.throughput_mib} MiB: SDK in parts joined in the sandbox / "
            "raw in one request (over the real 32 MiB cap)",
            False,
        ),
        ("down", f"download throughput (SDK / raw streamed, {s.throughput_mib} MiB)", True),
    )
    for direction, name, has_goal in rows:
        sdk, raw = median(rates[f"sdk-{direction}"]), median(rates[f"raw-{direction}"])
        ratio = sdk / raw
        report.add(
            name,
            f"{ratio:.2f} ({sdk:.0f} / {raw:.0f} MiB/s)",
            ">= 0.8" if has_goal else "informational",
            ratio >= 0.8 if has_goal else None,
        )


def _partial_size(directory: str) -> int:
    """Size of the biggest download in progress (the SDK's temp file) in ``directory``."""
    biggest = 0
    for entry in os.scandir(directory):
        if entry.name.startswith(".agentcube-download-"):
            with contextlib.suppress(FileNotFoundError):  # renamed or removed meanwhile
                biggest = max(biggest, entry.stat().st_size)
    return biggest


def bench_broken_download(s: Settings, report: Report, work: str) -> None:
    section("a download broken half-way (server killed) leaves no partial file")
    root = os.path.join(work, "server-killed")
    os.makedirs(root)
    size = s.memory_mib * MIB
    outcome = "not measured: the download ended before the kill, 3 times"
    met, broken = False, False
    for attempt in range(3):
        server = ServerProcess(root)
        try:
            ci = CodeInterpreterClient(
                workload_manager_url=server.workload_manager_url, router_url=server.router_url
            )
            sid = ci.session_id
            assert sid is not None
            ci.execute_command(f"head -c {size} /dev/urandom > big.bin")
            ci.close()
            ci.detach()  # the session ends with the server this test kills: nothing to stop
            dest_dir = os.path.join(work, f"broken-{attempt}")
            os.makedirs(dest_dir)
            dest = os.path.join(dest_dir, "target.bin")
            with open(dest, "wb") as f:
                f.write(b"the previous content")
            probe = subprocess.Popen(
                [
                    sys.executable,
                    os.path.join(HERE, "_memprobe.py"),
                    "sdk-download",
                    server.workload_manager_url,
                    server.router_url,
                    sid,
                    dest,
                    "big.bin",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            seen_partial = 0
            deadline = time.monotonic() + 120
            while probe.poll() is None and time.monotonic() < deadline:
                biggest = _partial_size(dest_dir)
                if biggest > size // 2:
                    seen_partial = biggest
                    server.kill()
                    break
                time.sleep(0.0005)
            stdout, _ = probe.communicate(timeout=120)
            result = json.loads(stdout.strip().splitlines()[-1])
            left = sorted(os.listdir(dest_dir))
            with open(dest, "rb") as f:
                kept = f.read() == b"the previous content"
            if result["error"] is None:
                continue  # the download finished before the kill: try again
            broken = True
            met = left == ["target.bin"] and kept
            outcome = (
                f"killed at {seen_partial / MIB:.0f} of {s.memory_mib} MiB; "
                f"{result['error'].split(':')[0]}; directory holds {left}; previous file "
                + ("untouched" if kept else "CHANGED")
            )
            break
        finally:
            server.kill()
            shutil.rmtree(root, ignore_errors=True)
            os.makedirs(root, exist_ok=True)
    report.add(
        "failed download (server killed half-way) leaves no partial file",
        outcome,
        "no partial file",
        met,
        exact=broken,  # could not break it in time: not the SDK's failure
    )


def bench_dropped_download(
    server: ServerProcess, report: Report, work: str, ci: CodeInterpreterClient
) -> None:
    """The same check, deterministic: every attempt (retries included) loses its connection."""
    dest_dir = os.path.join(work, "dropped")
    os.makedirs(dest_dir)
    dest = os.path.join(dest_dir, "target.bin")
    with open(dest, "wb") as f:
        f.write(b"the previous content")
    server.call("fault", method="GET", path="*/api/files/*", drop=True, times=3)
    try:
        ci.download_file("big.bin", dest)
        error = "none"
    except Exception as exc:
        error = type(exc).__name__
    left = sorted(os.listdir(dest_dir))
    with open(dest, "rb") as f:
        kept = f.read() == b"the previous content"
    report.add(
        "failed download (connection dropped, 3 attempts) leaves no partial file",
        f"{error}; directory holds {left}; previous file " + ("untouched" if kept else "CHANGED"),
        "no partial file",
        error != "none" and left == ["target.bin"] and kept,
        exact=True,
    )


MEMORY = Step(lambda b: bench_files(b.server, b.s, b.report, b.work))
BROKEN_DOWNLOAD = Step(lambda b: bench_broken_download(b.s, b.report, b.work), AFTER)
STEPS = [MEMORY, BROKEN_DOWNLOAD]

if __name__ == "__main__":
    run_alone(__doc__, STEPS, "bench_files.py", "file transfers")
