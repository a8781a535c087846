"""Router: health, session bootstrap, session lookup, echo and forwarding agents."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import requests

from agentcube.local import LocalAgentCube

from .helpers import NS, SESSION_HEADER, Api


@pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
def test_health(api: Api, path: str) -> None:
    response = api.http.get(api.router + path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


def test_bootstrap_with_bare_get_sets_header_on_404(api: Api, cube: LocalAgentCube) -> None:
    response = api.http.get(api.agent_url("echo-agent"))
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}
    sid = response.headers[SESSION_HEADER]
    info = next(s for s in cube.sessions() if s.session_id == sid)
    assert (info.kind, info.name, info.namespace) == ("AgentRuntime", "echo-agent", NS)
    # the session is usable afterwards
    echoed = api.http.post(
        api.agent_url("echo-agent", "chat"), json={"q": [1, 2]}, headers={SESSION_HEADER: sid}
    )
    assert echoed.status_code == 200
    assert echoed.headers[SESSION_HEADER] == sid
    assert echoed.json() == {"echo": {"q": [1, 2]}, "path": "chat"}
    assert api.delete(sid, "agent-runtime").status_code == 200


def test_bootstrap_without_trailing_slash(api: Api) -> None:
    url = api.agent_url("echo-agent").rstrip("/")
    redirect = api.http.get(url, allow_redirects=False)
    assert (redirect.status_code, redirect.headers["Location"]) == (
        301,
        url[len(api.router) :] + "/",
    )
    assert redirect.text == f'<a href="{url[len(api.router) :]}/">Moved Permanently</a>.\n\n'
    assert SESSION_HEADER not in redirect.headers
    posted = api.http.post(url, json={}, allow_redirects=False)
    assert (posted.status_code, posted.content) == (307, b"")
    response = api.http.get(url)  # requests follows the redirect, which bootstraps
    assert response.status_code == 404
    assert SESSION_HEADER in response.headers
    api.delete(response.headers[SESSION_HEADER])


def test_bootstrap_code_interpreter(api: Api, cube: LocalAgentCube) -> None:
    response = api.http.post(api.ci_url("api/execute"), json={"command": ["echo", "hi"]})
    assert response.status_code == 200
    assert response.json()["stdout"] == "hi\n"
    sid = response.headers[SESSION_HEADER]
    assert cube.has_session(sid)
    api.delete(sid)


def test_bootstrap_unknown_template_404(api: Api, cube: LocalAgentCube) -> None:
    before = len(cube.sessions())
    response = api.http.get(api.agent_url("no-such-agent"))
    assert response.status_code == 404
    assert response.json() == {
        "error": f'agentruntimes.agentcube.volcano.sh "{NS}/no-such-agent" not found'
    }
    assert SESSION_HEADER not in response.headers
    response = api.http.post(api.ci_url("api/execute", name="nope"), json={"command": ["true"]})
    assert response.json() == {
        "error": f'codeinterpreters.agentcube.volcano.sh "{NS}/nope" not found'
    }
    assert len(cube.sessions()) == before


def test_unknown_session_404(api: Api) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    response = api.http.post(
        api.ci_url("api/execute"), json={"command": ["true"]}, headers={SESSION_HEADER: unknown}
    )
    assert response.status_code == 404
    assert response.json() == {"error": f'sessions.agentcube.volcano.sh "{unknown}" not found'}
    assert SESSION_HEADER not in response.headers
    odd = 'a"b\tc'
    response = api.http.get(api.ci_url("api/files/x"), headers={SESSION_HEADER: odd})
    assert response.json() == {"error": 'sessions.agentcube.volcano.sh "a\\"b\\tc" not found'}


def test_the_session_id_alone_routes(api: Api, session_id: str) -> None:
    headers = {SESSION_HEADER: session_id}
    urls = [
        api.agent_url("echo-agent", "api/execute"),
        api.ci_url("api/execute", name="other-interpreter"),
        api.ci_url("api/execute", namespace="elsewhere"),
        api.ci_url("api/execute"),
    ]
    for url in urls:
        response = api.http.post(url, json={"command": ["true"]}, headers=headers)
        assert response.status_code == 200, url
        assert response.headers[SESSION_HEADER] == session_id


def test_header_on_every_forwarded_status(api: Api, session_id: str) -> None:
    cases = [
        ("POST", "api/execute", {"json": {"command": []}}, 400),
        ("GET", "api/files/missing.txt", {}, 404),
        ("GET", "no/such/endpoint", {}, 404),
        ("POST", "api/execute", {"json": {"command": ["true"]}}, 200),
    ]
    for method, subpath, kwargs, status in cases:
        response = api.call(session_id, method, subpath, **kwargs)
        assert response.status_code == status, (subpath, response.text)
        assert response.headers[SESSION_HEADER] == session_id
    # only GET and POST are routed: the Router's own 404, without the header
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        response = api.call(session_id, method, "api/execute")
        assert (response.status_code, response.text) == (404, "404 page not found")
        assert SESSION_HEADER not in response.headers


def test_activity_is_recorded(api: Api, cube: LocalAgentCube, session_id: str) -> None:
    def last_used() -> float:
        return next(s.last_used for s in cube.sessions() if s.session_id == session_id)

    before = last_used()
    api.execute(session_id, ["true"])
    assert last_used() > before


def test_echo_agent_text_and_methods(api: Api) -> None:
    response = api.http.post(api.agent_url("second-agent", "a/b"), data=b"plain text")
    assert response.status_code == 200
    assert response.json() == {"echo": "plain text", "path": "a/b"}
    sid = response.headers[SESSION_HEADER]
    response = api.http.get(
        api.agent_url("second-agent", "any/path"), headers={SESSION_HEADER: sid}
    )
    assert response.status_code == 404
    assert response.headers[SESSION_HEADER] == sid
    api.delete(sid, "agent-runtime")


def test_unknown_router_paths(api: Api) -> None:
    for url in (
        api.router + "/nope",
        api.router + "/v1/namespaces/x/browsers/y/invocations/",
        api.router + "/health",
    ):
        response = api.http.get(url)
        assert (response.status_code, response.text) == (404, "404 page not found")
    response = api.http.request("OPTIONS", api.agent_url())
    assert (response.status_code, response.text) == (404, "404 page not found")
    for path, status in (("/health/live", "alive"), ("/health/ready", "ready")):
        assert api.http.get(api.router + path).json() == {"status": status}


def test_bad_escapes_in_the_path_are_a_bare_400(api: Api) -> None:
    import http.client

    host, port = api.router.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/v1/namespaces/default/code-interpreters/x/invocations/%zz")
    response = connection.getresponse()
    assert (response.status, response.read()) == (400, b"400 Bad Request")
    connection.close()


# -- forwarding agent -----------------------------------------------------------------------------
class _AgentHandler(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        record = {
            "method": self.command,
            "path": self.path,
            "body": body.decode(),
            "content_type": self.headers.get("Content-Type"),
            "session": self.headers.get(SESSION_HEADER),
            "authorization": self.headers.get("Authorization"),
        }
        self.seen.append(record)
        if self.path.endswith("/teapot"):
            payload, ctype, status = b"short and stout", "text/plain", 418
        else:
            payload, ctype, status = json.dumps(record).encode(), "application/json", 201
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture
def agent_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AgentHandler)
    _AgentHandler.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_forwarding_agent(api: Api, cube: LocalAgentCube, agent_server: str) -> None:
    cube.register_agent("my-agent", agent_server + "/base")
    response = api.http.post(
        api.agent_url("my-agent", "run/it") + "?x=1&y=two",
        data=b'{"hello": "world"}',
        headers={"Content-Type": "application/json", "Authorization": "Bearer not-forwarded"},
    )
    assert response.status_code == 201
    sid = response.headers[SESSION_HEADER]
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/base/run/it?x=1&y=two"
    assert seen["body"] == '{"hello": "world"}'
    assert seen["content_type"] == "application/json"
    assert seen["session"] is None  # the bootstrap request carried none
    # the client's token never reaches a sandbox: the Router signs its own
    assert seen["authorization"].startswith("Bearer ey")
    assert seen["authorization"] != "Bearer not-forwarded"

    response = api.http.get(api.agent_url("my-agent", "teapot"), headers={SESSION_HEADER: sid})
    assert response.status_code == 418
    assert response.text == "short and stout"
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers[SESSION_HEADER] == sid
    assert _AgentHandler.seen[-1]["session"] == sid
    api.delete(sid, "agent-runtime")


def test_forwarding_agent_unreachable_502(api: Api, cube: LocalAgentCube) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cube.register_agent("dead-agent", f"http://127.0.0.1:{port}")
    before = {s.session_id for s in cube.sessions()}
    response = api.http.post(api.agent_url("dead-agent", "x"), json={})
    assert response.status_code == 502
    assert response.json() == {"error": "sandbox unreachable"}
    # the session exists, but its id is never told
    assert SESSION_HEADER not in response.headers
    created = {s.session_id for s in cube.sessions()} - before
    assert len(created) == 1
    api.delete(created.pop())


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8000",
        "http://example.com/",
        "http://192.168.1.2",
        "ftp://127.0.0.1/",
        "https://8.8.8.8",
        "127.0.0.1:9000",
    ],
)
def test_register_agent_refuses_non_loopback(cube: LocalAgentCube, url: str) -> None:
    with pytest.raises(ValueError):
        cube.register_agent("bad", url)
    with pytest.raises(ValueError):
        LocalAgentCube(agents={"bad": url})


def test_register_agent_accepts_loopback(cube: LocalAgentCube) -> None:
    for url in ("http://127.0.0.1:1", "http://localhost:2/x", "http://127.5.5.5", "http://[::1]:3"):
        cube.register_agent("loopback-agent", url)
    cube.register_agent("loopback-agent", None)


def test_requests_seen_and_connections(api: Api, cube: LocalAgentCube) -> None:
    cube.reset_counters()
    with requests.Session() as http:
        for _ in range(3):
            http.get(api.router + "/health/live")
        http.get(api.wm + "/health")
    seen = cube.requests_seen()
    assert seen == [
        ("router", "GET", "/health/live"),
        ("router", "GET", "/health/live"),
        ("router", "GET", "/health/live"),
        ("workload_manager", "GET", "/health"),
    ]
    assert cube.connections_accepted() == {"workload_manager": 1, "router": 1}
    cube.reset_counters()
    assert cube.requests_seen() == []
    assert cube.connections_accepted() == {"workload_manager": 0, "router": 0}
