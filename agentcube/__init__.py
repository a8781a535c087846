"""AgentCube SDK: isolated sandboxes for AI agents.

>>> from agentcube import CodeInterpreterClient
>>> with CodeInterpreterClient() as ci:          # creates a sandbox; deleted on exit
...     print(ci.run_code("python", "print(6 * 7)"))

URLs come from the arguments or the ``WORKLOAD_MANAGER_URL`` / ``ROUTER_URL`` env vars.
The async clients (``AsyncCodeInterpreterClient``, ``AsyncAgentRuntimeClient``,
``AsyncManagedSessionClient``) need aiohttp: ``pip install "agentcube-sdk[async]"``.
"""

from typing import TYPE_CHECKING, Any

from . import _logging  # noqa: F401  (installs the package NullHandler)
from ._version import __version__

# Every other public name is imported when it is first used (PEP 562), so that `import
# agentcube` costs what the package itself needs, and a first call loads only its own modules
# (the async clients, which need aiohttp, among them). Each name maps to its module; the other
# names of __all__ are the errors, from .exceptions.
_MODULE_OF = {
    "enable_exit_cleanup": "._exit_cleanup",
    "BackgroundProcess": ".processes",
    "AsyncBackgroundProcess": ".processes",
    "CodeContext": ".contexts",
    "AsyncCodeContext": ".contexts",
    "Execution": ".contexts",
    "ExecutionError": ".contexts",
    "Result": ".contexts",
    "RetryPolicy": "._protocol",
    "AgentRuntimeClient": ".agent_runtime",
    "AuthProvider": ".auth",
    "ServiceAccountAuth": ".auth",
    "TokenAuth": ".auth",
    "CodeInterpreterClient": ".code_interpreter",
    "AGENT_RUNTIME": ".kinds",
    "CODE_INTERPRETER": ".kinds",
    "ResourceKind": ".kinds",
    "ManagedSessionClient": ".session",
    "StopOutcome": ".session",
    "AsyncAgentRuntimeClient": ".aio",
    "AsyncCodeInterpreterClient": ".aio",
    "AsyncManagedSessionClient": ".aio",
}

__all__ = [
    "AGENT_RUNTIME",
    "CODE_INTERPRETER",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AgentCubeError",
    "AgentRuntimeClient",
    "AsyncBackgroundProcess",
    "AsyncCodeContext",
    "AuthProvider",
    "AuthenticationError",
    "BackgroundProcess",
    "BadRequestError",
    "CodeContext",
    "CodeContextError",
    "CodeInterpreterClient",
    "CommandExecutionError",
    "DataPlaneError",
    "Execution",
    "ExecutionError",
    "InvalidArgumentError",
    "InvalidResponseError",
    "ManagedSessionClient",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ResourceKind",
    "Result",
    "RetryPolicy",
    "ServerError",
    "ServiceAccountAuth",
    "SessionError",
    "SessionNotFoundError",
    "StopOutcome",
    "TokenAuth",
    "__version__",
    "enable_exit_cleanup",
]

if TYPE_CHECKING:
    from ._exit_cleanup import enable_exit_cleanup
    from ._protocol import RetryPolicy
    from .agent_runtime import AgentRuntimeClient
    from .aio import AsyncAgentRuntimeClient as AsyncAgentRuntimeClient
    from .aio import AsyncCodeInterpreterClient as AsyncCodeInterpreterClient
    from .aio import AsyncManagedSessionClient as AsyncManagedSessionClient
    from .auth import AuthProvider, ServiceAccountAuth, TokenAuth
    from .code_interpreter import CodeInterpreterClient
    from .contexts import AsyncCodeContext, CodeContext, Execution, ExecutionError, Result
    from .exceptions import (
        AgentCubeError,
        APIConnectionError,
        APIError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        CodeContextError,
        CommandExecutionError,
        DataPlaneError,
        InvalidArgumentError,
        InvalidResponseError,
        NotFoundError,
        PayloadTooLargeError,
        PermissionDeniedError,
        ServerError,
        SessionError,
        SessionNotFoundError,
    )
    from .kinds import AGENT_RUNTIME, CODE_INTERPRETER, ResourceKind
    from .processes import AsyncBackgroundProcess, BackgroundProcess
    from .session import ManagedSessionClient, StopOutcome


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name, ".exceptions" if name in __all__ else None)
    if module is None:
        raise AttributeError(f"module 'agentcube' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF) | set(__all__))
