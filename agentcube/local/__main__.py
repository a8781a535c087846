"""``python -m agentcube.local`` / ``agentcube-local``: serve a local AgentCube until Ctrl-C."""

from __future__ import annotations

import argparse
import errno
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from . import INSTALL_HINT
from ._kinds import KINDS, LocalKind

_DESCRIPTION = """\
Run a local AgentCube (WorkloadManager + Router) on 127.0.0.1 for development and tests.
On Linux every code-interpreter session is a sandbox of its own, as a pod is: its own root
filesystem (this machine's system directories read-only under a writable layer that ends
with the session), processes, network (none but its own loopback) and limits (512 MiB,
0.5 CPU by default). Where the kernel refuses that (--isolation auto), sessions run
unisolated, as you, and the banner says so.

On start it prints the two `export` lines to point the SDK at it, then serves until
Ctrl-C or SIGTERM, deletes every session (killing their processes and removing their
workspaces) and exits 0."""

_EPILOG = """\
sandboxes (--isolation auto or namespaces):
  --workspace [NAME=]DIR   the workspace inside, /root by default as in the real image; / makes
                           absolute paths name the sandbox's own (LangChain Deep Agents)
  --network [NAME=]host    this machine's network instead of none (loopback only); a session
                           can then reach every service of this machine
  --memory, --cpus, --pids, --disk [NAME=]VALUE   limits (sizes take K, M, G, Ki, Mi, Gi)
  NAME= applies the option to one template; without it, to every template.

session lifetime:
  As in AgentCube there is no per-request TTL: a session ends --max-session-duration after
  it was created or --session-timeout after its last Router request, whichever comes first
  (checked every --gc-interval seconds), or when it is deleted.

templates:
  Without --agent, the only AgentRuntime template is the built-in echo agent
  "echo-agent"; each --agent ADDS a template to that set (and --agent echo-agent=URL
  replaces the echo agent). Likewise each --code-interpreter adds a CodeInterpreter
  template to the default "my-interpreter". Templates exist in every namespace.

examples:
  agentcube-local --port 8080 &        # serve in the background (Router on 8081), then:
  export WORKLOAD_MANAGER_URL=http://127.0.0.1:8080 ROUTER_URL=http://127.0.0.1:8081
  agentcube-local sessions --port 8080 # which sessions it holds
  kill %1                              # stop it: every session is deleted
  agentcube-local --agent my-agent=http://127.0.0.1:9000 --token s3cret

  (python -m agentcube.local works the same.)"""

_PROG = "agentcube-local"


def _template_parser(kind: LocalKind) -> Callable[[str], tuple[str, str | None]]:
    """How the CLI reads one ``--<kind option>``: NAME, or NAME=URL for a kind that forwards."""

    def parse(value: str) -> tuple[str, str | None]:
        if not kind.takes_url:
            return value, None
        name, sep, url = value.partition("=")
        if not name:
            raise argparse.ArgumentTypeError(
                f"invalid --{kind.cli_option} {value!r}: expected NAME or NAME=URL"
            )
        return name, (url if sep else None)

    return parse


def _offered_kinds() -> list[tuple[str, LocalKind]]:
    """``(LocalAgentCube argument, kind)`` for each kind users name templates of, ordered by
    CLI option."""
    offered = [(kind.cube_argument, kind) for kind in KINDS if kind.cube_argument is not None]
    return sorted(offered, key=lambda pair: pair[1].cli_option)


def _parse_lifetime(value: str) -> tuple[str | None, float | None]:
    name, sep, duration = value.rpartition("=")
    if sep and not name:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected [NAME=]DURATION")
    try:
        seconds = float(duration)
    except ValueError:
        try:
            from ._go.stdlib import parse_duration

            seconds = parse_duration(duration) / 1e9
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"invalid duration {duration!r}: {exc}") from None
    if seconds < 0 or seconds != seconds:
        raise argparse.ArgumentTypeError(f"invalid duration {duration!r}: must not be negative")
    return (name if sep else None), (seconds or None)


_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1 << 10, "mi": 1 << 20,
          "gi": 1 << 30}  # fmt: skip


def _size(text: str) -> int:
    """``512Mi``, ``1G``, ``1048576``: bytes."""
    number = text.rstrip("KkMmGgIi")
    unit = text[len(number) :].lower()
    if unit not in _UNITS:
        raise ValueError(text)
    return int(float(number) * _UNITS[unit])


def _per_template(parse: Callable[[str], Any]) -> Callable[[str], tuple[str, Any]]:
    """``[NAME=]VALUE`` -> (NAME or "*", parsed VALUE)."""

    def parse_option(value: str) -> tuple[str, Any]:
        name, sep, raw = value.rpartition("=")
        if sep and not name:
            raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected [NAME=]VALUE")
        try:
            return (name if sep else "*"), parse(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {raw!r}") from None

    return parse_option


def _sandbox_options(args: argparse.Namespace) -> dict[str, Any]:
    """LocalAgentCube's ``workspaces``, ``networks`` and ``limits`` from the CLI options."""
    from ._sandbox.isolation import Limits

    per_template: dict[str, dict[str, Any]] = {}
    for option in ("memory", "cpus", "pids", "disk"):
        for name, value in getattr(args, option):
            per_template.setdefault(name, {})[
                option.rstrip("s") if option == "cpus" else option
            ] = value
    shared = per_template.pop("*", {})
    limits = {name: Limits(**{**shared, **values}) for name, values in per_template.items()}
    if shared:
        limits["*"] = Limits(**shared)
    return {
        "workspaces": dict(args.workspace),
        "networks": dict(args.network),
        "limits": limits,
    }


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
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
    for argument, kind in _offered_kinds():
        parser.add_argument(
            f"--{kind.cli_option}",
            dest=argument,
            action="append",
            default=[],
            type=_template_parser(kind),
            metavar="NAME[=URL]" if kind.takes_url else "NAME",
            help=kind.cli_help,
        )
    parser.add_argument(
        "--root-dir",
        default=None,
        help="directory for session workspaces (default: a temp dir removed on exit)",
    )
    parser.add_argument(
        "--max-session-duration",
        action="append",
        default=[],
        type=_parse_lifetime,
        metavar="[NAME=]DURATION",
        help="a session ends this long after it was created (default 8h); NAME= sets it for "
        "one template; DURATION is seconds or a Go duration (90s, 15m, 8h), 0 = never; "
        "repeatable",
    )
    parser.add_argument(
        "--session-timeout",
        action="append",
        default=[],
        type=_parse_lifetime,
        metavar="[NAME=]DURATION",
        help="a session ends after this long without Router traffic (default 15m); as "
        "--max-session-duration",
    )
    parser.add_argument(
        "--gc-interval",
        type=float,
        default=15.0,
        help="seconds between garbage-collection passes over sessions (default 15)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=32 * 1024 * 1024,
        help="PicoD's request body cap, answered with 413 (default 33554432, as PicoD)",
    )
    parser.add_argument(
        "--max-output-bytes",
        type=int,
        default=64 * 1024 * 1024,
        help="keep at most this much of a command's stdout and of its stderr (default 64 MiB; "
        "the real PicoD has no cap)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=1000,
        help="Router requests in flight before it answers 429 (default 1000)",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=30.0,
        help="seconds the Router waits for a whole request, body included (default 30)",
    )
    parser.add_argument(
        "--picod",
        default=None,
        metavar="PATH",
        help="run this PicoD binary (static, as upstream builds it) as `PATH -port N "
        "-workspace DIR`, one process per code-interpreter session, inside its sandbox, "
        "instead of the built-in code interpreter (the Router signs each request as the "
        "real Router does)",
    )
    parser.add_argument(
        "--isolation",
        choices=("auto", "namespaces", "none"),
        default="auto",
        help="auto (default): isolate sessions where the kernel allows, else run them "
        "unisolated and say so; namespaces: refuse to start without; none: never isolate",
    )
    for option, parse, metavar in (
        ("workspace", str, "[NAME=]DIR"),
        ("network", str, "[NAME=]none|host"),
        ("memory", _size, "[NAME=]SIZE"),
        ("cpus", float, "[NAME=]CPUS"),
        ("pids", int, "[NAME=]COUNT"),
        ("disk", _size, "[NAME=]SIZE"),
    ):
        parser.add_argument(
            f"--{option}",
            action="append",
            default=[],
            type=_per_template(parse),
            metavar=metavar,
            help=argparse.SUPPRESS if option not in ("workspace", "network") else
            "see 'sandboxes' below; repeatable",
        )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no startup warning")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    return parser


def _ports_in_use(host: str, port: int, router_port: int) -> str:
    """Which of the two ports another process holds, in words ("" if neither, now)."""
    import socket

    taken = []
    for number, what in ((port, "the WorkloadManager's (--port)"), (router_port, None)):
        if not number:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, number))
            except OSError:
                if what is None:
                    what = (
                        "the Router's (--router-port)"
                        if number != port + 1
                        else "the Router's (--port + 1, or --router-port)"
                    )
                taken.append(f"port {number}, {what}, is in use")
    return "; ".join(taken)


def _sessions_main(argv: list[str]) -> int:
    """``agentcube-local sessions``: list the sessions a running server holds."""
    parser = argparse.ArgumentParser(
        prog=f"{_PROG} sessions",
        description="List the sessions a running agentcube-local holds: id, kind, template, "
        "age and idle time, one line each (read from its WorkloadManager port, on loopback; "
        "not part of AgentCube's API).",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="the server's WorkloadManager port (default 8080)"
    )
    parser.add_argument("--token", default=None, help="the server's --token, if it has one")
    args = parser.parse_args(argv)
    import json
    import urllib.error
    import urllib.request

    from ._workload_manager import SESSIONS_PATH

    where = f"127.0.0.1:{args.port}"
    request = urllib.request.Request(f"http://{where}{SESSIONS_PATH}")
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            sessions = json.loads(answer.read())["sessions"]
    except urllib.error.HTTPError as exc:
        print(f"{_PROG} sessions: {where} answered HTTP {exc.code}", file=sys.stderr)
        if exc.code == 404:
            print("  (not an agentcube-local WorkloadManager port?)", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as exc:
        print(
            f"{_PROG} sessions: no agentcube-local at {where} ({exc}); pass the --port it was "
            "started with",
            file=sys.stderr,
        )
        return 1
    if not sessions:
        print("no sessions")
    for s in sessions:
        print(
            f"{s['sessionId']}  {s['kind']}  {s['template']}  "
            f"age {_duration(s['ageSeconds'])}  idle {_duration(s['idleSeconds'])}"
        )
    return 0


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sessions"]:
        return _sessions_main(argv[1:])
    args = _build_parser().parse_args(argv)
    try:
        from ._server import LocalAgentCube
        from ._store import Lifetime
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
    templates: dict[str, Any] = {
        argument: {**dict.fromkeys(kind.default_templates), **dict(getattr(args, argument))}
        for argument, kind in _offered_kinds()
    }
    defaults: dict[str, float | None] = {
        "max_session_duration": 8 * 3600.0,
        "session_timeout": 15 * 60.0,
    }
    per_template: dict[str, dict[str, float]] = {}
    for option in ("max_session_duration", "session_timeout"):
        for name, seconds in getattr(args, option):
            if name is None:
                defaults[option] = seconds
            else:
                per_template.setdefault(name, {})[option] = (
                    seconds if seconds is not None else math.inf
                )
    try:
        lifetimes = {name: Lifetime(**values) for name, values in per_template.items()}
        cube = LocalAgentCube(
            host=args.host,
            port=args.port,
            router_port=router_port,
            token=args.token,
            root_dir=args.root_dir,
            max_session_duration=defaults["max_session_duration"],
            session_timeout=defaults["session_timeout"],
            lifetimes=lifetimes,
            gc_interval=args.gc_interval,
            max_body_bytes=args.max_body_bytes,
            max_output_bytes=args.max_output_bytes,
            max_in_flight=args.max_in_flight,
            read_timeout=args.read_timeout,
            picod=args.picod,
            quiet=args.quiet,
            isolation=args.isolation,
            **_sandbox_options(args),
            **templates,
        )
    except ValueError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
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
        except (OSError, ImportError, RuntimeError) as exc:
            print(f"{_PROG}: cannot start: {exc}", file=sys.stderr)
            taken = _ports_in_use(args.host, args.port, router_port)
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE and taken:
                print(f"  {taken}; pick others, or --port 0 for free ones", file=sys.stderr)
            return 1
        print(f"export WORKLOAD_MANAGER_URL={cube.workload_manager_url}")
        print(f"export ROUTER_URL={cube.router_url}", flush=True)
        if not args.quiet:
            print(
                f"{_PROG}: workspaces under {cube.root_dir}; Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
        while not stop.wait(0.5):
            pass
        if not args.quiet:
            count = len(cube.sessions())
            print(
                f"{_PROG}: stopping: deleting {count} session(s) (their processes and workspaces)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        cube.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
