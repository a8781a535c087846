"""Resource kinds: the one place that knows each kind's URL segments.

A kind names a sandbox type on the wire and tells where its sessions live::

    POST   /v1/<control_plane_segment>                         create
    DELETE /v1/<control_plane_segment>/sessions/<id>           delete
    *      /v1/namespaces/<ns>/<router_segment>/<name>/invocations/<path>

A new kind (a browser, say) is one more ``ResourceKind`` value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["AGENT_RUNTIME", "CODE_INTERPRETER", "ResourceKind"]

_SEGMENT = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


@dataclass(frozen=True)
class ResourceKind:
    """A kind of sandbox and the URL segments the services use for it.

    Attributes:
        name: the kind as it appears on the wire, e.g. ``"CodeInterpreter"``.
        control_plane_segment: the WorkloadManager segment, e.g. ``"code-interpreter"``.
        router_segment: the Router's plural segment, e.g. ``"code-interpreters"``.
    """

    name: str
    control_plane_segment: str
    router_segment: str

    def __post_init__(self) -> None:
        for segment in (self.control_plane_segment, self.router_segment):
            if not isinstance(segment, str) or not _SEGMENT.fullmatch(segment):
                raise ValueError(f"invalid URL segment for kind {self.name!r}: {segment!r}")

    @property
    def create_path(self) -> str:
        """Control-plane path that creates a session of this kind."""
        return f"/v1/{self.control_plane_segment}"

    def session_path(self, session_id: str) -> str:
        """Control-plane path of one session (the caller validates the id)."""
        return f"/v1/{self.control_plane_segment}/sessions/{session_id}"

    def invocations_path(self, namespace: str, name: str) -> str:
        """Router path prefix for talking to a sandbox of this kind (ends with ``/``)."""
        return f"/v1/namespaces/{namespace}/{self.router_segment}/{name}/invocations/"


CODE_INTERPRETER = ResourceKind("CodeInterpreter", "code-interpreter", "code-interpreters")
AGENT_RUNTIME = ResourceKind("AgentRuntime", "agent-runtime", "agent-runtimes")
