"""Library logging: a NullHandler on the package logger; handlers only with ``verbose=True``."""

from __future__ import annotations

import logging

from agentcube import AgentRuntimeClient, CodeInterpreterClient

WM = "http://wm.test"
ROUTER = "http://router.test"
AR_PREFIX = f"{ROUTER}/v1/namespaces/default/agent-runtimes/my-agent/invocations/"


def _non_null(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if not isinstance(h, logging.NullHandler)]


def test_package_logger_has_only_a_null_handler(requests_mock):
    logger = logging.getLogger("agentcube")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    assert _non_null(logger) == []
    root_handlers = list(logging.getLogger().handlers)

    requests_mock.post(AR_PREFIX, json={})
    client = AgentRuntimeClient("my-agent", router_url=ROUTER, session_id="ar-1")
    client.invoke({})
    client.stop()
    assert _non_null(logger) == []
    assert logging.getLogger().handlers == root_handlers


def test_verbose_adds_one_stderr_handler_and_logs_requests(requests_mock, capsys):
    logger = logging.getLogger("agentcube")
    root_handlers = list(logging.getLogger().handlers)
    requests_mock.post(AR_PREFIX, json={})

    first = AgentRuntimeClient("my-agent", router_url=ROUTER, session_id="ar-1", verbose=True)
    second = CodeInterpreterClient(
        session_id="ci-1", workload_manager_url=WM, router_url=ROUTER, verbose=True
    )
    added = _non_null(logger)
    assert len(added) == 1
    assert isinstance(added[0], logging.StreamHandler)
    assert logging.getLogger("agentcube._http").isEnabledFor(logging.DEBUG)
    assert logging.getLogger().handlers == root_handlers

    first.invoke({"q": 1})
    assert "POST" in capsys.readouterr().err
    first.stop()
    second.detach()


def test_sdk_loggers_live_under_the_package_logger(requests_mock, caplog):
    caplog.set_level(logging.DEBUG, logger="agentcube")
    requests_mock.post(AR_PREFIX, json={})
    requests_mock.get(AR_PREFIX, headers={"x-agentcube-session-id": "ar-1"})
    client = AgentRuntimeClient("my-agent", router_url=ROUTER)
    client.invoke({})
    client.detach()
    names = {r.name for r in caplog.records if r.name.startswith("agentcube")}
    assert names
    assert all(name.startswith("agentcube.") for name in names)


def test_verbose_logs_only_that_clients_requests(requests_mock, capsys, caplog):
    """One verbose client turns on logging for its own requests, not another client's, for
    the SDK's stderr handler and for the application's handlers alike."""
    requests_mock.post(AR_PREFIX, json={})
    loud = AgentRuntimeClient("my-agent", router_url=ROUTER, session_id="ar-loud", verbose=True)
    quiet = AgentRuntimeClient("my-agent", router_url=ROUTER, session_id="ar-quiet")
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the application's handler, at its own level
        quiet.invoke({"q": 1})
        assert capsys.readouterr().err == ""
        assert [r for r in caplog.records if r.levelno < logging.WARNING] == []
        loud.invoke({"q": 2})
    assert "POST" in capsys.readouterr().err
    quiet.invoke({"q": 3})
    assert capsys.readouterr().err == ""
    loud.stop()
    quiet.stop()
