"""Resource kinds: the one place that knows each kind's URL segments.

A kind names a sandbox type on the wire and tells where its sessions live::

    POST   /v1/<control_plane_segment>                         create
    DELETE /v1/<control_plane_segment>/sessions/<id>           delete
    *      /v1/namespaces/<ns>/<router_segment>/<name>/invocations/<path>

A new kind (a browser, say) is one more ``ResourceKind`` value.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["AGENT_RUNTIME", "CODE_INTERPRETER", "ResourceKind"]

_SEGMENT = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_FIELDS = ("name", "control_plane_segment", "router_segment")


class _DataclassFields:
    """``__dataclass_fields__`` (and ``__dataclass_params__``), built on first use.

    ResourceKind behaves as the frozen dataclass it was (``dataclasses.fields``, ``replace``,
    ``asdict`` and ``is_dataclass`` work on it), but :mod:`dataclasses`, which imports
    :mod:`inspect` (about 6 ms), is imported only by code that asks for them.
    """

    def __init__(self, attribute: str) -> None:
        self._attribute = attribute

    def __get__(self, instance: object, owner: type) -> Any:
        import dataclasses

        twin = dataclasses.make_dataclass(
            owner.__name__, [(name, str) for name in _FIELDS], frozen=True
        )
        for attribute in ("__dataclass_fields__", "__dataclass_params__"):
            setattr(owner, attribute, getattr(twin, attribute))
        return getattr(owner, self._attribute)


class ResourceKind:
    """A kind of sandbox and the URL segments the services use for it (immutable).

    Attributes:
        name: the kind as it appears on the wire, e.g. ``"CodeInterpreter"``.
        control_plane_segment: the WorkloadManager segment, e.g. ``"code-interpreter"``.
        router_segment: the Router's plural segment, e.g. ``"code-interpreters"``.
    """

    __slots__ = _FIELDS
    __match_args__ = ("name", "control_plane_segment", "router_segment")
    __dataclass_fields__ = _DataclassFields("__dataclass_fields__")
    __dataclass_params__ = _DataclassFields("__dataclass_params__")

    name: str
    control_plane_segment: str
    router_segment: str

    def __init__(self, name: str, control_plane_segment: str, router_segment: str) -> None:
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "control_plane_segment", control_plane_segment)
        set_(self, "router_segment", router_segment)
        for segment in (control_plane_segment, router_segment):
            if not isinstance(segment, str) or not _SEGMENT.fullmatch(segment):
                raise ValueError(f"invalid URL segment for kind {name!r}: {segment!r}")

    def _astuple(self) -> tuple[str, str, str]:
        return (self.name, self.control_plane_segment, self.router_segment)

    def __setattr__(self, name: str, value: object) -> None:
        import dataclasses

        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        import dataclasses

        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, ResourceKind)
        return self._astuple() == other._astuple()

    def __hash__(self) -> int:
        return hash(self._astuple())

    def __repr__(self) -> str:
        return (
            f"{type(self).__qualname__}(name={self.name!r}, "
            f"control_plane_segment={self.control_plane_segment!r}, "
            f"router_segment={self.router_segment!r})"
        )

    def __reduce__(self) -> tuple[type[ResourceKind], tuple[str, str, str]]:
        return (type(self), self._astuple())

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
