"""Sandboxes: what a session's requests reach, and the ground they run on.

Every session has one :class:`Sandbox`: the built-in PicoD (``_picod``), a real PicoD binary
(:mod:`.picod_process`) or an agent (``_agents``). Beneath them, in this package: ``paths`` (a
workspace no file operation leaves), ``procs`` (starting and ending a session's processes) and
``_reaper.py`` (the supervisor program ``procs`` runs by path), and isolation: ``isolation``
(the server's side), ``jail_zygote`` (forks every sandbox) and ``_jail`` (the kernel's side).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .._go.gin import Request, Response


class SandboxGone(Exception):
    """The session was deleted while the request ran."""


class SandboxStartError(RuntimeError):
    """The sandbox did not come up (the WorkloadManager answers 500)."""


class Sandbox(Protocol):
    """What the Router forwards to."""

    @property
    def workspace(self) -> str | None: ...

    @property
    def closed(self) -> bool: ...

    def endpoint(self) -> str: ...

    def handle(self, request: Request, session_id: str) -> Response:
        """Answer a forwarded request; raises Unreachable or SandboxGone."""
        ...

    def close(self) -> None: ...
