"""Per call, this SDK against upstream's SDK (``--upstream DIR``) and against hand-written
requests with upstream's wire bodies, each in a process of its own against the same server:
``execute_command("true")``, ``write_file`` of 1 KiB, a lifecycle (create + execute + stop) and
``invoke``. Blocks of calls alternate between the contenders (the order reversed every round);
a figure is the median over rounds of the ratio of the two blocks' medians. Then downloads of
a large file of random bytes and of text, against raw requests that ask for gzip (what the SDK
asked for before it asked only for text).

    .venv/bin/python benchmarks/bench_versus.py --quick --upstream /tmp/upstream/sdk-python
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import IO, Any

import _raw
from _harness import (
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

VERSUS_GOAL = 1.05  # SDK / upstream's SDK, per call
DOWNLOAD_BINARY_GOAL = 0.2  # SDK / requests asking for gzip: at least 5 x faster
DOWNLOAD_TEXT_GOAL = 1.05  # no slower: the same request (gzip asked for text), within the noise
OPS = {
    'execute_command("true")': "execute",
    "write_file of 1 KiB": "write",
    "lifecycle: create + execute_command + stop": "lifecycle",
    "invoke": "invoke",
}


class _Contender:
    """A ``_contender.py`` process: blocks of calls on request."""

    def __init__(self, who: str, server: ServerProcess, work: str, upstream: str | None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if upstream is not None:
            env["PYTHONPATH"] = upstream  # its agentcube before this checkout's (installed)
        self.process = subprocess.Popen(
            [
                sys.executable,
                os.path.join(HERE, "_contender.py"),
                who,
                server.workload_manager_url,
                server.router_url,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # upstream logs at INFO to stderr
            env=env,
            cwd=work,
            text=True,
        )
        if self._line() != "ready":
            raise RuntimeError(f"the {who} contender did not start")

    def _line(self) -> str:
        out: IO[str] | None = self.process.stdout
        assert out is not None
        return out.readline().strip()

    def block(self, op: str, n: int) -> tuple[list[float], list[float]]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{op} {n}\n")
        self.process.stdin.flush()
        line = self._line()
        if not line:
            raise RuntimeError(f"a contender failed during {op}")
        wall, cpu = json.loads(line)
        return wall, cpu

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.write("quit 0\n")
            self.process.stdin.close()
        self.process.wait(timeout=60)


def bench_versus(
    server: ServerProcess, s: Settings, report: Report, work: str, upstream: str | None
) -> None:
    names = ["sdk", "raw"] + (["upstream"] if upstream else [])
    block = max(10, s.calls // 20)
    rounds = 3 * s.rounds
    section(
        f"per call against {', '.join(names[1:])}, each in its own process "
        f"({rounds} rounds of blocks of {block} calls)"
    )
    contenders = {
        name: _Contender(name, server, work, upstream if name == "upstream" else None)
        for name in names
    }
    try:
        for label, op in OPS.items():
            n = max(5, block // 3) if op == "lifecycle" else block
            for c in contenders.values():  # warm-up
                c.block(op, n)
            medians: dict[str, list[float]] = {name: [] for name in names}
            cpus: dict[str, list[float]] = {name: [] for name in names}
            for _, name in abba(rounds, names):
                wall, cpu = contenders[name].block(op, n)
                medians[name].append(median(wall))
                cpus[name].extend(cpu)
            for other in names[1:]:
                ratio = median([a / b for a, b in zip(medians["sdk"], medians[other], strict=True)])
                who = "upstream's SDK" if other == "upstream" else "raw requests"
                goal = VERSUS_GOAL if other == "upstream" else None
                report.add(
                    f"{label} (SDK / {who}, paired blocks)",
                    f"{ratio:.2f} ({median(medians['sdk']) * 1e3:.2f} ms / "
                    f"{median(medians[other]) * 1e3:.2f} ms; client CPU "
                    f"{median(cpus['sdk']) * 1e6:.0f} us / {median(cpus[other]) * 1e6:.0f} us)",
                    f"<= {goal}" if goal else "informational",
                    ratio <= goal if goal else None,
                )
    finally:
        for c in contenders.values():
            c.close()
    left = server.sessions()
    report.add(
        "per call against upstream and raw: sessions left on the server",
        str(len(left)),
        "0",
        not left,
        exact=True,
    )


def bench_downloads(server: ServerProcess, s: Settings, report: Report, work: str) -> None:
    size = 100 * 1000 * 1000 if s.throughput_mib >= 64 else 8 * MIB
    reps = 3
    section(f"downloads of {size / 1e6:.0f} MB, SDK / raw requests asking for gzip ({reps} each)")
    client = CodeInterpreterClient(
        workload_manager_url=server.workload_manager_url, router_url=server.router_url
    )
    http = _raw.new_session()  # requests asks for gzip, as the SDK did for every download
    base = server.router_url + _raw.prefix("code-interpreters", INTERPRETER)
    sid = client.session_id
    assert sid is not None
    words = (
        "import os, random; random.seed(7); "
        "w = [''.join(random.choice('etaoinshrdlu') for _ in range(random.randint(2, 9))) "
        "for _ in range(5000)]; "
        f"open('big.txt', 'w').write(' '.join(random.choice(w) for _ in range({size} // 6))"
        f"[:{size}]); open('big.bin', 'wb').write(os.urandom({size}))"
    )
    try:
        client.run_code("python", words, timeout=300)
        dest = os.path.join(work, "download.out")
        for name, kind, goal in (
            ("big.bin", "random bytes", DOWNLOAD_BINARY_GOAL),
            ("big.txt", "text", DOWNLOAD_TEXT_GOAL),
        ):
            times: dict[str, list[float]] = {"sdk": [], "raw": []}
            for _, who in abba(reps * 2, ["sdk", "raw"]):
                started = time.perf_counter()
                if who == "sdk":
                    client.download_file(name, dest)
                else:
                    _raw.download(http, base, sid, name, dest)
                times[who].append(time.perf_counter() - started)
                if os.path.getsize(dest) != size:
                    raise RuntimeError(f"{who} downloaded {os.path.getsize(dest)} bytes")
            ratio = median(times["sdk"]) / median(times["raw"])
            report.add(
                f"download {size / 1e6:.0f} MB of {kind} (SDK / raw requests asking for gzip)",
                f"{ratio:.3f} ({median(times['sdk']):.2f} s / {median(times['raw']):.2f} s)",
                f"<= {goal}",
                ratio <= goal,
            )
    finally:
        client.stop()
        http.close()


def _versus(b: Any) -> None:
    bench_versus(b.server, b.s, b.report, b.work, b.upstream)


VERSUS = Step(_versus)
DOWNLOADS = Step(lambda b: bench_downloads(b.server, b.s, b.report, b.work))
STEPS = [VERSUS, DOWNLOADS]

if __name__ == "__main__":
    run_alone(__doc__, STEPS, "bench_versus.py", "per call against upstream and raw")
