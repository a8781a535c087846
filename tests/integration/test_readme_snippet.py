"""The README's first snippet runs as written, against the local AgentCube it starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_first_snippet_runs_as_written() -> None:
    snippet = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert snippet is not None
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WORKLOAD_MANAGER_URL", "ROUTER_URL") and not k.startswith("PYTHONWARN")
    }
    done = subprocess.run(
        [sys.executable, "-c", snippet.group(1)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line]
    assert lines[:2] == ["42", "hello"], done.stdout
    assert "'prompt': 'hello'" in lines[2], done.stdout
    # Nothing left behind, so nothing to report at exit.
    assert "still running at exit" not in done.stderr
