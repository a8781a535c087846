"""Run one file transfer in a fresh process and print its peak RSS growth as JSON.

    python benchmarks/_memprobe.py OP WM_URL ROUTER_URL SESSION_ID LOCAL REMOTE

OP is ``sdk-upload``, ``sdk-download``, ``raw-upload``, ``raw-download`` or
``raw-upload-in-memory``. The process warms up first (imports, connection, one small transfer
of the same kind), then resets the kernel's peak-RSS mark (``/proc/self/clear_refs``) and
reads it after the transfer: peak minus the RSS before is what the transfer itself cost.
A transfer that fails prints its error in the JSON (the benchmark breaks a download on
purpose to check that no partial file is left).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import _raw

from agentcube import CodeInterpreterClient


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _start() -> tuple[int, bool]:
    """The RSS now, after resetting the kernel's peak-RSS mark to it (Linux >= 4.0), so that
    the peak read afterwards is the transfer's own; else the lifetime peak (ru_maxrss)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmRSS"), True
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False


def _peak_kib(reset: bool) -> int:
    if reset:
        return _status_kib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main(argv: list[str]) -> int:
    op, wm_url, router_url, session_id, local, remote = argv
    warm_local = local + ".warm"
    ci = CodeInterpreterClient(
        session_id=session_id, workload_manager_url=wm_url, router_url=router_url
    )
    http = _raw.new_session()
    base = router_url + _raw.prefix("code-interpreters", "my-interpreter")
    try:
        # Warm up: same code path, 64 KiB.
        if op.endswith("upload") or op.endswith("in-memory"):
            with open(warm_local, "wb") as f:
                f.write(os.urandom(64 * 1024))
            if op.startswith("sdk"):
                ci.upload_file(warm_local, remote + ".warm")
            else:
                _raw.upload(http, base, session_id, warm_local, remote + ".warm")
        else:
            ci.write_file(os.urandom(64 * 1024), remote + ".warm")
            if op.startswith("sdk"):
                ci.download_file(remote + ".warm", warm_local)
            else:
                _raw.download(http, base, session_id, remote + ".warm", warm_local)
        os.unlink(warm_local)

        before, reset = _start()
        started = time.perf_counter()
        error = None
        try:
            if op == "sdk-upload":
                ci.upload_file(local, remote)
            elif op == "sdk-download":
                ci.download_file(remote, local)
            elif op == "raw-upload":
                _raw.upload(http, base, session_id, local, remote)
            elif op == "raw-upload-in-memory":
                _raw.upload_in_memory(http, base, session_id, local, remote)
            elif op == "raw-download":
                _raw.download(http, base, session_id, remote, local)
            else:
                raise SystemExit(f"unknown op {op!r}")
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        after = _peak_kib(reset)
    finally:
        ci.close()  # attached: only close connections, the session belongs to the benchmark
        http.close()
    print(
        json.dumps(
            {"growth_kib": after - before, "before_kib": before, "seconds": seconds, "error": error}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
