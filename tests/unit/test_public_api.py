"""The public face: ``__all__`` lists, historic constructor signatures, packaging details."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
from pathlib import Path

import pydantic
import pytest

import agentcube
from agentcube import AgentRuntimeClient, CodeInterpreterClient

# Modules whose public names are users' business and belong in ``agentcube.__all__``.
TOP_LEVEL_MODULES = [
    "agentcube.agent_runtime",
    "agentcube.auth",
    "agentcube.code_interpreter",
    "agentcube.contexts",
    "agentcube.exceptions",
    "agentcube.kinds",
    "agentcube.processes",
    "agentcube.session",
]
# Public-looking helpers that are deliberately not part of the top-level API.
INTERNAL_HELPERS = {
    "agentcube.auth.resolve_auth",  # how clients pick a provider; not something users call
    "agentcube.exceptions.error_from_reply",  # the one place mapping answers to errors
    "agentcube.contexts.keeps_contexts",  # which contexts stop() closes; used by the clients
    "agentcube.contexts.registry",  # the contexts a client made; used by the clients
}
# Sub-namespaces with their own curated ``__all__`` (checked separately below).
OWN_NAMESPACES = ("agentcube.clients", "agentcube.models", "agentcube.aio")
# Names from private modules that users need.
PRIVATE_MODULE_EXPORTS = {"RetryPolicy", "enable_exit_cleanup"}


def _sdk_modules():
    for info in pkgutil.walk_packages(agentcube.__path__, "agentcube."):
        if info.name.startswith("agentcube.local"):
            continue  # being built separately
        yield importlib.import_module(info.name)


def _defined_public(module):
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module.__name__:
            yield name, obj


def test_every_name_in_all_exists():
    for name in agentcube.__all__:
        assert hasattr(agentcube, name), name
    assert len(set(agentcube.__all__)) == len(agentcube.__all__)


def test_all_is_complete():
    exported = set(agentcube.__all__)
    missing = []
    for module_name in TOP_LEVEL_MODULES:
        module = importlib.import_module(module_name)
        names = set(getattr(module, "__all__", [])) | {n for n, _ in _defined_public(module)}
        for name in names:
            if f"{module_name}.{name}" in INTERNAL_HELPERS:
                continue
            if name not in exported:
                missing.append(f"{module_name}.{name}")
            else:
                assert getattr(agentcube, name) is getattr(module, name), name
    assert missing == []
    for name in PRIVATE_MODULE_EXPORTS:
        assert name in exported


def test_every_exception_class_is_exported():
    exported = set(agentcube.__all__)
    for module in _sdk_modules():
        for name, obj in _defined_public(module):
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                assert name in exported, f"{module.__name__}.{name}"


def test_every_public_class_of_the_sdk_is_reachable():
    """No public class hides in a module users cannot see in some ``__all__``."""
    reachable = set(agentcube.__all__)
    for namespace in OWN_NAMESPACES:
        reachable |= set(importlib.import_module(namespace).__all__)
    for module in _sdk_modules():
        if module.__name__.rsplit(".", 1)[-1].startswith("_"):
            continue
        for name, obj in _defined_public(module):
            if inspect.isclass(obj):
                assert name in reachable, f"{module.__name__}.{name}"


def test_submodule_all_lists_exist():
    for module in _sdk_modules():
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_clients_exports():
    import agentcube.clients as clients
    from agentcube.clients import (
        AgentRuntimeDataPlaneClient,
        CodeInterpreterDataPlaneClient,
        ControlPlaneClient,
    )

    assert set(clients.__all__) == {
        "ControlPlaneClient",
        "CodeInterpreterDataPlaneClient",
        "AgentRuntimeDataPlaneClient",
    }
    for cls in (AgentRuntimeDataPlaneClient, CodeInterpreterDataPlaneClient, ControlPlaneClient):
        assert getattr(clients, cls.__name__) is cls


def test_auth_exports():
    import agentcube.auth as auth

    assert {"AuthProvider", "TokenAuth", "ServiceAccountAuth"} <= set(auth.__all__)
    assert auth.TokenAuth is agentcube.TokenAuth
    assert auth.ServiceAccountAuth is agentcube.ServiceAccountAuth
    assert auth.AuthProvider is agentcube.AuthProvider


def test_exceptions_exports():
    import agentcube.exceptions as exceptions

    for name in ("AgentCubeError", "CommandExecutionError", "SessionError", "DataPlaneError"):
        assert name in exceptions.__all__
        assert getattr(exceptions, name) is getattr(agentcube, name)


def test_models_all_lists_every_wire_model():
    import agentcube.models as models

    wire = {
        name
        for name, obj in _defined_public(models)
        if inspect.isclass(obj) and issubclass(obj, pydantic.BaseModel)
    }
    assert wire == set(models.__all__)


# -- historic constructor signatures ------------------------------------------------------------


def _positional(cls):
    params = list(inspect.signature(cls).parameters.values())
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    rest = [p for p in params if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD]
    return positional, rest


def test_code_interpreter_client_signature():
    positional, rest = _positional(CodeInterpreterClient)
    assert [(p.name, p.default) for p in positional] == [
        ("name", "my-interpreter"),
        ("namespace", "default"),
        ("ttl", 3600),
        ("workload_manager_url", None),
        ("router_url", None),
        ("auth_token", None),
        ("verbose", False),
        ("session_id", None),
        ("auth", None),
    ]
    for p in rest:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, p.name
        assert p.default is not inspect.Parameter.empty, p.name


def test_agent_runtime_client_signature():
    positional, rest = _positional(AgentRuntimeClient)
    empty = inspect.Parameter.empty
    assert [(p.name, p.default) for p in positional] == [
        ("agent_name", empty),
        ("namespace", "default"),
        ("router_url", None),
        ("verbose", False),
        ("session_id", None),
        ("timeout", 120),
        ("connect_timeout", 5.0),
        ("auth_token", None),
        ("auth", None),
        ("workload_manager_url", None),
    ]
    for p in rest:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, p.name
        assert p.default is not inspect.Parameter.empty, p.name


def test_historic_methods_exist():
    for name in (
        "run_code",
        "execute_command",
        "write_file",
        "upload_file",
        "download_file",
        "list_files",
        "stop",
    ):
        assert callable(getattr(CodeInterpreterClient, name)), name
    for name in ("invoke", "stop", "close"):
        assert callable(getattr(AgentRuntimeClient, name)), name


# -- packaging ----------------------------------------------------------------------------------


def test_version_matches_distribution_metadata():
    assert agentcube.__version__ == importlib.metadata.version("agentcube-sdk")


def test_user_agent_carries_the_version(requests_mock):
    requests_mock.delete("http://wm.test/v1/code-interpreter/sessions/s-1", json={})
    from agentcube.clients import ControlPlaneClient

    ControlPlaneClient("http://wm.test").delete_session("s-1")
    agent = requests_mock.last_request.headers["User-Agent"]
    assert agent.endswith("/" + agentcube.__version__)


def test_package_is_typed():
    assert (Path(agentcube.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize("name", ["ManagedSessionClient", "StopOutcome", "ResourceKind"])
def test_lifecycle_names_at_top_level(name):
    assert name in agentcube.__all__


def test_async_clients_are_exported_lazily():
    """The async names come from ``agentcube`` (aiohttp is imported only when one is asked for)."""
    import agentcube.aio as aio

    for name in (
        "AsyncManagedSessionClient",
        "AsyncCodeInterpreterClient",
        "AsyncAgentRuntimeClient",
    ):
        assert getattr(agentcube, name) is getattr(aio, name)
        assert name in dir(agentcube)
    with pytest.raises(AttributeError):
        agentcube.NoSuchClient  # noqa: B018


def test_importing_agentcube_does_not_import_aiohttp():
    import subprocess
    import sys

    code = "import sys, agentcube; agentcube.CodeInterpreterClient; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_agentcube_loads_its_names_on_first_use():
    import subprocess
    import sys

    code = (
        "import sys, agentcube\n"
        "print(sorted(m for m in sys.modules if m.startswith(('agentcube', 'requests'))))\n"
        "from agentcube import CodeInterpreterClient, SessionError\n"
        "import agentcube.code_interpreter as c, agentcube.exceptions as e\n"
        "print(CodeInterpreterClient is c.CodeInterpreterClient, SessionError is e.SessionError)\n"
        "print('agentcube.aio' in sys.modules, 'pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "['agentcube', 'agentcube._logging', 'agentcube._version']",
        "True True",
        "False False",
    ]
