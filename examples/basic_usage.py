"""Code interpreter: run code and commands, move files, then delete the sandbox.

With WORKLOAD_MANAGER_URL / ROUTER_URL set, this talks to that AgentCube; with neither set, it
starts the local AgentCube (agentcube.local) in this process and runs against it.
"""

from __future__ import annotations

import os
import tempfile

from agentcube import CodeInterpreterClient, CommandExecutionError
from agentcube.local import configured_or_local


def main() -> None:
    with configured_or_local(), CodeInterpreterClient() as ci:
        print(f"session {ci.session_id}")
        print(
            "python ->",
            ci.run_code("python", "import sys; print(sum(range(10)), sys.version_info[0])").strip(),
        )
        print(
            "bash   ->", ci.run_code("bash", 'for i in 1 2 3; do printf "$i "; done; echo').strip()
        )
        print(
            "command ->", ci.execute_command("echo hello from $(pwd | wc -c) chars of cwd").strip()
        )

        ci.write_file("name,score\nada,36\nalan,41\n", "data/scores.csv")
        total = ci.run_code(
            "python",
            "import csv\nrows = list(csv.DictReader(open('data/scores.csv')))\n"
            "print(sum(int(r['score']) for r in rows))",
        )
        print("sum of scores ->", total.strip())

        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, "blob.bin")
            with open(local, "wb") as f:
                f.write(os.urandom(1 << 20))
            ci.upload_file(local, "blob.bin")
            ci.download_file("blob.bin", local + ".back")
            with open(local, "rb") as a, open(local + ".back", "rb") as b:
                print("1 MiB round trip identical ->", a.read() == b.read())

        print("files ->", sorted(f["name"] for f in ci.list_files(".")))
        try:
            ci.execute_command("echo oops >&2; exit 3")
        except CommandExecutionError as exc:
            print(f"non-zero exit -> exit_code={exc.exit_code} stderr={exc.stderr.strip()!r}")
    print(f"stopped: the sandbox of session {ci.session_id} is deleted")


if __name__ == "__main__":
    main()
