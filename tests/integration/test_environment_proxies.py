"""Proxy variables set or changed while a client lives apply from its next request, as they do
with plain requests (the SDK remembers the environment's settings only while it is unchanged).
Both the sandbox and the proxy are loopback servers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from agentcube._drivers import _environment
from agentcube.clients import CodeInterpreterDataPlaneClient

from .loopback import RecordingServer, json_answer

pytestmark = pytest.mark.skipif(
    not _environment._ENV_ONLY_PROXIES,
    reason="proxies come from the system here, not only from env",
)


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RecordingServer, RecordingServer]]:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    direct = RecordingServer(lambda seen: json_answer({"files": []}))
    proxy = RecordingServer(lambda seen: json_answer({"files": []}))
    yield direct, proxy
    direct.close()
    proxy.close()


def test_proxy_variables_apply_from_the_next_request(
    servers: tuple[RecordingServer, RecordingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    direct, proxy = servers
    dp = CodeInterpreterDataPlaneClient(
        "s-1", router_url=direct.url, namespace="default", cr_name="ci"
    )

    def route() -> str:
        before = len(direct.requests()), len(proxy.requests())
        dp.list_files()
        after = len(direct.requests()), len(proxy.requests())
        return {(1, 0): "direct", (0, 1): "proxy"}[(after[0] - before[0], after[1] - before[1])]

    assert route() == "direct"
    assert route() == "direct"
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert route() == "proxy"
    # Through a proxy, the request line carries the whole URL of the sandbox.
    assert proxy.requests()[-1].target.startswith(direct.url + "/")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert route() == "direct"
    monkeypatch.delenv("NO_PROXY")
    assert route() == "proxy"
    monkeypatch.delenv("HTTP_PROXY")
    assert route() == "direct"
    dp.close()
