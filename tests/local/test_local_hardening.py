"""Hardening: processes end with their session, deletion races, odd times, path-swap races."""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests

from agentcube.local import LocalAgentCube
from agentcube.local._sandbox import paths
from agentcube.local._sandbox.paths import Workspace

from .helpers import MAX_UPLOAD, Api

LINUX = sys.platform.startswith("linux")


def _workspace(cube: LocalAgentCube, session_id: str) -> str:
    workspace = next(s.workspace for s in cube.sessions() if s.session_id == session_id)
    assert workspace is not None
    return workspace


def _wait_for_file(path: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as handle:
                text = handle.read()
            if text.endswith("\n"):
                return text.strip()
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_dead(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def _kill_if_sleeper(pid: int, marker: str) -> None:
    """Clean up after a failed assertion: only a process we recognise as ours."""
    try:
        proc = psutil.Process(pid)
        if marker in " ".join(proc.cmdline()):
            proc.kill()
    except psutil.Error:
        pass


@pytest.fixture(scope="module")
def cube() -> Iterator[LocalAgentCube]:
    """These tests are about the unisolated mode's own machinery (its process supervisor, its
    host workspaces): isolated sessions have theirs, tried in test_local_isolation.py."""
    with LocalAgentCube(quiet=True, isolation="none", max_body_bytes=MAX_UPLOAD) as server:
        yield server


# -- 1. every process a session started ends with it, and nothing else --------------------------


@pytest.mark.skipif(
    not LINUX, reason="descendant tracking is Linux-only (documented in _sandbox/procs.py)"
)
def test_setsid_and_double_fork_jobs_die_with_the_session(
    api: Api, cube: LocalAgentCube, bystander: subprocess.Popen[bytes]
) -> None:
    from agentcube.local._sandbox import procs

    if not procs.descendant_tracking_available():
        pytest.skip(
            "no subreaper/pidfd here: process groups only (documented in _sandbox/procs.py)"
        )
    sid = api.create()
    workspace = _workspace(cube, sid)
    marker = "1000.25"
    api.execute(
        sid,
        [
            "bash",
            "-c",
            f"setsid sh -c 'echo $$ > setsid.pid; exec sleep {marker}' "
            ">/dev/null 2>&1 </dev/null &",
        ],
    )
    daemon = (
        "import os, sys\n"
        "if os.fork(): sys.exit(0)\n"
        "os.setsid()\n"
        "if os.fork(): sys.exit(0)\n"
        "null = os.open(os.devnull, os.O_RDWR)\n"
        "for fd in (0, 1, 2): os.dup2(null, fd)\n"
        "with open('daemon.pid', 'w') as f: f.write(f'{os.getpid()}\\n')\n"
        f"os.execvp('sleep', ['sleep', '{marker}'])\n"
    )
    api.execute(sid, [sys.executable, "-c", daemon])
    pids = [
        int(_wait_for_file(os.path.join(workspace, name))) for name in ("setsid.pid", "daemon.pid")
    ]
    try:
        for pid in pids:
            assert _alive(pid)
            assert os.getsid(pid) != os.getsid(0)  # each left the session it was started in
        assert api.delete(sid).status_code == 200
        for pid in pids:
            assert _wait_dead(pid), f"process {pid} survived the deletion of its session"
        assert bystander.poll() is None
    finally:
        for pid in pids:
            _kill_if_sleeper(pid, marker)


def _take_pid(target: int) -> subprocess.Popen[bytes] | None:
    """Start an unrelated process (its own group) whose pid is ``target``, if the kernel lets us."""
    try:
        for _ in range(20):
            with open("/proc/sys/kernel/ns_last_pid", "w") as handle:
                handle.write(str(target - 1))
            proc = subprocess.Popen(["sleep", "1000.5"], start_new_session=True)
            if proc.pid == target:
                return proc
            proc.kill()
            proc.wait()
    except OSError:
        return None
    return None


@pytest.mark.skipif(not LINUX, reason="needs /proc/sys/kernel/ns_last_pid")
@pytest.mark.parametrize("mode", ["default", "process-groups"])
def test_a_reused_process_group_id_is_never_signalled(
    api: Api, bystander: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    if not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
        pytest.skip("cannot choose the next pid here (needs CAP_SYS_ADMIN)")
    if mode == "process-groups":  # the fallback of platforms without subreaper/pidfd
        from agentcube.local._sandbox import procs

        monkeypatch.setattr(procs, "descendant_tracking_available", lambda: False, raising=False)
    sid = api.create()
    # the command's group outlives the command for a moment (its background sleep) ...
    result = api.execute(sid, ["bash", "-c", "sleep 0.3 >/dev/null 2>&1 & echo $$"])
    pgid = int(result["stdout"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _group_members(pgid) - {pgid}:
        time.sleep(0.02)  # ... then every process of the group ends and is reaped ...
    while time.monotonic() < deadline and mode == "default" and _group_members(pgid):
        time.sleep(0.02)  # ... the leader too (the fallback keeps it: see below)
    unrelated = _take_pid(pgid)
    if unrelated is None:
        api.delete(sid)
        if mode == "process-groups":
            return  # the id is still held (our unreaped leader): no one else can have it
        pytest.skip("could not make an unrelated process reuse the group id")
    try:
        assert os.getpgid(unrelated.pid) == pgid
        assert api.delete(sid).status_code == 200
        time.sleep(0.2)
        assert unrelated.poll() is None, "deleting the session killed an unrelated process group"
        assert bystander.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()


def _group_members(pgid: int) -> set[int]:
    """Every process (zombies too: they hold the id) whose process group is ``pgid``."""
    members = set()
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.add(proc.pid)
        except OSError:
            continue
    return members


def test_fallback_never_signals_a_group_whose_leader_is_not_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A remembered group id is signalled only while its leader is ours and unreaped."""
    from agentcube.local._sandbox import procs

    supervisor = procs.GroupSupervisor()
    child = supervisor.spawn([b"true"], executable=b"/bin/true", cwd=b"/", env=None)
    assert child.wait(5) == 0
    supervisor.finished(child)  # remembered (its leader kept unreaped) ...
    leader = supervisor._groups[child.pid]
    leader.reap()  # ... until something reaps the leader: the id may now name anyone
    signalled: list[int] = []
    monkeypatch.setattr(os, "killpg", lambda pgid, signo: signalled.append(pgid))
    supervisor.close()
    assert signalled == []


def test_fallback_still_kills_its_own_groups() -> None:
    from agentcube.local._sandbox import procs

    supervisor = procs.GroupSupervisor()
    read_end, write_end = os.pipe()
    child = supervisor.spawn(
        [b"sh", b"-c", b"sleep 1000.75 >/dev/null 2>&1 & echo $!"],
        executable=b"/bin/sh",
        cwd=b"/",
        env=None,
        stdout=write_end,
    )
    os.close(write_end)
    with os.fdopen(read_end) as handle:
        background = int(handle.readline())
    assert child.wait(5) == 0
    supervisor.finished(child)
    try:
        assert _alive(background)
        supervisor.close()
        assert _wait_dead(background)
    finally:
        _kill_if_sleeper(background, "1000.75")


@pytest.mark.skipif(not LINUX, reason="descendant tracking is Linux-only")
def test_supervisor_kills_only_its_subtree_and_passes_fds(tmp_path: Path) -> None:
    from agentcube.local._sandbox import procs

    if not procs.descendant_tracking_available():
        pytest.skip("no subreaper/pidfd here")
    supervisor = procs.ProcessSupervisor()
    assert isinstance(supervisor, procs.SubreaperSupervisor)
    read_end, write_end = os.pipe()
    child = supervisor.spawn(
        [b"sh", b"-c", b"echo $PPID; (setsid sleep 1000.8 >/dev/null 2>&1 & echo $!) ; exit 3"],
        executable=b"/bin/sh",
        cwd=os.fsencode(tmp_path),
        env={b"PATH": os.environ["PATH"].encode()},
        stdout=write_end,
    )
    os.close(write_end)
    with os.fdopen(read_end) as handle:
        parent, background = (int(line) for line in handle.read().split())
    assert child.wait(5) == 3
    supervisor_pid = supervisor.pid
    try:
        assert parent == supervisor_pid
        assert _alive(background)
        # the orphan went to the supervisor, not to init
        assert psutil.Process(background).ppid() == supervisor_pid
        supervisor.close()
        assert _wait_dead(background)
        assert supervisor_pid is not None and not _alive(supervisor_pid)
    finally:
        _kill_if_sleeper(background, "1000.8")


@pytest.mark.skipif(not LINUX, reason="descendant tracking is Linux-only")
def test_killing_the_supervisor_does_not_let_the_session_escape(
    api: Api, cube: LocalAgentCube, bystander: subprocess.Popen[bytes]
) -> None:
    from agentcube.local._sandbox import procs

    if not procs.descendant_tracking_available():
        pytest.skip("no subreaper/pidfd here")
    sid = api.create()
    workspace = _workspace(cube, sid)
    api.execute(
        sid,
        [
            "bash",
            "-c",
            "setsid sh -c 'echo $$ > bg.pid; exec sleep 1000.3' >/dev/null 2>&1 </dev/null &",
        ],
    )
    pid = int(_wait_for_file(os.path.join(workspace, "bg.pid")))
    try:
        supervisor = psutil.Process(psutil.Process(pid).ppid())
        assert "_reaper.py" in " ".join(supervisor.cmdline())
        supervisor.kill()  # what a command could do to it: it runs as the same user
        assert _wait_dead(pid), "what the killed supervisor ran escaped"
        assert api.execute(sid, ["echo", "still here"])["stdout"] == "still here\n"
        assert api.delete(sid).status_code == 200
        assert bystander.poll() is None
    finally:
        _kill_if_sleeper(pid, "1000.3")


def test_large_commands_and_environments_reach_the_command(api: Api, session_id: str) -> None:
    big = "x" * 100_000  # more than one socket packet: sent through a memfd
    env = {f"VAR_{i}": "v" * 1000 for i in range(80)}
    result = api.execute(
        session_id,
        ["python3", "-c", "import os,sys; print(len(sys.argv[1]), len(os.environ['VAR_79']))", big],
        env=env,
    )
    assert (result["stdout"], result["exit_code"]) == ("100000 1000\n", 0)


def test_start_errors_keep_gos_texts(api: Api, session_id: str) -> None:
    api.execute(session_id, ["bash", "-c", "printf 'garbage' > bad.bin; chmod +x bad.bin"])
    result = api.execute(session_id, ["./bad.bin"])
    assert (result["exit_code"], result["stderr"]) == (1, "fork/exec ./bad.bin: exec format error")
    result = api.execute(session_id, ["/bin/true"], working_dir="bad.bin")
    assert (result["exit_code"], result["stderr"]) == (1, "fork/exec /bin/true: not a directory")
    result = api.execute(session_id, ["sh", "-c", "kill -TERM $$"])
    assert result["exit_code"] == -1
    result = api.execute(session_id, ["sh", "-c", "exit 7"])
    assert result["exit_code"] == 7


# -- 2. a request still arriving when its session is deleted --------------------------------------


def _hook_sanitize(
    monkeypatch: pytest.MonkeyPatch, trigger: str, delete: threading.Thread, wait_closing: bool
) -> None:
    """Delete the session right after ``trigger`` passed the path check, then let it go on."""
    original = Workspace.sanitize

    def hooked(self: Workspace, user_path: str) -> str:
        result = original(self, user_path)
        if user_path == trigger and not delete.is_alive() and delete.ident is None:
            delete.start()
            closing = getattr(self, "closing", None) if wait_closing else None
            deadline = time.monotonic() + 10
            while delete.is_alive() and time.monotonic() < deadline:
                if closing is not None and closing.is_set():
                    break  # the deletion waits for this request: let it finish first
                time.sleep(0.002)
        return result

    monkeypatch.setattr(Workspace, "sanitize", hooked)


@pytest.mark.parametrize("deletion_waits", [True, False], ids=["deletion-waits", "no-wait"])
@pytest.mark.parametrize("operation", ["upload", "multipart", "working-dir"])
def test_a_request_in_flight_at_deletion_never_recreates_the_workspace(
    cube: LocalAgentCube, monkeypatch: pytest.MonkeyPatch, operation: str, deletion_waits: bool
) -> None:
    if not deletion_waits:  # the deletion does not wait: the request runs after the removal
        monkeypatch.setattr(paths, "CLOSE_WAIT_SECONDS", 0.0, raising=False)
    api, deleter = Api(cube), Api(cube)
    sid = api.create()
    workspace = _workspace(cube, sid)
    trigger = "deep/er/target" if operation != "working-dir" else "wd/new/dir"
    delete = threading.Thread(target=lambda: deleter.delete(sid))
    _hook_sanitize(monkeypatch, trigger, delete, wait_closing=deletion_waits)
    if operation == "upload":
        response = api.upload(sid, trigger, b"late")
    elif operation == "multipart":
        response = api.call(
            sid, "POST", "api/files", data={"path": trigger}, files={"file": b"late"}
        )
    else:
        response = api.call(
            sid, "POST", "api/execute", json={"command": ["true"], "working_dir": trigger}
        )
    delete.join(10)
    assert not delete.is_alive()
    assert (response.status_code, response.json()) == (503, {"error": "sandbox unreachable"})
    assert not os.path.lexists(workspace), os.listdir(workspace)
    assert sid not in [s.session_id for s in cube.sessions()]


# -- 3. modification times Go cannot put into JSON ----------------------------------------------

YEAR_10001 = 253_402_300_800 + 366 * 86_400  # 10001-01-01T00:00:00Z (10000 is a leap year)
YEAR_MINUS_1 = -62_167_219_200 - 365 * 86_400  # -0001-01-01T00:00:00Z
YEAR_0 = -62_167_219_200  # 0000-01-01T00:00:00Z


@pytest.fixture(scope="module")
def tmpfs_cube() -> Iterator[LocalAgentCube]:
    """Workspaces on a filesystem with 64-bit times (tmpfs), when there is one."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    import tempfile

    root = tempfile.mkdtemp(prefix="agentcube-times-", dir=base)
    with LocalAgentCube(quiet=True, root_dir=os.path.join(root, "ws")) as server:
        yield server
    import shutil

    shutil.rmtree(root, ignore_errors=True)


def _set_mtime(path: str, seconds: int) -> None:
    os.utime(path, ns=(seconds * 1_000_000_000, seconds * 1_000_000_000))
    if os.stat(path).st_mtime_ns != seconds * 1_000_000_000:
        pytest.skip("this filesystem cannot hold such a modification time")


@pytest.mark.parametrize("seconds", [YEAR_10001, YEAR_MINUS_1], ids=["year-10001", "year-minus-1"])
def test_a_time_json_cannot_carry_answers_200_with_an_empty_body(
    tmpfs_cube: LocalAgentCube, seconds: int
) -> None:
    api = Api(tmpfs_cube)
    sid = api.create()
    try:
        workspace = _workspace(tmpfs_cube, sid)
        assert api.upload(sid, "odd/file.txt", b"payload").status_code == 200
        assert api.upload(sid, "odd/fine.txt", b"ok").status_code == 200
        _set_mtime(os.path.join(workspace, "odd", "file.txt"), seconds)
        # gin's c.JSON: json.Marshal fails, nothing is written: 200, JSON type, empty body
        plain = api.call(
            sid, "GET", "api/files", params={"path": "odd"}, headers={"Accept-Encoding": "identity"}
        )
        assert (plain.status_code, plain.content) == (200, b"")
        assert plain.headers["Content-Type"] == "application/json; charset=utf-8"
        assert plain.headers["Content-Length"] == "0"
        # with gzip, the middleware still closes its (empty) gzip stream
        zipped = api.call(
            sid, "GET", "api/files", params={"path": "odd"}, headers={"Accept-Encoding": "gzip"}
        )
        assert zipped.status_code == 200
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert zipped.content == b""  # requests undid the gzip
        raw = api.call(
            sid,
            "GET",
            "api/files",
            params={"path": "odd"},
            headers={"Accept-Encoding": "gzip"},
            stream=True,
        )
        wire = raw.raw.read(decode_content=False)
        assert gzip.decompress(wire) == b"" and len(wire) > 0
        assert raw.headers["Content-Length"] == str(len(wire))
        # the other files of the directory are fine once the odd one is gone from it
        ok = api.call(sid, "GET", "api/files", params={"path": "/"})
        assert ok.status_code == 200 and ok.json()["files"][0]["name"] == "odd"
        # a download still works; Go formats any year in Last-Modified
        download = api.download(sid, "odd/file.txt")
        assert (download.status_code, download.content) == (200, b"payload")
        expected = {
            YEAR_10001: "Mon, 01 Jan 10001 00:00:00 GMT",
            YEAR_MINUS_1: "Fri, 01 Jan -0001 00:00:00 GMT",
        }[seconds]
        assert download.headers["Last-Modified"] == expected
    finally:
        api.delete(sid)


def test_year_zero_is_still_in_range(tmpfs_cube: LocalAgentCube) -> None:
    api = Api(tmpfs_cube)
    sid = api.create()
    try:
        workspace = _workspace(tmpfs_cube, sid)
        api.upload(sid, "zero.txt", b"0")
        _set_mtime(os.path.join(workspace, "zero.txt"), YEAR_0)
        listing = api.call(sid, "GET", "api/files", params={"path": "."})
        assert listing.json()["files"][0]["modified"] == "0000-01-01T00:00:00Z"
        download = api.download(sid, "zero.txt")
        assert download.headers["Last-Modified"] == "Sat, 01 Jan 0000 00:00:00 GMT"
        _set_mtime(os.path.join(workspace, "zero.txt"), 0)  # the Unix epoch: Go sets none
        assert "Last-Modified" not in api.download(sid, "zero.txt").headers
        _set_mtime(os.path.join(workspace, "zero.txt"), -86_400)  # before 1970: Go sets it
        last = api.download(sid, "zero.txt").headers["Last-Modified"]
        assert last == "Wed, 31 Dec 1969 00:00:00 GMT"
    finally:
        api.delete(sid)


# -- 4. the file API cannot be raced out of the workspace ----------------------------------------

OUTSIDE_MARK = b"OUTSIDE-CONTENT-7f3a"


def _snapshot(top: str) -> dict[str, tuple[int, bytes | str]]:
    found: dict[str, tuple[int, bytes | str]] = {}
    for directory, dirs, names in os.walk(top):
        for name in dirs + names:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if os.path.islink(path):
                found[path] = (info.st_mode, os.readlink(path))
            elif os.path.isdir(path):
                found[path] = (info.st_mode, "dir")
            else:
                with open(path, "rb") as handle:
                    found[path] = (info.st_mode, handle.read())
    return found


def _rename_exchange() -> Callable[[str, str], None] | None:
    """``renameat2(RENAME_EXCHANGE)``: swap two names atomically (Linux >= 3.15)."""
    if not LINUX:
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    function = getattr(libc, "renameat2", None)
    if function is None:
        return None

    def exchange(first: str, second: str) -> None:
        if function(-100, os.fsencode(first), -100, os.fsencode(second), 2) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))

    return exchange


def test_swapping_a_directory_for_a_symlink_never_leaks_out(
    api: Api, cube: LocalAgentCube, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "nested").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(OUTSIDE_MARK + b" secret")
    (outside / "outside-only.txt").write_bytes(OUTSIDE_MARK + b" only")
    (outside / "nested" / "secret.txt").write_bytes(OUTSIDE_MARK + b" nested")
    before = _snapshot(os.fspath(outside))
    sid = api.create()
    workspace = _workspace(cube, sid)
    d = os.path.join(workspace, "d")
    for sub in ("", "nested"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, sub, "secret.txt"), "wb") as handle:
            handle.write(b"inside")
    stop = threading.Event()
    swaps = 0

    link = d + ".link"
    os.symlink(os.fspath(outside), link)
    exchange = _rename_exchange()

    def swap() -> None:  # the hostile command, in-process to be fast
        nonlocal swaps
        real = d + ".real"
        while not stop.is_set():
            try:
                if exchange is not None:  # d is a directory, then a symlink, then ...
                    exchange(d, link)
                else:
                    os.rename(d, real)
                    os.symlink(os.fspath(outside), d)
                    time.sleep(0)
                    os.unlink(d)
                    os.rename(real, d)
                swaps += 1
            except OSError:
                if exchange is None and os.path.isdir(real) and os.path.isdir(d):
                    shutil.rmtree(d, ignore_errors=True)  # an upload made a new d meanwhile

    swapper = threading.Thread(target=swap, daemon=True)
    answers: list[tuple[str, int, bytes]] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        http = requests.Session()
        base = api.ci_url()
        headers = {"x-agentcube-session-id": sid, "Accept-Encoding": "identity"}
        for n in range(80):
            kind = n % 4
            if kind == 0:
                content = base64.b64encode(b"written-" + str(index).encode()).decode()
                r = http.post(
                    base + "api/files",
                    json={"path": f"d/up-{index}-{n}.txt", "content": content},
                    headers=headers,
                    timeout=30,
                )
            elif kind == 1:
                r = http.get(base + "api/files", params={"path": "d"}, headers=headers, timeout=30)
            elif kind == 2:
                r = http.get(base + "api/files/d/secret.txt", headers=headers, timeout=30)
            else:
                r = http.post(
                    base + "api/files",
                    data={"path": f"d/nested/mp-{index}-{n}.txt"},
                    files={"file": b"multipart"},
                    headers=headers,
                    timeout=30,
                )
            with lock:
                answers.append(
                    (("upload", "list", "download", "multipart")[kind], r.status_code, r.content)
                )
        http.close()

    swapper.start()
    clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    try:
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(60)
    finally:
        stop.set()
        swapper.join(10)
    assert len(answers) == 320 and swaps > 50
    leaks = [
        (kind, status, body[:120])
        for kind, status, body in answers
        if OUTSIDE_MARK in body or b"outside-only" in body
    ]
    after = _snapshot(os.fspath(outside))
    changed = sorted(set(after.items()) ^ set(before.items()))
    assert not leaks and not changed, (
        f"{len(leaks)} of {len(answers)} answers carried outside content {leaks[:2]}; "
        f"{len(changed)} outside entries changed {changed[:2]}"
    )
    statuses = {kind: sorted({s for k, s, _ in answers if k == kind}) for kind, _, _ in answers}
    assert all(200 in found for found in statuses.values()), statuses
    api.delete(sid)


def test_symlinks_inside_the_workspace_are_followed_as_picod_follows_them(
    api: Api, cube: LocalAgentCube, session_id: str
) -> None:
    workspace = _workspace(cube, session_id)

    def sh(script: str) -> None:
        assert api.execute(session_id, ["sh", "-c", script])["exit_code"] == 0

    sh(
        "mkdir -p real/deep other && echo hi > real/deep/f.txt && echo file > file.txt"
        f" && ln -s {workspace}/real abs && ln -s ../other real/up && ln -s file.txt flink"
        " && ln -s missing-dir dlink && ln -s loop2 loop1 && ln -s loop1 loop2"
        " && ln -s real wlink"
    )
    assert api.download(session_id, "abs/deep/f.txt").content == b"hi\n"
    listing = api.call(session_id, "GET", "api/files", params={"path": "abs/deep"})
    assert [f["name"] for f in listing.json()["files"]] == ["f.txt"]
    # an absolute link inside the workspace, then a relative one with .. that stays inside
    response = api.upload(session_id, "abs/up/new.txt", b"through links")
    assert (response.status_code, response.json()["path"]) == (200, "abs/up/new.txt")
    with open(os.path.join(workspace, "other", "new.txt"), "rb") as handle:
        assert handle.read() == b"through links"
    # os.MkdirAll's own words when a link in the way is not a directory
    response = api.upload(session_id, "flink/x.txt", b"x")
    assert response.json()["error"] == (
        f"Failed to create directory: mkdir {workspace}/flink: not a directory"
    )
    response = api.upload(session_id, "dlink/x.txt", b"x")
    assert response.json()["error"] == (
        f"Failed to create directory: mkdir {workspace}/dlink: file exists"
    )
    response = api.download(session_id, "loop1")
    assert response.json()["error"] == (
        f"Failed to get file info: stat {workspace}/loop1: too many levels of symbolic links"
    )
    result = api.execute(session_id, ["pwd"], working_dir="wlink/made")
    assert result["stdout"] == f"{workspace}/real/made\n"  # /bin/pwd prints it resolved
    assert os.path.isdir(os.path.join(workspace, "real", "made"))
    # a link to outside that comes back in is still inside
    sh(f"ln -s ../{os.path.basename(workspace)}/real back")
    assert api.download(session_id, "back/deep/f.txt").content == b"hi\n"


def test_the_root_handle_cannot_create_in_a_removed_workspace(tmp_path: Path) -> None:
    workspace = Workspace(os.fspath(tmp_path / "ws"))
    workspace.create()
    target = workspace.sanitize("a/b/c.txt")
    shutil.rmtree(tmp_path / "ws")  # removed under the open handle
    with pytest.raises(paths.MkdirError, match="no such file or directory"):
        workspace.create_file(target, "a/b/c.txt", 0o644)
    with pytest.raises(FileNotFoundError):
        workspace.create_file(workspace.sanitize("c.txt"), "c.txt", 0o644)
    assert not (tmp_path / "ws").exists()
    workspace.close()
    with pytest.raises(paths.WorkspaceGone):
        workspace.open_directory(workspace.root)
