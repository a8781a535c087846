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
        session_id = ci.session_id
        print(f"session {session_id}")
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
            # 40 MiB: over the sandbox's 32 MiB body cap, so it goes in parts.
            local = os.path.join(tmp, "blob.bin")
            with open(local, "wb") as f:
                f.write(os.urandom(40 << 20))
            ci.upload_file(local, "blob.bin")
            ci.download_file("blob.bin", os.path.join(tmp, "back", "blob.bin"))
            with open(local, "rb") as a, open(os.path.join(tmp, "back", "blob.bin"), "rb") as b:
                print("40 MiB round trip identical ->", a.read() == b.read())

        ci.write_file("#!/bin/sh\necho hello from a script\n", "bin/hello.sh", mode="0755")
        print("script ->", ci.execute_command(["./bin/hello.sh"]).strip())

        # A long-lived process: background=True returns at once (a plain "cmd &" would keep
        # the call open until the process exits).
        server = ci.execute_command("python3 -m http.server 8123 --bind 127.0.0.1", background=True)
        print(f"background server pid {server.pid}, output in {server.log_file}")
        ci.execute_command(f"kill {server.pid}")

        print("files ->", sorted(f["name"] for f in ci.list_files(".")))
        try:
            ci.execute_command("echo oops >&2; exit 3")
        except CommandExecutionError as exc:
            print(f"non-zero exit -> exit_code={exc.exit_code} stderr={exc.stderr.strip()!r}")
    print(f"stopped: the sandbox of session {session_id} is deleted (session_id={ci.session_id})")


if __name__ == "__main__":
    main()
