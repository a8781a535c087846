"""Planted secrets never show, over real sockets, on success and on every failure path.

A distinctive token (and a client secret, for ServiceAccountAuth) is planted; the SDK talks to a
LocalAgentCube that requires the token, and ServiceAccountAuth to a token endpoint served here.
Everything a user could see is collected: log records of every logger at DEBUG (urllib3
included), the ``verbose=True`` stderr, ``repr()``/``str()`` of clients, auth objects, errors
(with their cause/context chains, notes and formatted tracebacks) and pydantic model dumps.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from agentcube import (
    AgentCubeError,
    AgentRuntimeClient,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    CodeInterpreterClient,
    RetryPolicy,
    ServerError,
    ServiceAccountAuth,
    TokenAuth,
)
from agentcube.clients import ControlPlaneClient
from agentcube.kinds import CODE_INTERPRETER
from agentcube.local import LocalAgentCube

from .loopback import Answer, RecordingServer, Seen, closed_port_url, json_answer

MARK = "PLANTED"
TOKEN = f"tok-{MARK}-7f3a9c41"
WRONG_TOKEN = f"wrong-{MARK}-0b9e2d"
CLIENT_SECRET = f"cs-{MARK}-c1d2e3f4"
ONCE = RetryPolicy(max_attempts=1)


@pytest.fixture(scope="module")
def secured() -> Iterator[LocalAgentCube]:
    with LocalAgentCube(quiet=True, token=TOKEN) as cube:
        yield cube
        assert cube.sessions() == []


@pytest.fixture(autouse=True)
def _clean(secured: LocalAgentCube) -> Iterator[None]:
    yield
    secured.clear_faults()
    leaked = [s.session_id for s in secured.sessions()]
    for sid in leaked:
        secured.delete_session(sid)
    assert not leaked


class IdP:
    """An OAuth2 token endpoint whose behaviour the test sets through ``mode``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.server = RecordingServer(self._answer)

    def _answer(self, seen: Seen) -> Answer:
        if self.mode == "ok":
            return json_answer({"access_token": TOKEN, "expires_in": 3600})
        if self.mode == "wrong":
            return json_answer({"access_token": WRONG_TOKEN, "expires_in": 3600})
        if self.mode == "401-echo":
            return json_answer(
                {"error": "invalid_client", "error_description": f"bad secret {CLIENT_SECRET}"},
                401,
            )
        if self.mode == "400-code-echo":
            return json_answer({"error": CLIENT_SECRET}, 400)
        if self.mode == "500-text":
            text = f"internal error; form was {seen.body.decode()}".encode()
            return Answer(500, text, {"Content-Type": "text/plain"})
        if self.mode == "slow":
            slow = json_answer({"access_token": TOKEN})
            slow.delay = 1.0  # longer than ServiceAccountAuth's timeout
            return slow
        raise AssertionError(self.mode)


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    provider = IdP()
    yield provider
    provider.server.close()


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # root: every logger's records, urllib3's included
    for name in ("agentcube", "urllib3", "agentcube.local"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _make_auth(kind: str, idp: IdP, token: str = TOKEN) -> Any:
    if kind == "token":
        return TokenAuth(token)
    idp.mode = "ok" if token == TOKEN else "wrong"
    return ServiceAccountAuth(
        idp.server.url + "/oauth2/token", "client-a", CLIENT_SECRET, timeout=0.5
    )


def _texts(thing: Any) -> list[str]:
    """Every text a user could see of ``thing``."""
    texts = [repr(thing), str(thing)]
    if isinstance(thing, pydantic.BaseModel):
        texts += [
            repr(thing.model_dump()),
            thing.model_dump_json(),
            repr(thing.model_dump(by_alias=True)),
        ]
    if isinstance(thing, BaseException):
        texts.append("".join(traceback.format_exception(thing)))
        seen: set[int] = set()
        current: BaseException | None = thing
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            texts += [repr(current), str(current), *map(repr, current.args)]
            texts += list(getattr(current, "__notes__", []))
            current = current.__cause__ or current.__context__
    return texts


def _assert_hidden(*things: Any) -> None:
    for thing in things:
        for text in _texts(thing):
            assert MARK not in text, f"a planted secret leaked in {text!r}"


def _assert_logs_clean(logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    for text in (logs.text, out, err):
        assert MARK not in text
    for record in logs.records:
        assert MARK not in record.getMessage()
        assert MARK not in repr(record.args)
    return err


@pytest.mark.parametrize("kind", ["token", "service_account"])
def test_success_paths_never_show_the_secrets(
    secured: LocalAgentCube,
    idp: IdP,
    kind: str,
    debug_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    idp.server.clear()
    auth = _make_auth(kind, idp)
    urls = {
        "workload_manager_url": secured.workload_manager_url,
        "router_url": secured.router_url,
    }
    ci = CodeInterpreterClient(**urls, auth=auth, verbose=True)
    assert ci.execute_command("echo hi") == "hi\n"  # the secured cube accepted the token
    dp = ci.data_plane
    models: list[Any] = [dp.write_file("x", "a.txt"), dp.execute(["true"])]
    ci.list_files(".")
    ci.download_file("a.txt", tmp_path / "a.txt")
    ar = AgentRuntimeClient("echo-agent", **urls, auth=auth, verbose=True)
    ar.invoke({"q": 1})
    cp = ControlPlaneClient(secured.workload_manager_url, auth=auth)
    created = cp.create(CODE_INTERPRETER, "my-interpreter")
    models.append(created)
    assert cp.delete(CODE_INTERPRETER, created.session_id)
    ci.stop()
    ar.stop()

    err = _assert_logs_clean(debug_logs, capfd)
    assert "api/execute" in err, "verbose=True should have logged the requests to stderr"
    assert any(r.name.startswith("urllib3") for r in debug_logs.records)
    _assert_hidden(ci, ar, dp, cp, auth, *models)
    if kind == "service_account":  # the secret did go to the token endpoint, and only there
        assert any(CLIENT_SECRET.encode() in s.body for s in idp.server.requests())


def _failures(secured: LocalAgentCube, kind: str, idp: IdP) -> list[BaseException]:
    """Every failure path of the SDK calls; returns what they raised."""
    urls = {
        "workload_manager_url": secured.workload_manager_url,
        "router_url": secured.router_url,
    }
    raised: list[BaseException] = []

    def expect(cls: type[BaseException], call: Any) -> None:
        with pytest.raises(cls) as info:
            call()
        raised.append(info.value)

    # 401: the cube refuses the token (TokenAuth: a wrong one; the IdP: hands out a wrong one).
    wrong = _make_auth(kind, idp, WRONG_TOKEN)
    expect(AuthenticationError, lambda: CodeInterpreterClient(**urls, auth=wrong, verbose=True))
    expect(
        AuthenticationError,
        lambda: AgentRuntimeClient("echo-agent", **urls, auth=wrong, verbose=True),
    )
    auth = _make_auth(kind, idp)
    ci = CodeInterpreterClient(**urls, auth=auth, verbose=True, retry=ONCE, timeout=0.5)
    # 500, with a server that echoes the credential it was sent.
    secured.inject_fault("POST", "*/api/execute", status=500, body={"error": f"bad bearer {TOKEN}"})
    expect(ServerError, lambda: ci.execute_command("true"))
    # A timeout: the answer comes after the read timeout.
    secured.inject_fault("GET", "*/api/files", delay=1.5)
    expect(APITimeoutError, lambda: ci.list_files("."))
    # A dropped connection.
    secured.inject_fault("POST", "*/api/files", drop=True)
    expect(APIConnectionError, lambda: ci.write_file("x", "b.txt"))
    # A failed stop(), then the retry that works.
    secured.inject_fault("DELETE", "/v1/*/sessions/*", status=500)
    expect(ServerError, ci.stop)
    ci.stop()
    # Connection refused.
    down = CodeInterpreterClient(
        session_id="s-1",
        workload_manager_url=closed_port_url(),
        router_url=closed_port_url(),
        auth=auth,
        verbose=True,
        retry=ONCE,
    )
    expect(APIConnectionError, lambda: down.execute_command("true"))
    expect(APIConnectionError, down.delete)
    raised += [ci, down, auth, wrong]  # type: ignore[list-item]
    return raised


@pytest.mark.parametrize("kind", ["token", "service_account"])
def test_failure_paths_never_show_the_secrets(
    secured: LocalAgentCube,
    idp: IdP,
    kind: str,
    debug_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    things = _failures(secured, kind, idp)
    _assert_logs_clean(debug_logs, capfd)
    _assert_hidden(*things)
    server_error = next(e for e in things if isinstance(e, ServerError))
    assert "[secure]" in str(server_error), "the echoed token should have been redacted"


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("401-echo", AuthenticationError),
        ("400-code-echo", AuthenticationError),
        ("500-text", AuthenticationError),
        ("slow", APITimeoutError),
    ],
)
def test_token_endpoint_errors_never_echo_the_client_secret(
    secured: LocalAgentCube,
    idp: IdP,
    mode: str,
    error: type[AgentCubeError],
    debug_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    idp.mode = mode
    auth = ServiceAccountAuth(
        idp.server.url + "/oauth2/token", "client-a", CLIENT_SECRET, timeout=0.5
    )
    with pytest.raises(error) as info:
        CodeInterpreterClient(
            workload_manager_url=secured.workload_manager_url,
            router_url=secured.router_url,
            auth=auth,
            verbose=True,
        )
    _assert_logs_clean(debug_logs, capfd)
    _assert_hidden(info.value, auth)
    assert secured.sessions() == []  # nothing was created without a token


def test_unreachable_token_endpoint_never_shows_the_secret(
    secured: LocalAgentCube, debug_logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    auth = ServiceAccountAuth(closed_port_url() + "/token", "client-a", CLIENT_SECRET)
    with pytest.raises(APIConnectionError) as info:
        CodeInterpreterClient(
            workload_manager_url=secured.workload_manager_url,
            router_url=secured.router_url,
            auth=auth,
        )
    _assert_logs_clean(debug_logs, capfd)
    _assert_hidden(info.value, auth)


@pytest.mark.parametrize(
    "bad", [f"{TOKEN}\n", f"{TOKEN}\r\nX-Injected: 1", f"\u00e9{TOKEN}", f"{TOKEN}\u2028", "\x00"]
)
def test_a_token_that_cannot_be_sent_is_refused_without_echo(
    secured: LocalAgentCube, idp: IdP, bad: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    class Provider:
        def get_token(self) -> str:
            return bad

    with pytest.raises(ValueError) as info:
        CodeInterpreterClient(
            workload_manager_url=secured.workload_manager_url,
            router_url=secured.router_url,
            auth=Provider(),
        )
    _assert_hidden(info.value)
    assert MARK not in debug_logs.text
    assert secured.sessions() == []
    # The same token from a token endpoint is refused there, as a bad answer.
    idp_bad = RecordingServer(lambda seen: json_answer({"access_token": bad}))
    try:
        auth = ServiceAccountAuth(idp_bad.url + "/token", "client-a", CLIENT_SECRET)
        with pytest.raises(AuthenticationError) as refused:
            auth.get_token()
        _assert_hidden(refused.value, auth)
    finally:
        idp_bad.close()


# -- redirects ----------------------------------------------------------------------------------


@pytest.fixture
def redirect_pair() -> Iterator[tuple[RecordingServer, RecordingServer]]:
    """A server answering 307 to the same path on a second loopback port, which answers 200."""

    def target_answer(seen: Seen) -> Answer:
        return json_answer(
            {"sessionId": "redirected-1", "files": [], "stdout": "", "exit_code": 0},
            **{"x-agentcube-session-id": "redirected-1"},
        )

    target = RecordingServer(target_answer)

    def redirect(seen: Seen) -> Answer:
        return Answer(307, b"", {"Location": target.url + seen.target})

    origin = RecordingServer(redirect)
    yield origin, target
    origin.close()
    target.close()


def test_redirects_are_not_followed_and_the_token_stays_put(
    redirect_pair: tuple[RecordingServer, RecordingServer],
) -> None:
    # AgentCube's services never redirect a request the SDK sends: a redirect means a wrong
    # URL. It is reported (status and Location), never followed, so the credential and the
    # body stay with the server they were meant for.
    origin, target = redirect_pair
    with pytest.raises(APIError) as create:
        CodeInterpreterClient(
            workload_manager_url=origin.url, router_url=origin.url, auth_token=TOKEN, retry=ONCE
        )
    ci = CodeInterpreterClient(
        session_id="attached-1",
        workload_manager_url=origin.url,
        router_url=origin.url,
        auth_token=TOKEN,
        retry=ONCE,
    )
    with pytest.raises(APIError) as listing:
        ci.list_files(".")
    with pytest.raises(APIError):
        ci.write_file("x", "a.txt")
    with pytest.raises(APIError):
        ci.stop()
    ci.detach()
    ar = AgentRuntimeClient(
        "echo-agent",
        session_id="attached-2",
        workload_manager_url=origin.url,
        router_url=origin.url,
        auth_token=TOKEN,
        retry=ONCE,
    )
    with pytest.raises(APIError):
        ar.invoke({"q": 1})
    for error in (create.value, listing.value):
        assert error.status_code == 307
        assert target.url in str(error)
        _assert_hidden(error)
    sent = origin.requests()
    assert len(sent) == 5
    assert all(s.header("Authorization") == [f"Bearer {TOKEN}"] for s in sent)
    assert target.requests() == [], "a redirect was followed"


def test_the_token_endpoint_is_never_redirected(
    redirect_pair: tuple[RecordingServer, RecordingServer],
) -> None:
    origin, target = redirect_pair
    auth = ServiceAccountAuth(origin.url + "/token", "client-a", CLIENT_SECRET)
    with pytest.raises(AuthenticationError) as info:
        auth.get_token()
    assert info.value.status_code == 307
    assert len(origin.requests()) == 1
    assert target.requests() == [], "the client secret must not follow a redirect"
    _assert_hidden(info.value, auth)
