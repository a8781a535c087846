"""``python -m agentcube.local`` / ``agentcube-local``: serve a local AgentCube until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from . import INSTALL_HINT

_DESCRIPTION = """\
Run a local AgentCube (WorkloadManager + Router) on 127.0.0.1 for development and tests.
Code sent to its code interpreters runs directly on this machine, as you, with no
isolation: this is not a security boundary.

On start it prints the two `export` lines to point the SDK at it, then serves until
Ctrl-C or SIGTERM, deletes every session (killing their processes and removing their
workspaces) and exits 0."""

_EPILOG = """\
templates:
  Without --agent, the only AgentRuntime template is the built-in echo agent
  "echo-agent"; each --agent ADDS a template to that set (and --agent echo-agent=URL
  replaces the echo agent). Likewise each --code-interpreter adds a CodeInterpreter
  template to the default "my-interpreter". Templates exist in every namespace.

example:
  eval "$(python -m agentcube.local --port 8080 | head -n 2)"   # in another shell, or:
  python -m agentcube.local --agent my-agent=http://127.0.0.1:9000 --token s3cret"""


def _parse_agent(value: str) -> tuple[str, str | None]:
    name, sep, url = value.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"invalid --agent {value!r}: expected NAME or NAME=URL")
    return name, (url if sep else None)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agentcube.local",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="WorkloadManager port (default: 8080; 0 = any)"
    )
    parser.add_argument(
        "--router-port",
        type=int,
        default=None,
        help="Router port (default: --port + 1, or any free port when --port is 0)",
    )
    parser.add_argument(
        "--token", default=None, help="require 'Authorization: Bearer TOKEN' on every request"
    )
    parser.add_argument(
        "--agent",
        action="append",
        default=[],
        type=_parse_agent,
        metavar="NAME[=URL]",
        help="add an AgentRuntime template: NAME alone is an echo agent, NAME=URL forwards "
        "to your agent server at URL (loopback http only); repeatable",
    )
    parser.add_argument(
        "--code-interpreter",
        action="append",
        default=[],
        metavar="NAME",
        help="add a CodeInterpreter template name; repeatable",
    )
    parser.add_argument(
        "--root-dir",
        default=None,
        help="directory for session workspaces (default: a temp dir removed on exit)",
    )
    parser.add_argument(
        "--ttl", type=float, default=8 * 3600.0, help="default session TTL in seconds (8h)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=15 * 60.0,
        help="delete sessions with no Router traffic for this many seconds (900)",
    )
    parser.add_argument(
        "--max-upload-bytes",
        type=int,
        default=1024**3,
        help="largest file upload accepted (default: 1 GiB)",
    )
    parser.add_argument("--quiet", action="store_true", help="no startup warning")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    try:
        from ._server import LocalAgentCube
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 1

    level = (
        logging.WARNING
        if args.verbose == 0
        else logging.INFO
        if args.verbose == 1
        else logging.DEBUG
    )
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    router_port = args.router_port
    if router_port is None:
        router_port = args.port + 1 if args.port else 0
    agents: dict[str, str | None] = {"echo-agent": None}
    agents.update(dict(args.agent))
    try:
        cube = LocalAgentCube(
            host=args.host,
            port=args.port,
            router_port=router_port,
            token=args.token,
            code_interpreters=("my-interpreter", *args.code_interpreter),
            agents=agents,
            root_dir=args.root_dir,
            default_ttl=args.ttl if args.ttl > 0 else None,
            idle_timeout=args.idle_timeout if args.idle_timeout > 0 else None,
            max_upload_bytes=args.max_upload_bytes,
            quiet=args.quiet,
        )
    except ValueError as exc:
        print(f"agentcube.local: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        try:
            cube.start()
        except OSError as exc:
            print(f"agentcube.local: cannot start: {exc}", file=sys.stderr)
            return 1
        print(f"export WORKLOAD_MANAGER_URL={cube.workload_manager_url}")
        print(f"export ROUTER_URL={cube.router_url}", flush=True)
        if not args.quiet:
            print(
                f"agentcube.local: workspaces under {cube.root_dir}; Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
        while not stop.wait(0.5):
            pass
    finally:
        cube.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
