"""The kinds of session the local AgentCube serves, as data: the one place a kind is described.

Each :class:`LocalKind` says where the kind lives on the wire and what serves its sessions::

    POST   /v1/<control_plane_segment>                               WorkloadManager: create
    DELETE /v1/<control_plane_segment>/sessions/<id>                 WorkloadManager: delete
    GET|POST /v1/namespaces/<ns>/<router_segment>/<name>/invocations/<path>     Router

The WorkloadManager, the Router, the session store, :class:`LocalAgentCube` and the CLI read
everything kind-specific from here. A new kind served by an existing backend is one more entry
in :data:`KINDS`: both services route it and its default templates exist. For users to name
templates of their own, ``LocalAgentCube`` takes a constructor argument (its
``cube_argument``, which the CLI then offers as ``--<cli_option>``) and a ``register_*``
method. A new backend is one more :class:`Backend` and its builder in
``LocalAgentCube._make_sandbox``.

The segments are the real AgentCube's, written here independently of the SDK's
:mod:`agentcube.kinds`: the local server stands in for the real one in tests, so a segment the
SDK got wrong must not be agreed to by the server.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Backend(enum.Enum):
    """What serves a kind's sessions."""

    #: a workspace served by PicoD: the built-in one, or a real binary (``picod=``)
    PICOD = "picod"
    #: an agent: the built-in echo agent, or the user's agent server a template's URL names
    AGENT = "agent"


@dataclass(frozen=True)
class LocalKind:
    """One kind of session and everything the local services say or do differently for it."""

    #: the kind's name: ``SessionInfo.kind`` and the logs
    name: str
    #: the WorkloadManager's path segment
    control_plane_segment: str
    #: the Router's path segment
    router_segment: str
    #: the Kubernetes resource the Router's 404 names (``<resource>.agentcube.volcano.sh``)
    resource: str
    #: the WorkloadManager's 404 text for an unknown template
    not_found: str
    backend: Backend
    #: the templates a LocalAgentCube (and the CLI) has unless told otherwise
    default_templates: tuple[str, ...]
    #: how errors name one of its templates ("<label> name must be a non-empty string")
    label: str
    #: the LocalAgentCube keyword argument that lists its templates; None: users cannot name
    #: any, the kind is served with its default templates (and the CLI offers no option)
    cube_argument: str | None = None
    #: the CLI's repeatable ``--<cli_option>`` that adds a template, and its help
    cli_option: str = ""
    cli_help: str = ""

    @property
    def takes_url(self) -> bool:
        """Whether a template may name a URL its requests are forwarded to."""
        return self.backend is Backend.AGENT


CODE_INTERPRETER = LocalKind(
    name="CodeInterpreter",
    control_plane_segment="code-interpreter",
    router_segment="code-interpreters",
    resource="codeinterpreters",
    not_found="code interpreter not found",
    backend=Backend.PICOD,
    default_templates=("my-interpreter",),
    label="code interpreter",
    cube_argument="code_interpreters",
    cli_option="code-interpreter",
    cli_help="add a CodeInterpreter template name; repeatable",
)

AGENT_RUNTIME = LocalKind(
    name="AgentRuntime",
    control_plane_segment="agent-runtime",
    router_segment="agent-runtimes",
    resource="agentruntimes",
    not_found="agent runtime not found",
    backend=Backend.AGENT,
    default_templates=("echo-agent",),
    label="agent",
    cube_argument="agents",
    cli_option="agent",
    cli_help="add an AgentRuntime template: NAME alone is an echo agent, NAME=URL forwards "
    "to your agent server at URL (loopback http only); repeatable",
)

#: every kind the local AgentCube serves
KINDS: tuple[LocalKind, ...] = (CODE_INTERPRETER, AGENT_RUNTIME)
