"""Progress of long transfers: ``on_progress(done_bytes, total_bytes)`` with tqdm, or without.

With WORKLOAD_MANAGER_URL / ROUTER_URL set, this talks to that AgentCube; with neither set, it
starts the local AgentCube (agentcube.local) in this process and runs against it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable

from agentcube import CodeInterpreterClient
from agentcube.local import configured_or_local


def progress_bar(label: str) -> Callable[[int, int | None], None]:
    """A callback for ``on_progress``: a tqdm bar when tqdm is installed, else a line."""
    try:
        from tqdm import tqdm
    except ImportError:

        def line(done: int, total: int | None) -> None:
            end = "\n" if done == total else "\r"
            print(f"{label}: {done >> 20} / {(total or 0) >> 20} MiB", end=end, file=sys.stderr)

        return line
    bar = tqdm(desc=label, unit="B", unit_scale=True)

    def update(done: int, total: int | None) -> None:
        bar.total = total
        bar.update(done - bar.n)  # tqdm counts increments; the SDK reports the running total
        if done == total:
            bar.close()

    return update


def main() -> None:
    with configured_or_local(), CodeInterpreterClient() as ci, tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "big.bin")
        with open(local, "wb") as f:
            f.write(os.urandom(24 * 1024 * 1024))
        ci.upload_file(local, "big.bin", on_progress=progress_bar("upload"))
        ci.download_file("big.bin", local + ".back", on_progress=progress_bar("download"))
        assert os.path.getsize(local + ".back") == 24 * 1024 * 1024
        head = ci.read_file("big.bin", max_bytes=32 * 1024 * 1024)[:4]
        print("round trip ok; first bytes", head.hex())


if __name__ == "__main__":
    main()
