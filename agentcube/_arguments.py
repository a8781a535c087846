"""The session clients' constructor arguments, declared once for the sync and async clients.

Each public signature is written out here exactly once (``inspect.signature`` and IDEs show
real parameters, not ``**kwargs``): the keyword set every session client takes
(:class:`SessionArguments`, the base of :class:`~agentcube.ManagedSessionClient` and
:class:`~agentcube.aio.AsyncManagedSessionClient`) and each kind's historic positional order
(:class:`CodeInterpreterArguments`, :class:`AgentRuntimeArguments`), which the sync and the
async client of that kind share. What the arguments mean and how they are checked lives in
:meth:`agentcube._lifecycle.SessionCore._configure`; what differs between sync and async
(locks, transport, when the session is created) lives in each driver's base class, behind
:meth:`SessionArguments._init_driver` and :meth:`SessionArguments._open`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._lifecycle import SessionCore
from ._protocol import RetryPolicy
from .auth import AuthProvider


def _options(given: dict[str, Any], **renamed: Any) -> dict[str, Any]:
    """The keyword arguments of :class:`SessionArguments` found in a constructor's
    ``locals()`` (its parameters), plus ``renamed`` ones: each argument is passed on by name
    without being written out again."""
    options = {name: given[name] for name in _OPTION_NAMES if name in given}
    options.update(renamed)
    return options


class SessionArguments(SessionCore):
    """The keyword arguments of every session client; checks them and opens the client."""

    def __init__(
        self,
        *,
        name: str,
        namespace: str = "default",
        session_id: str | None = None,
        workload_manager_url: str | None = None,
        router_url: str | None = None,
        auth_token: str | None = None,
        auth: AuthProvider | None = None,
        workload_manager_auth: AuthProvider | None = None,
        router_auth: AuthProvider | None = None,
        ttl: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        verbose: bool = False,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._init_state()
        self._init_driver()
        attach_to = self._configure(**_options(locals()))
        self._open(attach_to)

    def _init_driver(self) -> None:
        """Set the driver's own state (before any argument is checked: a half-built client
        must still stop, print and be collected)."""
        raise NotImplementedError

    def _open(self, attach_to: str | None) -> None:
        """Attach to ``attach_to``, or create a session (sync) or get ready to (async)."""
        raise NotImplementedError


class CodeInterpreterArguments(SessionArguments):
    """The historic arguments of the code-interpreter clients (sync and async)."""

    def __init__(
        self,
        name: str = "my-interpreter",
        namespace: str = "default",
        ttl: int = 3600,
        workload_manager_url: str | None = None,
        router_url: str | None = None,
        auth_token: str | None = None,
        verbose: bool = False,
        session_id: str | None = None,
        auth: AuthProvider | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        workload_manager_auth: AuthProvider | None = None,
        router_auth: AuthProvider | None = None,
    ) -> None:
        self.ttl = ttl
        super().__init__(**_options(locals()))


class AgentRuntimeArguments(SessionArguments):
    """The historic arguments of the agent-runtime clients (sync and async)."""

    def __init__(
        self,
        agent_name: str,
        namespace: str = "default",
        router_url: str | None = None,
        verbose: bool = False,
        session_id: str | None = None,
        timeout: float = 120,
        connect_timeout: float = 5.0,
        auth_token: str | None = None,
        auth: AuthProvider | None = None,
        workload_manager_url: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        workload_manager_auth: AuthProvider | None = None,
        router_auth: AuthProvider | None = None,
    ) -> None:
        self.agent_name = agent_name
        super().__init__(**_options(locals(), name=agent_name))


# The names SessionArguments takes (its keyword-only parameters), read from its signature.
_CODE = SessionArguments.__init__.__code__
_OPTION_NAMES = _CODE.co_varnames[_CODE.co_argcount : _CODE.co_argcount + _CODE.co_kwonlyargcount]
