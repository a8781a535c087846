"""A local, embedded AgentCube: WorkloadManager + Router + sandboxes on loopback.

Needs the ``local`` extra (``pip install "agentcube-sdk[local]"``), which brings werkzeug (and
``cryptography``, used only to sign requests to a real PicoD or to your own agents).
Code run in its sandboxes runs on this machine as this user, without any isolation.

    from agentcube.local import LocalAgentCube

    with LocalAgentCube() as cube:
        print(cube.workload_manager_url, cube.router_url)

Importing this package never fails; using anything from it without werkzeug raises an
``ImportError`` that says what to install (so the pytest plugin loads everywhere).

It answers as the real AgentCube (volcano-sh/agentcube) does: the recorded exchanges in
``tests/conformance/corpus`` replay against it unchanged. Where it deliberately differs:

* A command's stdout and stderr are each kept up to ``max_output_bytes`` (64 MiB); the rest
  is read and dropped and a note says how much. The real PicoD keeps everything.
* An upload through a symlink that leads outside the workspace (``ln -s .. link``, then
  upload ``link/new.txt``) is refused with 400 ``access denied``; the real PicoD writes
  outside its workspace there.
* Every file operation walks its path from a handle on the workspace root and never leaves
  it (``_sandbox/paths.py``): one that a command redirects outside while it runs (swapping a
  directory for a symlink) is refused, 400 ``access denied`` (404 for a listing or download),
  where the real PicoD follows it out; so is an absolute symlink target that reaches the
  workspace only through a symlink outside it, or passes outside and comes back.
* Nothing is isolated, and the Router never checks a JWT of its own users (``token`` is a
  shared secret instead of OIDC); the WorkloadManager ignores ``X-AgentCube-User-Identity``.
* The create answer's ``entryPoints[0].endpoint`` is the Router's ``host:port`` for the
  built-in sandboxes (a real PicoD's for ``picod=``, your agent's for a forwarding agent);
  ``ownerId`` is never set (no identity is known).
* Deleting a session while one of its requests runs answers that request 503
  ``sandbox unreachable`` (the real pod would go away under it).

Inside, by service (only this module, ``__main__`` and ``pytest_plugin`` are public):
``_workload_manager``, ``_router`` and ``_picod/`` (engine, ``execute``, ``files``) are the
three services, thin over ``_store`` (templates, sessions, garbage collection); ``_kinds``
describes each kind of session as data; ``_agents`` are the AgentRuntime backends;
``_sandbox/`` holds what sessions run on (a real PicoD process, workspace ``paths``, ``procs``);
``_go/`` imitates Go, gin and net/http; ``_serving/`` is the HTTP server, the WSGI glue and
forwarding; ``_faults`` the test controls; ``_server`` the LocalAgentCube tying them together.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._faults import Fault, RequestRecord
    from ._sandbox.isolation import Limits
    from ._server import LocalAgentCube, configured_or_local
    from ._store import Lifetime, SessionInfo

__all__ = [
    "Fault",
    "Lifetime",
    "Limits",
    "LocalAgentCube",
    "RequestRecord",
    "SessionInfo",
    "configured_or_local",
]

_EXPORTS = {
    "Fault": "._faults",
    "RequestRecord": "._faults",
    "Limits": "._sandbox.isolation",
    "LocalAgentCube": "._server",
    "configured_or_local": "._server",
    "SessionInfo": "._store",
    "Lifetime": "._store",
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
