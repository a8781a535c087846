"""AgentCube SDK: isolated sandboxes for AI agents.

>>> from agentcube import CodeInterpreterClient
>>> with CodeInterpreterClient() as ci:          # creates a sandbox; deleted on exit
...     print(ci.run_code("python", "print(6 * 7)"))

URLs come from the arguments or the ``WORKLOAD_MANAGER_URL`` / ``ROUTER_URL`` env vars.
The async clients (``AsyncCodeInterpreterClient``, ``AsyncAgentRuntimeClient``,
``AsyncManagedSessionClient``) need httpx: ``pip install "agentcube-sdk[async]"``.
"""

from typing import TYPE_CHECKING, Any

from . import _logging  # noqa: F401  (installs the package NullHandler)
from ._exit_cleanup import enable_exit_cleanup
from ._protocol import RetryPolicy
from ._version import __version__
from .agent_runtime import AgentRuntimeClient
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
    from .aio import AsyncAgentRuntimeClient as AsyncAgentRuntimeClient
    from .aio import AsyncCodeInterpreterClient as AsyncCodeInterpreterClient
    from .aio import AsyncManagedSessionClient as AsyncManagedSessionClient

_ASYNC_NAMES = frozenset(
    {"AsyncAgentRuntimeClient", "AsyncCodeInterpreterClient", "AsyncManagedSessionClient"}
)


def __getattr__(name: str) -> Any:
    # The async clients are imported on first use: httpx is an optional dependency.
    if name in _ASYNC_NAMES:
        from . import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'agentcube' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ASYNC_NAMES)
