"""Isolated sessions, tried as an attacker would: each test is one way out that must be shut.

Every probe that could harm this machine if a limit were missing bounds itself (a count and a
time), so a missing limit fails the test, never the machine. Canaries planted outside a
temporary directory are removed in ``finally``.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from agentcube import CodeInterpreterClient
from agentcube.local import Limits, LocalAgentCube
from agentcube.local._sandbox import isolation

from .helpers import SESSION_HEADER, Api, host_pid, host_view

MiB = 1 << 20
TIGHT = Limits(memory=96 * MiB, cpu=0.5, pids=48, disk=16 * MiB)


@pytest.fixture(scope="module")
def jail() -> Iterator[LocalAgentCube]:
    cube = LocalAgentCube(
        quiet=True,
        code_interpreters=("my-interpreter", "rootws", "tight", "hostnet"),
        workspaces={"rootws": "/"},
        networks={"hostnet": "host"},
        limits={"tight": TIGHT},
    )
    cube.start()
    try:
        if cube.isolation != "namespaces":
            pytest.skip(f"this kernel refuses isolation: {cube._isolation_reason}")
        yield cube
    finally:
        cube.stop()


@pytest.fixture
def api(jail: LocalAgentCube) -> Iterator[Api]:
    client = Api(jail)
    yield client
    client.http.close()


@pytest.fixture
def sid(api: Api) -> Iterator[str]:
    session = api.create()
    yield session
    api.delete(session)


def sh(api: Api, session: str, script: str, **extra: Any) -> dict[str, Any]:
    return api.execute(session, ["sh", "-c", script], **extra)


# -- the host's files -----------------------------------------------------------------------


def test_a_canary_in_the_hosts_tmp_is_out_of_sight(api: Api, sid: str) -> None:
    directory = tempfile.mkdtemp(prefix="agentcube-canary-", dir="/tmp")
    canary = os.path.join(directory, "canary.txt")
    try:
        with open(canary, "w") as handle:
            handle.write("host secret")
        result = sh(api, sid, f"cat {canary}; ls /tmp")
        assert "host secret" not in result["stdout"]
        assert result["stdout"] == ""  # the sandbox's own /tmp is empty
        assert "No such file" in result["stderr"]
    finally:
        os.unlink(canary)
        os.rmdir(directory)


def test_a_canary_in_the_hosts_home_is_out_of_sight(api: Api, sid: str) -> None:
    home = os.path.expanduser("~")
    canary = os.path.join(home, f".agentcube-canary-{secrets.token_hex(4)}")
    try:
        with open(canary, "w") as handle:
            handle.write("home secret")
        result = sh(api, sid, f"cat {canary}; cat /root/{os.path.basename(canary)}; ls -A /home")
        assert "home secret" not in result["stdout"]
        assert result["stdout"] == ""
    finally:
        os.unlink(canary)


def test_the_servers_root_dir_and_python_are_out_of_sight(
    api: Api, jail: LocalAgentCube, sid: str
) -> None:
    import sys

    root = jail.root_dir
    assert root is not None
    result = sh(api, sid, f"ls {root}; ls {os.path.dirname(os.path.abspath(__file__))}")
    assert result["stdout"] == ""
    assert result["stderr"].count("No such file") == 2
    assert not sys.prefix.startswith("/usr") or sh(api, sid, "true")["exit_code"] == 0


def test_writes_to_system_directories_land_in_the_session_only(
    api: Api, jail: LocalAgentCube, sid: str
) -> None:
    name = f"agentcube-probe-{secrets.token_hex(4)}"
    system = [f"/etc/{name}", f"/usr/local/{name}"]
    own = [f"/{name}", f"/tmp/{name}"]
    targets = system + own
    try:
        script = "; ".join(f"(echo inside > {t} && cat {t}) || echo refused" for t in targets)
        result = sh(api, sid, script)
        # Root inside owns what this user owns outside: run as root, the system directories
        # take writes into the session's layer; run as anyone else, those owned by this
        # machine's root refuse them (the kernel maps no other owner). The session's own
        # directories always take them.
        lines = result["stdout"].splitlines()
        assert lines[len(system) :] == ["inside"] * len(own), result
        if os.getuid() == 0:
            assert lines[: len(system)] == ["inside"] * len(system), result
        for target in targets:
            assert not os.path.exists(target), f"{target} reached the host"
        other = api.create()
        try:
            seen = sh(api, other, f"ls {' '.join(targets)}")
            assert seen["stdout"] == "", "another session saw the first one's writes"
        finally:
            api.delete(other)
    finally:
        for target in targets:  # only if the test failed: nothing should be there
            if os.path.exists(target):
                os.unlink(target)


def test_the_hosts_shadow_file_is_not_readable(api: Api, sid: str) -> None:
    result = sh(api, sid, "cat /etc/shadow")
    assert result["exit_code"] != 0 and result["stdout"] == ""


def test_a_symlink_to_the_root_names_the_sandboxs_root(api: Api, sid: str) -> None:
    directory = tempfile.mkdtemp(prefix="agentcube-canary-", dir="/tmp")
    try:
        with open(os.path.join(directory, "c.txt"), "w") as handle:
            handle.write("host secret")
        result = sh(api, sid, f"ln -s / up && ls up/tmp && cat up{directory}/c.txt")
        assert "host secret" not in result["stdout"]
        # the file API refuses the link as PicoD does (it leads out of the workspace)
        download = api.download(sid, f"up{directory}/c.txt")
        assert download.status_code in (400, 404)
        assert b"host secret" not in download.content
    finally:
        os.unlink(os.path.join(directory, "c.txt"))
        os.rmdir(directory)


def test_uid_0_inside_is_this_user_outside(api: Api, jail: LocalAgentCube, sid: str) -> None:
    result = sh(api, sid, "id -u; touch mine; stat -c %u mine")
    assert result["stdout"] == "0\n0\n"
    workspace = next(s.workspace for s in jail.sessions() if s.session_id == sid)
    assert workspace is not None
    assert os.stat(os.path.join(workspace, "mine")).st_uid == os.getuid()


def test_commands_cannot_remount_anything(api: Api, sid: str) -> None:
    result = sh(api, sid, "mount -o remount,rw /usr 2>&1; umount /usr 2>&1; echo $?")
    assert result["stdout"].strip().endswith("1") or "denied" in result["stdout"].lower()
    assert sh(api, sid, "grep CapBnd /proc/self/status")["stdout"] != ""
    assert sh(api, sid, "touch /usr/x && echo writable-layer")["stdout"] == "writable-layer\n"


# -- processes -------------------------------------------------------------------------------


def test_host_processes_are_invisible(
    api: Api, sid: str, bystander: subprocess.Popen[bytes]
) -> None:
    result = sh(api, sid, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; ls /proc/" + str(bystander.pid))
    assert "1000.125" not in result["stdout"]
    pids = sh(api, sid, "ls /proc | grep -c '^[0-9]'")["stdout"]
    assert int(pids) < 20  # PID 1, its supervisor, this command


def test_a_host_process_cannot_be_killed(
    api: Api, sid: str, bystander: subprocess.Popen[bytes]
) -> None:
    result = sh(api, sid, f"kill -9 {bystander.pid}; echo done")
    assert "done" in result["stdout"]
    time.sleep(0.2)
    assert bystander.poll() is None


def test_sessions_cannot_see_each_other(api: Api, sid: str) -> None:
    sh(api, sid, "echo a > /tmp/a-secret; sleep 1234.5 >/dev/null 2>&1 & echo a > ws-secret")
    other = api.create()
    try:
        seen = sh(api, other, "ls /tmp; ls; cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        assert "a-secret" not in seen["stdout"]
        assert "ws-secret" not in seen["stdout"]
        assert "1234.5" not in seen["stdout"]
    finally:
        api.delete(other)


@pytest.mark.parametrize(
    "escape",
    [
        "setsid sleep 1000.5 >/dev/null 2>&1 < /dev/null & echo $!",
        "nohup sleep 1000.5 >/dev/null 2>&1 & echo $!",
        'python3 -c "import os,sys,time\nif os.fork(): sys.exit(0)\nos.setsid()\n'
        "if os.fork(): sys.exit(0)\nprint(os.getpid(), flush=True)\nos.close(1)\nos.close(2)\n"
        'time.sleep(1000.5)"',
    ],
    ids=["setsid", "nohup", "double-fork"],
)
def test_nothing_survives_the_session(api: Api, jail: LocalAgentCube, escape: str) -> None:
    session = api.create()
    result = sh(api, session, escape, timeout="10s")
    inner = int(result["stdout"].split()[0])
    outer = host_pid(jail, session, inner)
    assert psutil.pid_exists(outer)
    assert api.delete(session).status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(outer).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    else:
        raise AssertionError(f"process {outer} survived its session")


def test_the_supervisor_and_picod_cannot_be_killed_from_inside(api: Api, sid: str) -> None:
    # signal PID 1 only if it is the sandbox's own (were isolation broken, never this machine's)
    host_namespace = os.readlink("/proc/self/ns/pid")
    script = (
        f'if [ "$(readlink /proc/self/ns/pid)" != "{host_namespace}" ]; then '
        "kill -9 1; sleep 0.2; echo alive; else echo this machine; fi"
    )
    result = sh(api, sid, script)
    assert result["stdout"] == "alive\n"
    assert sh(api, sid, "echo still")["stdout"] == "still\n"


# -- network ---------------------------------------------------------------------------------


@pytest.fixture
def host_service() -> Iterator[int]:
    """A TCP service on this machine's loopback that answers "host"."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"host")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


CONNECT = (
    "python3 -c \"import socket\ntry:\n    s = socket.create_connection(('127.0.0.1', {port}), "
    "timeout=3)\n    print(s.recv(10).decode())\nexcept OSError as e:\n    print('refused', e)\""
)


def test_the_hosts_loopback_services_are_unreachable(api: Api, sid: str, host_service: int) -> None:
    result = sh(api, sid, CONNECT.format(port=host_service))
    assert result["stdout"].startswith("refused"), result
    interfaces = sh(api, sid, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
    assert interfaces["stdout"] == "lo\n"


def test_a_host_network_template_reaches_the_host(api: Api, host_service: int) -> None:
    session = api.create(name="hostnet")
    try:
        result = sh(api, session, CONNECT.format(port=host_service))
        assert result["stdout"] == "host\n"
    finally:
        api.delete(session)


# -- limits ------------------------------------------------------------------------------------


def run_tight(api: Api, program: str, timeout: str) -> dict[str, Any]:
    """``program`` under python3 in a new session of the template with small limits."""
    session = api.create(name="tight")
    try:
        return api.execute(session, ["python3", "-c", program], timeout=timeout)
    finally:
        api.delete(session)


def test_a_fork_bomb_is_bounded(api: Api) -> None:
    bomb = (
        "import os, time\n"
        "made, deadline = 0, time.monotonic() + 10\n"
        "while made < 400 and time.monotonic() < deadline:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        os.close(1); os.close(2)\n"  # the answer does not wait for them
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    made += 1\n"
        "print(made, flush=True)\n"
        "os._exit(0)\n"
    )
    result = run_tight(api, bomb, "20s")
    assert int(result["stdout"]) < TIGHT.pids, result


def test_a_memory_hog_is_killed_as_picod_reports_it(api: Api) -> None:
    hog = (
        "import time\n"
        "kept, deadline = [], time.monotonic() + 15\n"
        "while len(kept) < 64 and time.monotonic() < deadline:\n"  # 512 MiB at most
        "    kept.append(bytearray(8 << 20))\n"
        "    print(len(kept), flush=True)\n"
    )
    result = run_tight(api, hog, "30s")
    reached = int(result["stdout"].split()[-1]) if result["stdout"].split() else 0
    assert reached * 8 * MiB < 2 * TIGHT.memory, result
    assert result["exit_code"] in (-1, 1), result  # killed (or MemoryError at RLIMIT_DATA)


def test_a_full_disk_is_bounded(api: Api) -> None:
    fill = (
        "import os, time\n"
        "written, deadline = 0, time.monotonic() + 15\n"
        "try:\n"
        "    with open('/tmp/fill', 'wb') as out:\n"
        "        while written < 64 << 20 and time.monotonic() < deadline:\n"
        "            out.write(b'x' * (1 << 20)); out.flush(); written += 1 << 20\n"
        "except OSError as exc:\n"
        "    print('stopped', exc.errno)\n"
        "print(written)\n"
    )
    result = run_tight(api, fill, "30s")
    assert result["stdout"].startswith("stopped 28"), result  # ENOSPC
    assert int(result["stdout"].split()[-1]) <= TIGHT.disk


# -- workspaces --------------------------------------------------------------------------------


def test_the_workspace_is_root_by_default(api: Api, sid: str) -> None:
    assert sh(api, sid, "pwd")["stdout"] == "/root\n"
    api.upload(sid, "via-api.txt", b"x")
    assert sh(api, sid, "ls /root")["stdout"] == "via-api.txt\n"


def test_deep_agents_absolute_paths_name_the_sandboxs_root(jail: LocalAgentCube) -> None:
    """LangChain Deep Agents runs PicoD with --workspace=/: /x.txt is the sandbox's own."""
    name = f"agentcube-deep-{secrets.token_hex(4)}.txt"
    with CodeInterpreterClient(
        "rootws", workload_manager_url=jail.workload_manager_url, router_url=jail.router_url
    ) as ci:
        ci.write_file("deep agents", f"/{name}")
        assert ci.execute_command(f"cat /{name}") == "deep agents"
        assert name in ci.execute_command("ls /")
        assert [f["name"] for f in ci.list_files("/") if f["name"] == name] == [name]
    assert not os.path.exists(f"/{name}")


# -- modes --------------------------------------------------------------------------------------


def test_namespaces_mode_refuses_to_start_where_the_kernel_cannot(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(isolation.ZYGOTE, "start_error", lambda: "unshare: Operation not permitted")
    with pytest.raises(RuntimeError, match="cannot be isolated here: unshare"):
        LocalAgentCube(quiet=True, isolation="namespaces").start()
    with LocalAgentCube(quiet=True) as cube:
        assert cube.isolation == "none"
    assert any(
        record.levelname == "WARNING" and "user namespaces are needed" in record.getMessage()
        for record in caplog.records
    )


def test_auto_falls_back_when_a_whole_sandbox_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe may pass where building a sandbox still fails (a mount refused, say): the
    server finds out at start from a trial sandbox, not at its first session."""
    monkeypatch.setattr(isolation, "_TRIAL", ["the sandbox did not start: pivot_root: EPERM"])
    with LocalAgentCube(quiet=True) as cube:
        assert cube.isolation == "none"
    with pytest.raises(RuntimeError, match="pivot_root: EPERM"):
        LocalAgentCube(quiet=True, isolation="namespaces").start()


def test_a_trial_sandbox_is_built_once_per_process(jail: LocalAgentCube) -> None:
    assert isolation._TRIAL == [None]  # built (and ended) when the first cube started


def test_none_mode_runs_on_this_machine() -> None:
    with LocalAgentCube(quiet=True, isolation="none") as cube:
        assert cube.isolation == "none"
        api = Api(cube)
        session = api.create()
        try:
            assert sh(api, session, "echo $PWD")["stdout"].startswith(cube.root_dir or "?")
        finally:
            api.delete(session)


def test_bad_sandbox_options_are_refused_before_start() -> None:
    with pytest.raises(ValueError, match="isolation must be one of"):
        LocalAgentCube(isolation="chroot")
    with pytest.raises(ValueError, match="absolute path"):
        LocalAgentCube(workspaces={"*": "relative"})
    with pytest.raises(ValueError, match="'none' or 'host'"):
        LocalAgentCube(networks={"*": "bridge"})


# -- the Router in front of an isolated PicoD -----------------------------------------------


def test_a_huge_declared_upload_is_refused_while_the_client_sends(
    api: Api, jail: LocalAgentCube, sid: str
) -> None:
    port = int(api.router.rsplit(":", 1)[1])
    head = (
        b"POST /v1/namespaces/default/code-interpreters/my-interpreter/invocations/api/files "
        b"HTTP/1.1\r\nHost: x\r\n" + SESSION_HEADER.encode() + b": " + sid.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 1000000000000\r\n\r\n--b\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head)  # and the body goes on: the answer comes before it is read
        assert conn.recv(65536).split(b" ", 2)[1] == b"413"


def test_a_body_that_breaks_on_the_way_is_the_routers_503(api: Api, sid: str) -> None:
    """Forwarded to a sandbox, a client body that breaks is a forwarding failure (503), as the
    real Router answers any failure but refusal and timeout."""
    port = int(api.router.rsplit(":", 1)[1])
    request = (
        b"POST /v1/namespaces/default/code-interpreters/my-interpreter/invocations/api/execute "
        b"HTTP/1.1\r\nHost: x\r\n" + SESSION_HEADER.encode() + b": " + sid.encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.split(b" ", 2)[1] == b"503"
    assert answer.endswith(b'{"error":"sandbox unreachable"}')
    assert sh(api, sid, "echo fine")["stdout"] == "fine\n"


def test_files_written_inside_are_read_through_the_api(
    api: Api, jail: LocalAgentCube, sid: str
) -> None:
    sh(api, sid, "mkdir -p d && printf made-inside > d/f.txt")
    assert api.download(sid, "d/f.txt").content == b"made-inside"
    body = {"path": "d/g.txt", "content": base64.b64encode(b"via api").decode()}
    assert api.call(sid, "POST", "api/files", json=body).status_code == 200
    assert sh(api, sid, "cat d/g.txt")["stdout"] == "via api"
    with open(host_view(jail, sid, "/root/d/g.txt"), "rb") as handle:
        assert handle.read() == b"via api"


# -- a server that dies leaves nothing behind ----------------------------------------------------

_DYING_SERVER = """
import sys, requests
from agentcube.local import LocalAgentCube
cube = LocalAgentCube(quiet=True, isolation="namespaces").start()
answer = requests.post(cube.workload_manager_url + "/v1/code-interpreter",
                       json={"name": "my-interpreter", "namespace": "default"}, timeout=30)
print(answer.json()["sessionId"], flush=True)
sys.stdin.read()
"""


def _session_cgroups(session_id: str) -> list[str]:
    found = []
    for directory, subdirectories, _ in os.walk("/sys/fs/cgroup"):
        if f"agentcube-{session_id}" in subdirectories:
            found.append(os.path.join(directory, f"agentcube-{session_id}"))
        if directory.count("/") > 8:
            subdirectories.clear()
    return found


def test_a_killed_server_leaves_no_sandbox_and_no_cgroup(jail: LocalAgentCube) -> None:
    import sys

    server = subprocess.Popen(
        [sys.executable, "-c", _DYING_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        session_id = server.stdout.readline().strip()
        assert session_id, "the server did not create a session"
        cgroups = _session_cgroups(session_id)
        if not cgroups:
            pytest.skip("no cgroup controller is granted here (limits fall back to rlimits)")
        sandbox = [p for p in psutil.Process(server.pid).children(recursive=True)]
        assert sandbox
    finally:
        server.kill()  # no atexit, no stop(): as a crash
        server.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        _session_cgroups(session_id)
        or any(p.is_running() and p.status() != "zombie" for p in sandbox)
    ):
        time.sleep(0.05)
    assert _session_cgroups(session_id) == [], "the dead server's sandbox kept its cgroups"
    assert not any(p.is_running() and p.status() != "zombie" for p in sandbox)
