"""Fixtures shared by every test suite (unit and integration).

Only generic isolation lives here: each test starts with none of the environment the SDK reads,
no Kubernetes service-account token, and the ``agentcube`` logger as the package left it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentcube import auth as agentcube_auth

SDK_ENV_VARS = ("WORKLOAD_MANAGER_URL", "ROUTER_URL")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the environment variables the SDK reads, so no test depends on the host's."""
    for name in SDK_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def service_account_token_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Point the SDK's service-account token lookup at a per-test path that does not exist.

    ``agentcube.auth`` bound the default path when it was imported, so patching
    ``agentcube._config.SERVICE_ACCOUNT_TOKEN_PATH`` would not reach it; the lookup itself is
    redirected instead. Write a token to the returned path to simulate running inside a pod.
    """
    path = tmp_path_factory.mktemp("serviceaccount") / "token"
    token_file = agentcube_auth._ServiceAccountTokenFile
    original = token_file.if_present.__func__  # type: ignore[attr-defined]

    def if_present(cls: type, path: str = str(path)) -> object:
        return original(cls, path)

    monkeypatch.setattr(token_file, "if_present", classmethod(if_present))
    return path


@pytest.fixture(autouse=True)
def restore_agentcube_logger() -> Iterator[None]:
    """Undo what ``verbose=True`` does to the SDK's loggers (a handler on the package logger,
    a level and a filter on each of the others)."""
    logger = logging.getLogger("agentcube")
    handlers = list(logger.handlers)
    level = logger.level
    children = {
        name: (child.level, list(child.filters))
        for name, child in logging.root.manager.loggerDict.items()
        if name.startswith("agentcube.") and isinstance(child, logging.Logger)
    }
    yield
    for handler in logger.handlers:
        if handler not in handlers:
            handler.close()
    logger.handlers[:] = handlers
    logger.setLevel(level)
    for name, child in list(logging.root.manager.loggerDict.items()):
        if name.startswith("agentcube.") and isinstance(child, logging.Logger):
            before_level, before_filters = children.get(name, (logging.NOTSET, []))
            child.setLevel(before_level)
            child.filters[:] = before_filters


@pytest.fixture(autouse=True)
def forget_owned_sessions() -> Iterator[None]:
    """Each test's owned sessions are its own business (the integration suites check the
    server for leaks): none is named in an exit report of the test process."""
    yield
    from agentcube import _exit_cleanup

    with _exit_cleanup._lock:
        _exit_cleanup._owned.clear()
        _exit_cleanup._collected.clear()
