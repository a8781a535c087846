"""A local, embedded AgentCube: WorkloadManager + Router + sandboxes on loopback.

Needs the ``local`` extra (``pip install "agentcube-sdk[local]"``), which brings werkzeug.
Code run in its sandboxes runs on this machine as this user, without any isolation.

    from agentcube.local import LocalAgentCube

    with LocalAgentCube() as cube:
        print(cube.workload_manager_url, cube.router_url)

Importing this package never fails; using anything from it without werkzeug raises an
``ImportError`` that says what to install (so the pytest plugin loads everywhere).

Where the wire contract is silent, the local server behaves like this:

* ``entryPoints`` holds one entry: the Router invocation prefix of the session as ``path``,
  ``"HTTP"`` as ``protocol`` and the Router's ``host:port`` as ``endpoint``; ``ownerId`` is
  ``"local"``. ``ttl`` (seconds) is honoured; missing, null or 0 means the default.
* ``api/execute`` answers ``duration`` as float seconds and ``start_time``/``end_time`` as
  RFC 3339 UTC strings; a command killed by signal N exits ``128 + N``; a command not found
  is exit code 127, one that cannot be executed 126. The command returns as soon as its
  process exits, even if it left background processes holding its output open (those keep
  running until the session is deleted). ``timeout`` must be a Go duration string > 0.
* File info ``mode`` is a 4-digit octal string ("0644"), ``modified`` RFC 3339 UTC; ``path``
  echoes the path the client sent. Downloading a directory or a special file is 400.
* Router errors before forwarding (auth, unknown session, unknown template) carry no
  ``x-agentcube-session-id``; everything a sandbox answered does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._faults import Fault, RequestRecord
    from ._server import LocalAgentCube, configured_or_local
    from ._store import SessionInfo

__all__ = ["Fault", "LocalAgentCube", "RequestRecord", "SessionInfo", "configured_or_local"]

_EXPORTS = {
    "Fault": "._faults",
    "RequestRecord": "._faults",
    "LocalAgentCube": "._server",
    "configured_or_local": "._server",
    "SessionInfo": "._store",
}

INSTALL_HINT = (
    "agentcube.local needs werkzeug, which the SDK core does not install: "
    'pip install "agentcube-sdk[local]"'
)


def require_werkzeug() -> None:
    """Raise a clear ImportError when werkzeug is not installed."""
    try:
        import werkzeug  # noqa: F401
    except ImportError as exc:
        raise ImportError(INSTALL_HINT, name="werkzeug") from exc


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_werkzeug()
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
