"""The process-wide keep-alive pool: clients one after another reuse one connection per service."""

from __future__ import annotations

import pytest

from agentcube import AgentRuntimeClient, CodeInterpreterClient
from agentcube._drivers import _pool as _http
from agentcube.local import LocalAgentCube

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty pool for this test (the pool of the other tests is left as it was)."""
    monkeypatch.setattr(_http, "_pool", None)


def test_successive_clients_share_one_connection_per_service(
    cube: LocalAgentCube, urls: dict[str, str], fresh_pool: None
) -> None:
    cube.reset_counters()
    for _ in range(3):
        with CodeInterpreterClient(**urls) as ci:
            assert ci.run_code("python", "print(6 * 7)") == "42\n"
        with AgentRuntimeClient("echo-agent", **urls) as agent:
            agent.invoke({"n": 1})
    assert cube.connections_accepted() == {"workload_manager": 1, "router": 1}


def test_each_client_has_its_own_cookies_but_not_its_own_pool(
    urls: dict[str, str], fresh_pool: None
) -> None:
    with CodeInterpreterClient(**urls) as a, CodeInterpreterClient(**urls) as b:
        a.data_plane.session.cookies.set("affinity", "a")
        assert "affinity" not in b.data_plane.session.cookies
        assert a.data_plane.session is not b.data_plane.session
        assert a.data_plane.session.get_adapter(
            urls["router_url"]
        ) is b.data_plane.session.get_adapter(urls["router_url"])


def test_a_forked_child_does_not_share_the_parents_sockets(fresh_pool: None) -> None:
    before_fork = _http.pooled_session()  # a client made before the fork keeps its session
    parent_pool = before_fork.get_adapter("http://127.0.0.1").poolmanager
    _http._forget_pool()  # what os.register_at_fork runs in the child
    assert before_fork.get_adapter("http://127.0.0.1").poolmanager is not parent_pool
    after_fork = _http.pooled_session().get_adapter("http://127.0.0.1").poolmanager
    assert after_fork is not parent_pool


def test_a_client_with_its_own_pool_does_not_share_the_parents_sockets_after_a_fork() -> None:
    own = _http.session_with_own_pool(2, 2)
    parent_pool = own.get_adapter("http://127.0.0.1").poolmanager
    _http._forget_pool()  # what os.register_at_fork runs in the child
    renewed = own.get_adapter("http://127.0.0.1")
    assert renewed.poolmanager is not parent_pool
    assert renewed.poolmanager.connection_pool_kw["maxsize"] == 2
    own.close()
