"""What the flows share: where a sandbox's requests go (:class:`RouterTarget`), the read of an
``api/execute`` answer (:class:`Executed`), how an answer is checked against its wire model
without building the model when its shape is the usual one (:func:`read_answer`), and the
values the process and context flows hand each other and the clients (:class:`Started`,
:class:`Status`, :class:`Stream`, :class:`ContextHandle`)."""

from __future__ import annotations

import codecs
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from .._config import check_name, check_namespace
from .._protocol import Call, Endpoint, Reply
from .._wire import SESSION_HEADER
from ..exceptions import DataPlaneError, NotFoundError

if TYPE_CHECKING:
    from ..kinds import ResourceKind
    from ..models import ExecuteResponse

logger = logging.getLogger("agentcube.ops")

# The read timeout of a create (WorkloadManager POST or Router bootstrap): longer than the
# 2 minutes after which the WorkloadManager answers 504 for a sandbox that is not ready.
CREATE_READ_TIMEOUT = 150.0

OutputCallback = Callable[[str], object]
"""What ``on_stdout``/``on_stderr`` take: called with each new piece of output text."""


# How agentcube-local is given a template of each kind, and the one it has built in.
_LOCAL_TEMPLATES = {
    "AgentRuntime": ("--agent", "echo-agent"),
    "CodeInterpreter": ("--code-interpreter", "my-interpreter"),
}


def name_missing_template(
    exc: NotFoundError, kind: ResourceKind, name: str, namespace: str
) -> None:
    """Add to a create's 404 (the service's own answer for an unknown template, which names
    neither) which template was asked for, and how to get one."""
    if exc.message is None or exc.message == "404 page not found":
        return  # not about the template: the URL is wrong (the message says so)
    hint = f"no {kind.name} template {name!r} in namespace {namespace!r}: deploy one"
    local = _LOCAL_TEMPLATES.get(kind.name)
    if local is not None:
        option, built_in = local
        hint += f", or start agentcube-local with `{option} {name}` (it has {built_in!r} built in)"
    exc.args = (f"{exc.args[0]} ({hint})", *exc.args[1:])


class RouterTarget(NamedTuple):
    """One template's sandboxes behind the Router (and, with ``session_id``, one of them)."""

    endpoint: Endpoint
    prefix: str  # path from the endpoint's base URL to ``.../invocations/`` (ends with "/")
    session_id: str | None
    headers: Mapping[str, str]

    @classmethod
    def of(
        cls,
        endpoint: Endpoint,
        kind: ResourceKind,
        namespace: str,
        name: str,
        session_id: str | None = None,
    ) -> RouterTarget:
        return cls.with_prefix(
            endpoint,
            kind.invocations_path(check_namespace(namespace), check_name(name, "name")),
            session_id,
        )

    @classmethod
    def with_prefix(
        cls, endpoint: Endpoint, prefix: str, session_id: str | None = None
    ) -> RouterTarget:
        headers = {SESSION_HEADER: session_id} if session_id else {}
        return cls(endpoint, prefix, session_id, headers)

    def call(
        self, method: str, subpath: str, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> Call:
        return Call(
            self.endpoint,
            method,
            self.prefix + subpath,
            headers={**self.headers, **headers} if headers else self.headers,
            session_id=self.session_id,
            session_scoped=self.session_id is not None,
            **kw,
        )


class Executed:
    """An ``api/execute`` answer as the SDK reads it: the exit code and the output.

    Built from the answer as checked (see :func:`read_answer`) and the reply, from whose body
    the wire model is built only when the public API returns one (:meth:`response`).
    """

    __slots__ = ("exit_code", "reply", "stderr", "stdout")

    def __init__(self, answer: dict[str, Any], reply: Reply) -> None:
        self.exit_code: int = answer["exit_code"]
        self.stdout: str = answer.get("stdout") or ""
        self.stderr: str = answer.get("stderr") or ""
        self.reply = reply

    def response(self) -> ExecuteResponse:
        """The :class:`~agentcube.models.ExecuteResponse` of the answer (already checked: the
        model accepts it)."""
        from ..models import ExecuteResponse

        return ExecuteResponse.model_validate_json(self.reply.json_text())


def read_answer(
    reply: Reply,
    model_name: str,
    usual: Callable[[dict[str, Any]], bool],
    route: str,
    session_id: str | None,
) -> dict[str, Any]:
    """The answer as a dict, checked as the wire model ``model_name`` checks it.

    An answer of the usual shape (a JSON object ``usual`` accepts) is returned as it is, with
    no model built; any other shape goes through the model, which accepts some (lax) and words
    the error of the others: DataPlaneError.
    """
    try:
        body = reply.json()
    except ValueError:
        body = None
    if type(body) is dict and usual(body):
        return body
    from .. import models

    model = getattr(models, model_name)
    try:
        checked = model.model_validate_json(reply.json_text())
    except ValueError as exc:
        raise DataPlaneError(
            f"{route} answered HTTP {reply.status} without a valid {model_name} "
            f"(session {session_id}): {_first_line(exc)}"
        ) from None
    dumped: dict[str, Any] = checked.model_dump()
    return dumped


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


class Started(NamedTuple):
    """A command started with ``background=True``: its pid, log file (workspace-relative)
    and state directory (see :data:`START_STRING`)."""

    pid: int
    log_file: str
    state: str


class Status(NamedTuple):
    """``running`` (exit_code None), ``exited`` (its exit code) or ``gone`` (ended without an
    exit code: killed with SIGKILL, or the sandbox restarted)."""

    state: str
    exit_code: int | None


class ContextHandle(NamedTuple):
    """A started context: its directory (workspace-relative), language and supervisor pid."""

    directory: str
    language: str
    pid: int


class Stream:
    """One growing file followed by Range downloads, its new text passed to ``callback``."""

    __slots__ = ("callback", "data", "decoder", "path")

    def __init__(self, path: str, callback: OutputCallback | None) -> None:
        self.path = path
        self.callback = callback
        self.data = bytearray()
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def take(self, chunk: bytes, final: bool = False) -> None:
        self.data += chunk
        text = self.decoder.decode(chunk, final)
        if text and self.callback is not None:
            self.callback(text)
