"""First use in a fresh process: the lifecycle and the common calls build no wire model."""

from __future__ import annotations

import os
import subprocess
import sys

from agentcube.local import LocalAgentCube

_PROGRAM = """
import sys
import requests  # its own imports are not ours (from 3.12: importlib.metadata, hence inspect)

before = set(sys.modules)
from agentcube import CodeInterpreterClient

with CodeInterpreterClient(workload_manager_url={wm!r}, router_url={router!r}) as client:
    assert client.execute_command("echo hi") == "hi\\n"
    client.write_file("data", "a.txt")
    assert [f["name"] for f in client.list_files(".")] == ["a.txt"]
    assert client.execute_command_result(["false"])["exit_code"] == 1
    loaded = sorted(m for m in ("pydantic", "agentcube.models", "inspect", "dataclasses")
                    if m in sys.modules and m not in before)
    assert loaded == [], loaded
    # The models are still there for whoever asks for them.
    info = client.data_plane.write_file("data", "b.txt")
    assert type(info).__name__ == "FileInfo" and info.size == 4, info
    assert client.data_plane.execute(["true"]).exit_code == 0
print("ok")
"""


def test_first_use_imports_no_pydantic(cube: LocalAgentCube) -> None:
    program = _PROGRAM.format(wm=cube.workload_manager_url, router=cube.router_url)
    env = {k: v for k, v in os.environ.items() if k not in ("WORKLOAD_MANAGER_URL", "ROUTER_URL")}
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
