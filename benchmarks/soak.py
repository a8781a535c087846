"""Soak test: many full session lifecycles against the local AgentCube while it injects faults.

    .venv/bin/python benchmarks/soak.py                     # 2,000 lifecycles, 8 threads
    .venv/bin/python benchmarks/soak.py --lifecycles 200    # the short run of .ci/run
    .venv/bin/python benchmarks/soak.py --lost-create-answers   # also lose create answers

Each lifecycle picks a kind (code interpreter or agent runtime), owned or attached, and an
ending: ``with``, ``stop()``, ``delete()``, or ``detach()`` followed by a ``delete()`` from
another client later. About ``--fault-rate`` of the control-plane and data-plane requests are
faulted by the server: 500, 503, a dropped connection (nothing done, no answer), a delay
longer than the client's read timeout, and a lost answer (the request is done, the answer is
dropped) where the SDK can recover from it (DELETE and data-plane requests). A failed
``stop()``/``delete()`` is retried later from the client object, which must still hold the
session id; a session id named only by an SDK error or warning is deleted later by a new client,
as a user would.

The server runs in a child process (``_server.py``, its own GIL), with no TTL and no idle
reaping, so nothing is cleaned up behind the SDK's back. At the end, before any sweep, every
session still on the server must be named by a client or by an SDK error or warning. The exit
code is 1 when any goal is missed: sessions left on the server, sessions the SDK forgot, SDK
calls that outlived the bound implied by the timeouts and the retry policy, errors outside the
SDK's error tree, retries that never succeeded, or an unexpected ResourceWarning.

A create whose answer is lost (``--lost-create-answers``) leaves a sandbox no client can name:
the wire contract has no way to find it again. Those are counted apart; the run then checks
that the unnamed sessions are exactly that many, and nothing else.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _server import ServerProcess

from agentcube import (
    AgentCubeError,
    AgentRuntimeClient,
    CodeInterpreterClient,
    ManagedSessionClient,
    RetryPolicy,
    StopOutcome,
)

CREATE_READ_TIMEOUT = 150.0  # creates wait out the WorkloadManager's 2-minute bound
COMMAND_TIMEOUT = 60.0  # execute_command's default; its HTTP read timeout adds 30 s
EXECUTE_MARGIN = 30.0
SLACK = 1.5  # scheduling on a loaded 2-core machine, on top of the computed bound
REPORTING_OPS = frozenset(
    {"create CodeInterpreter", "create AgentRuntime", "attach", "stop", "delete"}
)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Request classes (glob over the path, as the local server matches faults) and the faults each
# gets. A create is never answered "lost" unless --lost-create-answers: see the docstring.
CI_CREATE = ("POST", "/v1/code-interpreter")
AR_CREATE = ("POST", "/v1/agent-runtime")
DELETE = ("DELETE", "/v1/*/sessions/*")
BOOTSTRAP = ("GET", "/v1/namespaces/*/agent-runtimes/*/invocations/")
DATA_POST = ("POST", "/v1/namespaces/*/invocations/*")
FILES_GET = ("GET", "/v1/namespaces/*/code-interpreters/*/invocations/api/files*")
REQUEST_CLASSES = {
    "create (control plane)": (CI_CREATE, AR_CREATE),
    "delete (control plane)": (DELETE,),
    "bootstrap (router)": (BOOTSTRAP,),
    "data plane (router)": (DATA_POST, FILES_GET),
}
FAULT_KINDS = ("status:500", "status:503", "drop", "delay", "lost answer")


# -- bookkeeping ----------------------------------------------------------------------------------


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    lifecycles: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    foreign_errors: list[str] = field(default_factory=list)
    reported: set[str] = field(default_factory=set)  # ids named by end/create errors
    warned: list[str] = field(default_factory=list)
    calls: int = 0
    outlived: list[str] = field(default_factory=list)
    worst_margin: float = float("-inf")  # max(wall - bound) over all calls, bound without slack
    slowest: dict[str, float] = field(default_factory=dict)  # op -> longest wall time
    retried_ends: int = 0
    forgotten_ids: list[str] = field(default_factory=list)  # a client dropped a live session
    said_gone: int = 0  # DELETED / ALREADY_GONE outcomes checked against the server
    stuck: list[str] = field(default_factory=list)

    def error(self, exc: BaseException, op: str) -> None:
        with self.lock:
            self.errors[type(exc).__name__] += 1
            if not isinstance(exc, AgentCubeError):
                self.foreign_errors.append(f"{op}: {type(exc).__name__}: {exc}")
            if op in REPORTING_OPS:
                # What a user acts on: the error of a create, stop() or delete().
                self.reported.update(_ids_named_by(exc))


def _ids_named_by(exc: BaseException) -> set[str]:
    texts = [str(exc), *getattr(exc, "__notes__", [])]
    ids = set(UUID.findall(" ".join(texts)))
    sid = getattr(exc, "session_id", None)
    if isinstance(sid, str):
        ids.add(sid)
    return ids


@dataclass(frozen=True)
class Bounds:
    """The longest an SDK call may take, from the configured timeouts and retry policy."""

    timeout: float
    connect_timeout: float
    retry: RetryPolicy

    def request(self, read_timeout: float) -> float:
        attempts = self.retry.max_attempts
        sleeps = sum(
            min(self.retry.max_backoff, self.retry.backoff * 2 ** (k - 1))
            for k in range(1, attempts)
        )
        return attempts * (self.connect_timeout + read_timeout) + sleeps

    def of(self, op: str) -> float:
        r = self.timeout
        return {
            "create CodeInterpreter": self.request(CREATE_READ_TIMEOUT),
            "create AgentRuntime": self.request(max(r, CREATE_READ_TIMEOUT)),
            "attach": 0.0,
            "execute_command": self.request(COMMAND_TIMEOUT + EXECUTE_MARGIN),
            "write_file": self.request(r),
            "list_files": self.request(r),
            "invoke": self.request(r),
            "stop": self.request(r),
            "delete": self.request(r),
            "detach": 0.0,
        }[op]


# -- the run --------------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace, server: ServerProcess) -> None:
        self.args = args
        self.server = server
        self.stats = Stats()
        self.retry = RetryPolicy(max_attempts=3, backoff=0.05, max_backoff=0.2)
        self.bounds = Bounds(args.timeout, args.connect_timeout, self.retry)
        self.common = {
            "workload_manager_url": server.workload_manager_url,
            "router_url": server.router_url,
            "timeout": args.timeout,
            "connect_timeout": args.connect_timeout,
            "retry": self.retry,
        }
        # Clients whose stop()/delete() failed: (client, the method to retry, its session id).
        self.to_retry: collections.deque[tuple[ManagedSessionClient, str, str]] = (
            collections.deque()
        )
        # Session ids to delete later from another client: (kind class, id).
        self.to_delete_later: collections.deque[tuple[type[ManagedSessionClient], str]] = (
            collections.deque()
        )
        self.counter = iter(range(args.lifecycles))
        self.counter_lock = threading.Lock()

    # -- timing -----------------------------------------------------------------------------------
    def record(self, op: str, wall: float) -> None:
        bound = self.bounds.of(op)
        with self.stats.lock:
            self.stats.calls += 1
            self.stats.worst_margin = max(self.stats.worst_margin, wall - bound)
            self.stats.slowest[op] = max(self.stats.slowest.get(op, 0.0), wall)
            if wall > bound + SLACK:
                self.stats.outlived.append(f"{op}: {wall:.2f}s > {bound:.2f}s")

    def call(self, op: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """Run one SDK call, timed; record its error. Returns (succeeded, result or error)."""
        started = time.monotonic()
        try:
            return True, fn()
        except Exception as exc:
            self.stats.error(exc, op)
            return False, exc
        finally:
            self.record(op, time.monotonic() - started)

    # -- clients ----------------------------------------------------------------------------------
    def new(self, cls: type[ManagedSessionClient], session_id: str | None = None) -> Any:
        if cls is AgentRuntimeClient:
            return AgentRuntimeClient("echo-agent", session_id=session_id, **self.common)
        return CodeInterpreterClient(session_id=session_id, **self.common)

    def create(self, cls: type[ManagedSessionClient]) -> Any:
        ok, client = self.call(f"create {cls.kind.name}", lambda: self.new(cls))
        return client if ok else None

    def work(self, client: Any, rng: Any) -> None:
        """One or two data-plane calls; their failures are recorded, never fatal."""
        if isinstance(client, AgentRuntimeClient):
            self.call("invoke", lambda: client.invoke({"n": rng.randrange(1000)}))
            return
        choice = rng.randrange(3)
        if choice == 0:
            self.call("execute_command", lambda: client.execute_command("echo ok"))
        elif choice == 1:
            self.call("write_file", lambda: client.write_file(b"soak", "f.txt"))
            self.call("list_files", lambda: client.list_files("."))
        else:
            self.call("write_file", lambda: client.write_file("x", "d/g.txt"))

    def check_outcome(self, sid: str, outcome: Any, after_failure: bool) -> None:
        """DELETED / ALREADY_GONE must be true on the server; after a failed DELETE, the next
        stop()/delete() must not be NOTHING_TO_DO (the client would have dropped the id)."""
        gone = outcome in (StopOutcome.DELETED, StopOutcome.ALREADY_GONE)
        if gone:
            with self.stats.lock:
                self.stats.said_gone += 1
        if (gone and self.server.call("has", session_id=sid)) or (
            after_failure and outcome is StopOutcome.NOTHING_TO_DO
        ):
            with self.stats.lock:
                self.stats.forgotten_ids.append(sid)

    def end(self, client: Any, how: str, rng: Any) -> None:
        """End a client's part of the lifecycle; queue what failed for a later retry."""
        sid = client.session_id
        if how == "detach":
            ok, got = self.call("detach", client.detach)
            if ok:
                self.call("stop", client.stop)  # only closes: the session is no longer ours
                self.to_delete_later.append((type(client), got))
            return
        method = "delete" if how == "delete" else "stop"
        ok, outcome = self.call(method, getattr(client, method))
        if not ok:
            self.to_retry.append((client, method, sid))
            return
        self.check_outcome(sid, outcome, after_failure=False)
        if (
            method == "stop"
            and outcome is StopOutcome.KEPT
            and not type(client).delete_attached_on_stop
        ):
            # An attached agent runtime is kept by stop(): end it explicitly.
            ok, outcome = self.call("delete", client.delete)
            if not ok:
                self.to_retry.append((client, "delete", sid))
            else:
                self.check_outcome(sid, outcome, after_failure=False)

    # -- one lifecycle ----------------------------------------------------------------------------
    def lifecycle(self, rng: Any) -> None:
        cls = rng.choice((CodeInterpreterClient, AgentRuntimeClient))
        attached = rng.random() < 0.4
        how = rng.choice(("with", "stop", "delete", "detach"))
        label = f"{cls.kind.name} {'attached' if attached else 'owned'} {how}"
        with self.stats.lock:
            self.stats.lifecycles[label] += 1
        if attached:
            creator = self.create(cls)
            if creator is None:
                return
            ok, sid = self.call("detach", creator.detach)
            self.call("stop", creator.stop)
            if not ok:
                return
            ok, client = self.call("attach", lambda: self.new(cls, session_id=sid))
            if not ok:  # cannot happen for a valid id; keep the id for a later delete
                self.to_delete_later.append((cls, sid))
                return
        else:
            client = self.create(cls)
            if client is None:
                return
        if how != "with":
            self.work(client, rng)
            self.end(client, how, rng)
            return
        # ``with``: half the time the body raises, so __exit__ runs with an exception.
        exit_started = time.monotonic()
        try:
            with client:
                try:
                    self.work(client, rng)
                    if rng.random() < 0.5:
                        raise _BodyError()
                finally:
                    exit_started = time.monotonic()
        except _BodyError as exc:
            # A failed stop() in __exit__ is a note on the body's error (3.11+).
            with self.stats.lock:
                self.stats.reported.update(_ids_named_by(exc))
        except Exception as exc:  # stop() in __exit__ failed
            self.stats.error(exc, "stop")
        finally:
            self.record("stop", time.monotonic() - exit_started)
        # Whatever happened, end it again: stop() is NOTHING_TO_DO if __exit__ did it, else it
        # retries the DELETE; an attached agent runtime, kept by stop(), is deleted.
        keeps = attached and not cls.delete_attached_on_stop
        self.end(client, "delete" if keeps else "stop", rng)

    def retry_some(self, rng: Any, budget: int) -> None:
        """Retry a few failed ends and delete a few detached sessions from new clients."""
        for _ in range(budget):
            try:
                client, method, sid = self.to_retry.popleft()
            except IndexError:
                break
            self.stats.retried_ends += 1
            if client.session_id != sid:
                with self.stats.lock:
                    self.stats.forgotten_ids.append(sid)
                continue
            ok, outcome = self.call(method, getattr(client, method))
            if not ok:
                self.to_retry.append((client, method, sid))
            else:
                self.check_outcome(sid, outcome, after_failure=True)
        for _ in range(budget):
            try:
                cls, sid = self.to_delete_later.popleft()
            except IndexError:
                break
            ok, other = self.call("attach", lambda cls=cls, sid=sid: self.new(cls, sid))
            if not ok:
                self.to_delete_later.append((cls, sid))
                continue
            ok, outcome = self.call("delete", other.delete)
            if not ok:
                self.to_retry.append((other, "delete", sid))
            else:
                self.check_outcome(sid, outcome, after_failure=False)

    def adopt_named_ids(self) -> None:
        """Ids named only by errors or warnings: delete them later, as a user would."""
        with self.stats.lock:
            named = set(self.stats.reported) | set(self.stats.warned)
        held = {sid for _, _, sid in self.to_retry} | {sid for _, sid in self.to_delete_later}
        on_server = set(self.server.call("sessions"))
        for sid in sorted((named & on_server) - held):
            self.to_delete_later.append((CodeInterpreterClient, sid))

    def worker(self, index: int) -> None:
        import random

        rng = random.Random(self.args.seed * 1000 + index)
        while True:
            with self.counter_lock:
                n = next(self.counter, None)
            if n is None:
                return
            try:
                self.lifecycle(rng)
                if rng.random() < 0.3:
                    self.retry_some(rng, 2)
            except Exception as exc:  # a bug in this script or an error outside the tree
                self.stats.error(exc, "lifecycle")

    def drain(self) -> None:
        """Retry until every failed end and every later delete went through (faults still on)."""
        import random

        rng = random.Random(self.args.seed)
        for _ in range(200):
            self.adopt_named_ids()
            if not self.to_retry and not self.to_delete_later:
                return
            self.retry_some(rng, 1000)
        self.stats.stuck.extend(sid for _, _, sid in self.to_retry)
        self.stats.stuck.extend(sid for _, sid in self.to_delete_later)


class _BodyError(Exception):
    pass


# -- faults ---------------------------------------------------------------------------------------


def inject_faults(
    server: ServerProcess, args: argparse.Namespace
) -> dict[tuple[str, str], list[int]]:
    """About ``fault_rate`` of each request class faulted, split evenly between fault kinds.

    Returns {(request class, fault kind): indices of its Faults in the server}.
    """
    index: dict[tuple[str, str], list[int]] = {}
    for cls_name, patterns in REQUEST_CLASSES.items():
        kinds = list(FAULT_KINDS)
        is_create = cls_name.startswith(("create", "bootstrap"))
        if is_create and not args.lost_create_answers:
            kinds.remove("lost answer")
        # Independent draws per fault: 1 - (1 - p) ** len(kinds) == fault_rate.
        p = 1 - (1 - args.fault_rate) ** (1 / len(kinds))
        for kind in kinds:
            spec: dict[str, Any] = {"times": 10**9, "probability": p}
            if kind.startswith("status:"):
                spec["status"] = int(kind.split(":")[1])
            elif kind == "drop":
                spec["drop"] = True
            elif kind == "delay":
                spec["delay"] = args.delay
            else:
                spec.update(drop=True, after=True)
            for n, (method, path) in enumerate(patterns):
                seed = hash((args.seed, cls_name, kind, n)) & 0xFFFFFFFF
                i = server.call("fault", method=method, path=path, seed=seed, **spec)
                index.setdefault((cls_name, kind), []).append(i)
    return index


# -- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lifecycles", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--fault-rate", type=float, default=0.10)
    parser.add_argument("--timeout", type=float, default=1.0, help="client read timeout (s)")
    parser.add_argument("--connect-timeout", type=float, default=1.0)
    parser.add_argument("--delay", type=float, default=1.5, help="injected delay (s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--lost-create-answers",
        action="store_true",
        help="also drop the answers of creates the server performed",
    )
    args = parser.parse_args(argv)
    if args.delay <= args.timeout:
        parser.error("--delay must be longer than --timeout")

    warnings.simplefilter("always", ResourceWarning)
    server = ServerProcess(max_session_duration=None, session_timeout=None)
    soak = Soak(args, server)

    def show(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
        with soak.stats.lock:
            if issubclass(category, ResourceWarning) and UUID.search(str(message)):
                soak.stats.warned.extend(UUID.findall(str(message)))
            soak.stats.errors[f"warning:{category.__name__}"] += 1

    warnings.showwarning = show
    try:
        fault_index = inject_faults(server, args)
        started = time.monotonic()
        threads = [
            threading.Thread(target=soak.worker, args=(i,), name=f"soak-{i}")
            for i in range(args.threads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        soak.drain()
        wall = time.monotonic() - started
        hits = server.call("hits")
        fired = server.call("fired")
        requests_seen = len(server.call("requests"))
        left = set(server.call("sessions"))  # before any sweep
        server.call("clear")
    finally:
        swept = 0
        with contextlib.suppress(Exception):
            swept = server.call("delete_all")
        server.stop()

    return report(args, soak, fault_index, hits, fired, requests_seen, left, wall, swept)


def report(
    args: argparse.Namespace,
    soak: Soak,
    fault_index: dict[tuple[str, str], list[int]],
    hits: list[int],
    fired: dict[str, int],
    requests_seen: int,
    left: set[str],
    wall: float,
    swept: int,
) -> int:
    stats = soak.stats
    named = stats.reported | set(stats.warned)
    unnamed = left - named
    lost_creates = 0
    if args.lost_create_answers:
        for (cls_name, kind), indices in fault_index.items():
            if kind == "lost answer" and cls_name.startswith(("create", "bootstrap")):
                lost_creates += sum(hits[i] for i in indices)
    forgotten = len(unnamed) - lost_creates + len(stats.forgotten_ids)
    unexpected_warnings = [sid for sid in stats.warned]

    rows: list[tuple[str, str, str]] = []

    def row(what: str, value: Any, goal: str = "") -> None:
        rows.append((what, str(value), goal))

    row("lifecycles run", sum(stats.lifecycles.values()), str(args.lifecycles))
    row("threads", args.threads)
    row("requests received by the server", requests_seen)
    total_faults = 0
    for cls_name in REQUEST_CLASSES:
        for kind in FAULT_KINDS:
            indices = fault_index.get((cls_name, kind))
            if not indices:
                continue
            count = sum(hits[i] for i in indices)
            total_faults += count
            row(f"  faults: {cls_name}: {kind}", count)
    share = total_faults / requests_seen if requests_seen else 0.0
    row("faults injected in all", f"{total_faults} ({share:.1%})", f"~{args.fault_rate:.0%}")
    row("  delayed requests whose client gave up (not processed)", fired.get("cancelled", 0))
    for name, count in sorted(stats.errors.items()):
        row(f"  raised: {name}", count)
    row(
        "errors raised in all",
        sum(v for k, v in stats.errors.items() if not k.startswith("warning:")),
    )
    row("failed stop()/delete() retried later", stats.retried_ends)
    row("SDK calls timed", stats.calls)
    row("errors outside AgentCubeError", len(stats.foreign_errors), "0")
    row("retries that never succeeded", len(stats.stuck), "0")
    row("ResourceWarnings naming a session", len(unexpected_warnings), "0")
    if args.lost_create_answers:
        row("create answers lost (sandbox made, id never sent)", lost_creates)
    row("sessions still on the server at the end", len(left), str(lost_creates))
    row("sessions the SDK forgot", forgotten, "0")
    row("DELETED/ALREADY_GONE outcomes checked on the server", stats.said_gone)
    row("requests that outlived their timeout", len(stats.outlived), "0")
    row("  worst wall time minus its bound (s)", f"{stats.worst_margin:+.2f}", f"<= {SLACK}")
    for op in ("stop", "delete", "create CodeInterpreter", "create AgentRuntime", "list_files"):
        if op in stats.slowest:
            bound = soak.bounds.of(op)
            row(f"  slowest {op} (s)", f"{stats.slowest[op]:.2f}", f"bound {bound:.2f}")
    row("wall time (s)", f"{wall:.1f}")
    row("sessions swept after the count", swept)

    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>{vwidth}}  goal")
    print(f"{'-' * width}  {'-' * vwidth}  ----")
    for what, value, goal in rows:
        print(f"{what:<{width}}  {value:>{vwidth}}  {goal}")

    failures = []
    if len(left) != lost_creates:
        failures.append(f"{len(left)} sessions left on the server (expected {lost_creates})")
    if forgotten:
        examples = sorted(unnamed)[:5] + stats.forgotten_ids[:5]
        failures.append(f"{forgotten} sessions forgotten: {examples}")
    if stats.outlived:
        failures.append(f"{len(stats.outlived)} calls outlived their bound: {stats.outlived[:5]}")
    if stats.foreign_errors:
        failures.append(f"errors outside the SDK's tree: {stats.foreign_errors[:5]}")
    if stats.stuck:
        failures.append(f"retries that never succeeded: {stats.stuck[:5]}")
    if unexpected_warnings:
        failures.append(f"ResourceWarnings named sessions: {unexpected_warnings[:5]}")
    if sum(stats.lifecycles.values()) != args.lifecycles:
        failures.append("not every lifecycle ran")
    for failure in failures:
        print(f"GOAL MISSED: {failure}", file=sys.stderr)
    print("all goals met" if not failures else f"{len(failures)} goal(s) missed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
