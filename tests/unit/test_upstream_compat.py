"""A drop-in for upstream's agentcube-sdk 0.1.0: names, signatures, attributes, behaviours.

Written from ../shared/upstream-sdk-api.md, one test per point a caller can see. The deliberate
differences (README "Differences from agentcube-sdk 0.1.0") are tested where they are built.
"""

from __future__ import annotations

import inspect
import logging
import time

import pytest
import requests

from agentcube import (
    AgentRuntimeClient,
    CodeInterpreterClient,
    CommandExecutionError,
    InvalidResponseError,
    ServiceAccountAuth,
    SessionError,
    StopOutcome,
    TokenAuth,
)
from agentcube.clients import (
    AgentRuntimeDataPlaneClient,
    CodeInterpreterDataPlaneClient,
    ControlPlaneClient,
)

from .uploads import upload_fields

WM = "http://wm.test"
ROUTER = "http://router.test"
HEADER = "x-agentcube-session-id"
CI_PREFIX = f"{ROUTER}/v1/namespaces/default/code-interpreters/my-interpreter/invocations/"
AR_PREFIX = f"{ROUTER}/v1/namespaces/default/agent-runtimes/my-agent/invocations/"
EXEC_OK = {"stdout": "ok\n", "stderr": "", "exit_code": 0}

_EMPTY = inspect.Parameter.empty


def _leading(callable_: object, count: int) -> list[tuple[str, object]]:
    """Name and default of the first ``count`` positional-or-keyword parameters."""
    params = list(inspect.signature(callable_).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    head = params[:count]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in head), head
    return [(p.name, p.default) for p in head]


# -- signatures: names, order and defaults of every public parameter upstream has -------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            CodeInterpreterClient,
            [
                ("name", "my-interpreter"),
                ("namespace", "default"),
                ("ttl", 3600),
                ("workload_manager_url", None),
                ("router_url", None),
                ("auth_token", None),
                ("verbose", False),
                ("session_id", None),
                ("auth", None),
            ],
        ),
        (
            AgentRuntimeClient,
            [
                ("agent_name", _EMPTY),
                ("namespace", "default"),
                ("router_url", None),
                ("verbose", False),
                ("session_id", None),
                ("timeout", 120),
                ("connect_timeout", 5.0),
                ("auth_token", None),
                ("auth", None),
            ],
        ),
        (
            ControlPlaneClient,
            [
                ("workload_manager_url", None),
                ("auth_token", None),
                ("timeout", 120),
                ("connect_timeout", 5.0),
                ("pool_connections", 10),
                ("pool_maxsize", 10),
                ("auth", None),
            ],
        ),
        (
            CodeInterpreterDataPlaneClient,
            [
                ("session_id", _EMPTY),
                ("router_url", None),
                ("namespace", None),
                ("cr_name", None),
                ("base_url", None),
                ("timeout", 120),
                ("connect_timeout", 5.0),
                ("pool_connections", 10),
                ("pool_maxsize", 10),
                ("auth", None),
            ],
        ),
        (
            AgentRuntimeDataPlaneClient,
            [
                ("router_url", _EMPTY),
                ("namespace", _EMPTY),
                ("agent_name", _EMPTY),
                ("timeout", 120),
                ("connect_timeout", 5.0),
                ("pool_connections", 10),
                ("pool_maxsize", 10),
                ("auth", None),
            ],
        ),
        (
            ServiceAccountAuth,
            [
                ("token_url", _EMPTY),
                ("client_id", _EMPTY),
                ("client_secret", _EMPTY),
                ("scope", None),
                ("headers", None),
                ("timeout", (5.0, 30.0)),
            ],
        ),
        (TokenAuth, [("token", _EMPTY)]),
        (
            CommandExecutionError,
            [("exit_code", _EMPTY), ("stderr", _EMPTY), ("command", None)],
        ),
        (
            ControlPlaneClient.create_session,
            [
                ("name", "my-interpreter"),
                ("namespace", "default"),
                ("metadata", None),
                ("ttl", 3600),
            ],
        ),
        (ControlPlaneClient.delete_session, [("session_id", _EMPTY)]),
        (CodeInterpreterDataPlaneClient.execute_command, [("command", _EMPTY), ("timeout", None)]),
        (
            CodeInterpreterDataPlaneClient.execute_command_result,
            [("command", _EMPTY), ("timeout", None)],
        ),
        (
            CodeInterpreterDataPlaneClient.run_code,
            [("language", _EMPTY), ("code", _EMPTY), ("timeout", None)],
        ),
        (CodeInterpreterDataPlaneClient.write_file, [("content", _EMPTY), ("remote_path", _EMPTY)]),
        (
            CodeInterpreterDataPlaneClient.upload_file,
            [("local_path", _EMPTY), ("remote_path", _EMPTY)],
        ),
        (
            CodeInterpreterDataPlaneClient.download_file,
            [("remote_path", _EMPTY), ("local_path", _EMPTY)],
        ),
        (CodeInterpreterDataPlaneClient.list_files, [("path", ".")]),
        (
            AgentRuntimeDataPlaneClient.invoke,
            [("session_id", _EMPTY), ("payload", _EMPTY), ("timeout", None), ("path", "")],
        ),
        (CodeInterpreterClient.execute_command, [("command", _EMPTY), ("timeout", None)]),
        (CodeInterpreterClient.execute_command_result, [("command", _EMPTY), ("timeout", None)]),
        (
            CodeInterpreterClient.run_code,
            [("language", _EMPTY), ("code", _EMPTY), ("timeout", None)],
        ),
        (CodeInterpreterClient.write_file, [("content", _EMPTY), ("remote_path", _EMPTY)]),
        (CodeInterpreterClient.upload_file, [("local_path", _EMPTY), ("remote_path", _EMPTY)]),
        (CodeInterpreterClient.download_file, [("remote_path", _EMPTY), ("local_path", _EMPTY)]),
        (CodeInterpreterClient.list_files, [("path", ".")]),
        (
            CodeInterpreterClient.__exit__,
            [("exc_type", _EMPTY), ("exc_val", _EMPTY), ("exc_tb", _EMPTY)],
        ),
        (AgentRuntimeClient.invoke, [("payload", _EMPTY), ("timeout", None), ("path", "")]),
    ],
    ids=lambda v: getattr(v, "__qualname__", None),
)
def test_upstream_parameters_keep_their_names_order_and_defaults(target, expected):
    assert _leading(target, len(expected)) == expected


def test_the_utils_helpers_exist_with_their_signatures():
    from agentcube.utils.http import create_session
    from agentcube.utils.log import get_logger
    from agentcube.utils.utils import read_token_from_file

    assert _leading(create_session, 2) == [("pool_connections", 10), ("pool_maxsize", 10)]
    assert _leading(get_logger, 2) == [("name", _EMPTY), ("level", logging.INFO)]
    assert _leading(read_token_from_file, 1) == [("file_path", _EMPTY)]


# -- attributes the constructors set -------------------------------------------------------------


def test_code_interpreter_client_attributes(requests_mock):
    requests_mock.post(f"{WM}/v1/code-interpreter", json={"sessionId": "ci-1"})
    ci = CodeInterpreterClient("my-interpreter", "default", 60, WM, ROUTER, "tok", False)
    assert (ci.name, ci.namespace, ci.ttl, ci.verbose) == ("my-interpreter", "default", 60, False)
    assert ci.router_url == ROUTER and ci.session_id == "ci-1"
    assert ci.logger.name == "agentcube.code_interpreter"
    assert isinstance(ci.cp_client, ControlPlaneClient) and ci.cp_client.base_url == WM
    assert isinstance(ci.dp_client, CodeInterpreterDataPlaneClient)
    assert ci.dp_client.session_id == "ci-1" and ci.dp_client.cr_name == "my-interpreter"
    ci.detach()


def test_agent_runtime_client_attributes(requests_mock):
    ar = AgentRuntimeClient(
        "my-agent", router_url=ROUTER, session_id="ar-1", timeout=33, connect_timeout=2.5
    )
    assert (ar.agent_name, ar.namespace, ar.session_id) == ("my-agent", "default", "ar-1")
    assert (ar.timeout, ar.connect_timeout, ar.router_url) == (33, 2.5, ROUTER)
    assert ar.logger.name == "agentcube.agent_runtime"
    assert isinstance(ar.dp_client, AgentRuntimeDataPlaneClient)
    assert requests_mock.call_count == 0


def test_low_level_client_attributes():
    cp = ControlPlaneClient(WM, "tok", 30, 2.0)
    assert (cp.base_url, cp.timeout, cp.connect_timeout) == (WM, 30, 2.0)
    assert isinstance(cp.session, requests.Session)
    assert cp.logger.name == "agentcube.clients.control_plane.ControlPlaneClient"
    dp = CodeInterpreterDataPlaneClient("ci-1", ROUTER, "default", "my-interpreter")
    assert (dp.session_id, dp.cr_name, dp.timeout, dp.connect_timeout) == (
        "ci-1",
        "my-interpreter",
        120,
        5.0,
    )
    assert (dp.pool_connections, dp.pool_maxsize) == (10, 10)
    assert dp.base_url == CI_PREFIX
    assert isinstance(dp.session, requests.Session)
    assert dp.logger.name.endswith("CodeInterpreterDataPlaneClient")
    ar = AgentRuntimeDataPlaneClient(ROUTER, "default", "my-agent")
    assert (ar.router_url, ar.namespace, ar.agent_name, ar.base_url) == (
        ROUTER,
        "default",
        "my-agent",
        AR_PREFIX,
    )
    assert ar.SESSION_HEADER == AgentRuntimeDataPlaneClient.SESSION_HEADER == HEADER


def test_base_url_replaces_router_namespace_and_name(requests_mock):
    execute = requests_mock.post("http://gw.test/custom/invocations/api/execute", json=EXEC_OK)
    dp = CodeInterpreterDataPlaneClient("ci-1", base_url="http://gw.test/custom/invocations")
    assert dp.execute_command("true") == "ok\n"
    assert execute.last_request.headers[HEADER] == "ci-1"
    with pytest.raises(ValueError, match="Either 'base_url' or all of"):
        CodeInterpreterDataPlaneClient("ci-1", ROUTER)


# -- behaviours ------------------------------------------------------------------------------


def test_session_id_is_none_after_a_successful_stop_and_kept_after_a_failed_one(requests_mock):
    requests_mock.post(f"{WM}/v1/code-interpreter", json={"sessionId": "ci-1"})
    delete = requests_mock.delete(
        f"{WM}/v1/code-interpreter/sessions/ci-1",
        [{"status_code": 500, "json": {"message": "boom"}}, {"json": {}}],
    )
    ci = CodeInterpreterClient(
        workload_manager_url=WM,
        router_url=ROUTER,
        retry=__import__("agentcube").RetryPolicy(max_attempts=1),
    )
    with pytest.raises(requests.HTTPError):
        ci.stop()
    assert ci.session_id == "ci-1", "a session that may still run is never forgotten"
    assert ci.stop() is StopOutcome.DELETED
    assert ci.session_id is None
    assert ci.dp_client is None
    assert delete.call_count == 2


@pytest.mark.parametrize("token", ["", "   "])
def test_an_empty_auth_token_means_no_token(requests_mock, token):
    execute = requests_mock.post(CI_PREFIX + "api/execute", json=EXEC_OK)
    ci = CodeInterpreterClient(
        session_id="ci-1", workload_manager_url=WM, router_url=ROUTER, auth_token=token
    )
    ci.execute_command("true")
    assert "Authorization" not in execute.last_request.headers
    ci.detach()


@pytest.mark.parametrize(
    ("timeout", "limit"), [(None, "120.000"), (0, "120.000"), (61, "61.000"), (1800.0, "1800.000")]
)
def test_the_command_timeout_defaults_to_120_seconds(requests_mock, timeout, limit):
    execute = requests_mock.post(CI_PREFIX + "api/execute", json=EXEC_OK)
    dp = CodeInterpreterDataPlaneClient("ci-1", ROUTER, "default", "my-interpreter")
    dp.execute_command_result("sleep 1", timeout)
    assert execute.last_request.json()["command"][3] == limit  # timeout(1)'s limit
    dp.execute_command_result(["sleep", "1"], timeout)  # an argv runs as is
    assert execute.last_request.json()["timeout"] == f"{int(float(limit))}s"


def test_a_tuple_argv_is_sent_as_a_list(requests_mock):
    execute = requests_mock.post(CI_PREFIX + "api/execute", json=EXEC_OK)
    dp = CodeInterpreterDataPlaneClient("ci-1", ROUTER, "default", "my-interpreter")
    dp.execute_command(("echo", "a b"))
    assert execute.last_request.json()["command"] == ["echo", "a b"]


def test_command_failure_carries_the_whole_stderr(requests_mock):
    stderr = "Traceback (most recent call last):\n" + "  line\n" * 200 + "NameError: x"
    requests_mock.post(
        CI_PREFIX + "api/execute", json={"stdout": "", "stderr": stderr, "exit_code": 1}
    )
    dp = CodeInterpreterDataPlaneClient("ci-1", ROUTER, "default", "my-interpreter")
    with pytest.raises(CommandExecutionError) as info:
        dp.execute_command("python3 x.py")
    assert str(info.value) == f"Command failed (exit 1): {stderr}"
    assert info.value.command == "python3 x.py"


@pytest.mark.parametrize(
    ("code", "sent"),
    [
        ("x = 1\\nprint(x)", "x = 1\nprint(x)"),  # double-escaped: repaired
        ("print('a\\nb')", "print('a\\nb')"),  # valid as it is: unchanged
        ("s = 'a\\nb'\\nprint(s)", "s = 'a\\nb'\\nprint(s)"),  # the repair would break it
        ("print(1)\n", "print(1)\n"),
    ],
)
def test_run_code_repairs_python_sent_with_literal_backslash_n(requests_mock, code, sent, caplog):
    files = requests_mock.post(CI_PREFIX + "api/files", json={"path": "x", "size": 1})
    requests_mock.post(CI_PREFIX + "api/execute", json=EXEC_OK)
    dp = CodeInterpreterDataPlaneClient("ci-1", ROUTER, "default", "my-interpreter")
    with caplog.at_level(logging.WARNING, logger="agentcube"):
        dp.run_code("python", code)
    assert upload_fields(files.last_request)["file"] == sent.encode()
    repaired = sent != code
    assert ("double-escaped newlines" in caplog.text) == repaired


def test_run_code_does_not_repair_bash(requests_mock):
    files = requests_mock.post(CI_PREFIX + "api/files", json={"path": "x", "size": 1})
    requests_mock.post(CI_PREFIX + "api/execute", json=EXEC_OK)
    dp = CodeInterpreterDataPlaneClient("ci-1", ROUTER, "default", "my-interpreter")
    dp.run_code("bash", "echo a\\nb")
    assert upload_fields(files.last_request)["file"] == b"echo a\\nb"


def test_unsupported_language_message_starts_as_before(requests_mock):
    dp = CodeInterpreterDataPlaneClient("ci-1", ROUTER, "default", "my-interpreter")
    with pytest.raises(ValueError, match=r"^Unsupported language: ruby"):
        dp.run_code("ruby", "puts 1")
    assert requests_mock.call_count == 0


def test_upload_of_a_missing_file_says_so_before_sending(requests_mock, tmp_path):
    dp = CodeInterpreterDataPlaneClient("ci-1", ROUTER, "default", "my-interpreter")
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=f"Local file not found: {missing}"):
        dp.upload_file(str(missing), "x.txt")
    assert requests_mock.call_count == 0


def test_list_files_returns_the_entries_as_the_sandbox_sent_them(requests_mock):
    entries = [
        {
            "name": "a.txt",
            "size": 1,
            "modified": "2026-11-24T04:40:55Z",
            "mode": "-rw-r--r--",
            "is_dir": False,
            "extra": 7,
        }
    ]
    requests_mock.get(CI_PREFIX + "api/files", json={"files": entries})
    dp = CodeInterpreterDataPlaneClient("ci-1", ROUTER, "default", "my-interpreter")
    assert dp.list_files() == entries
    assert requests_mock.last_request.qs == {"path": ["."]}


def test_delete_session_returns_true_when_gone_and_false_on_failure(requests_mock):
    cp = ControlPlaneClient(WM, retry=__import__("agentcube").RetryPolicy(max_attempts=1))
    requests_mock.delete(f"{WM}/v1/code-interpreter/sessions/a", json={})
    requests_mock.delete(
        f"{WM}/v1/code-interpreter/sessions/b",
        status_code=404,
        json={"message": "Session ID b not found, maybe already deleted"},
    )
    requests_mock.delete(
        f"{WM}/v1/code-interpreter/sessions/c", exc=requests.exceptions.ConnectionError("down")
    )
    assert cp.delete_session("a") is True
    assert cp.delete_session("b") is True
    assert cp.delete_session("c") is False


def test_create_session_returns_the_id_and_a_missing_one_is_a_value_error(requests_mock):
    cp = ControlPlaneClient(WM)
    create = requests_mock.post(
        f"{WM}/v1/code-interpreter", [{"json": {"sessionId": "s-1"}}, {"json": {"kind": "Sandbox"}}]
    )
    assert cp.create_session("my-interpreter", "default", {"k": "v"}, 60) == "s-1"
    assert create.last_request.json() == {
        "name": "my-interpreter",
        "namespace": "default",
        "ttl": 60,
        "metadata": {"k": "v"},
    }
    with pytest.raises(ValueError, match="'sessionId' missing") as info:
        cp.create_session()
    assert isinstance(info.value, (InvalidResponseError, SessionError))


def test_bootstrap_without_the_header_is_a_value_error(requests_mock):
    requests_mock.get(AR_PREFIX, json={})
    dp = AgentRuntimeDataPlaneClient(ROUTER, "default", "my-agent")
    with pytest.raises(ValueError, match="Missing required response header"):
        dp.bootstrap_session_id()


def test_bootstrap_takes_the_id_from_an_error_answer(requests_mock):
    requests_mock.get(AR_PREFIX, status_code=404, headers={HEADER: "ar-9"}, json={})
    assert AgentRuntimeDataPlaneClient(ROUTER, "default", "my-agent").bootstrap_session_id() == (
        "ar-9"
    )


def test_invoke_returns_json_or_text(requests_mock):
    requests_mock.post(AR_PREFIX, [{"json": {"output": 1}}, {"text": "plain"}, {"text": ""}])
    ar = AgentRuntimeClient("my-agent", router_url=ROUTER, session_id="ar-1")
    assert ar.invoke(payload={"q": 1}) == {"output": 1}
    assert ar.invoke({"q": 1}) == "plain"
    assert ar.invoke({"q": 1}) == ""


def test_missing_urls_are_named_as_before(requests_mock):
    with pytest.raises(ValueError) as info:
        ControlPlaneClient()
    assert str(info.value) == (
        "Workload Manager URL must be provided via 'workload_manager_url' argument or "
        "'WORKLOAD_MANAGER_URL' environment variable."
    )
    with pytest.raises(ValueError) as info:
        CodeInterpreterClient()
    assert "Workload Manager URL must be provided" in str(info.value)  # checked first
    with pytest.raises(ValueError) as info:
        CodeInterpreterClient(workload_manager_url=WM)
    assert str(info.value) == (
        "Router URL for Data Plane communication must be provided via 'router_url' argument "
        "or 'ROUTER_URL' environment variable."
    )
    assert requests_mock.call_count == 0


# -- ServiceAccountAuth ------------------------------------------------------------------------


TOKEN_URL = "http://idp.test/realms/x/protocol/openid-connect/token"


def test_service_account_auth_sends_headers_and_a_positional_scope(requests_mock):
    token = requests_mock.post(TOKEN_URL, json={"access_token": "t-1", "expires_in": 300})
    auth = ServiceAccountAuth(
        TOKEN_URL, "client", "s3cret", "openid", {"Host": "keycloak.local"}, (1.0, 2.0)
    )
    assert auth.get_token() == "t-1"
    request = token.last_request
    assert request.headers["Host"] == "keycloak.local"
    assert request.timeout == (1.0, 2.0)
    assert request.text == (
        "grant_type=client_credentials&client_id=client&client_secret=s3cret&scope=openid"
    )


@pytest.mark.parametrize(
    ("expires_in", "cached_for"), [(3600, 3570), (120, 90), (60, 30), (40, 20), ("300", 270)]
)
def test_service_account_auth_refreshes_30_seconds_early(
    requests_mock, monkeypatch, expires_in, cached_for
):
    token = requests_mock.post(TOKEN_URL, json={"access_token": "t", "expires_in": expires_in})
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    auth = ServiceAccountAuth(TOKEN_URL, "client", "s3cret")
    auth.get_token()
    now[0] += cached_for - 0.5
    auth.get_token()
    assert token.call_count == 1
    now[0] += 1.0
    auth.get_token()
    assert token.call_count == 2


@pytest.mark.parametrize("bad", [(1.0,), (1.0, 0), "5", (1, 2, 3), float("nan")])
def test_service_account_auth_refuses_a_bad_timeout(bad):
    with pytest.raises(ValueError):
        ServiceAccountAuth(TOKEN_URL, "client", "s3cret", timeout=bad)


def test_service_account_auth_refuses_bad_headers():
    with pytest.raises(ValueError):
        ServiceAccountAuth(TOKEN_URL, "client", "s3cret", headers={"Host": "a\r\nX: y"})


# -- agentcube.utils ---------------------------------------------------------------------------


def test_utils_create_session_mounts_one_adapter_of_the_given_size():
    from agentcube.utils.http import create_session

    session = create_session(pool_connections=3, pool_maxsize=7)
    adapter = session.get_adapter("http://x.test")
    assert adapter is session.get_adapter("https://x.test")
    assert (adapter._pool_connections, adapter._pool_maxsize) == (3, 7)
    assert adapter.max_retries.total == 0


def test_utils_get_logger_configures_a_logger_once(capsys):
    from agentcube.utils.log import get_logger

    name = f"agentcube-test-{time.monotonic_ns()}"
    logger = get_logger(name, logging.DEBUG)
    assert logger.level == logging.DEBUG and len(logger.handlers) == 1
    again = get_logger(name, logging.ERROR)
    assert again is logger and logger.level == logging.DEBUG and len(logger.handlers) == 1
    logger.info("hello from the helper")
    assert f"| INFO | {name}" in capsys.readouterr().err
    logger.handlers.clear()


def test_utils_read_token_from_file(tmp_path):
    from agentcube.utils.utils import read_token_from_file

    path = tmp_path / "token"
    path.write_text("  tok-1\n")
    assert read_token_from_file(str(path)) == "tok-1"
    assert read_token_from_file(str(tmp_path / "missing")) == ""
    with pytest.raises(OSError):
        read_token_from_file(str(tmp_path))
