"""Thin HTTP clients, one per AgentCube service. Most users want the session clients instead
(:class:`agentcube.CodeInterpreterClient`, :class:`agentcube.AgentRuntimeClient`)."""

from .agent_runtime_data_plane import AgentRuntimeDataPlaneClient
from .code_interpreter_data_plane import CodeInterpreterDataPlaneClient
from .control_plane import ControlPlaneClient

__all__ = ["AgentRuntimeDataPlaneClient", "CodeInterpreterDataPlaneClient", "ControlPlaneClient"]
