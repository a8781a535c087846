"""An agent runtime's operations through the Router: bootstrap a session (a bare
``GET .../invocations/``) and invoke the agent (``POST invocations/<path>``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .._config import check_server_session_id, check_text, check_timeout, is_valid_session_id
from .._protocol import ONCE, Call, Flow, Reply, encode_json
from .._wire import SESSION_HEADER
from ..exceptions import InvalidArgumentError, InvalidResponseError, NotFoundError, SessionError
from ._common import CREATE_READ_TIMEOUT, RouterTarget, logger, name_missing_template

if TYPE_CHECKING:
    from ..kinds import ResourceKind

# Every status from 300 on, returned to the flow instead of raised. A bare GET may be answered
# 3xx-5xx by the agent itself: the session exists all the same, and the router's session header
# names it.
_NOT_2XX = frozenset(range(300, 600))


def bootstrap(
    target: RouterTarget,
    sent: list[Call] | None = None,
    on_id: Callable[[str], None] | None = None,
    template: tuple[ResourceKind, str, str] | None = None,
) -> Flow[str]:
    """A bare ``GET .../invocations/``: the Router creates a session and names it in the
    answer's session header, whatever the agent answered for that path; return its id.

    Sent once. The call is appended to ``sent`` before it goes out, and ``on_id`` gets the new
    id the moment it is read (as for :func:`agentcube._flows.control_plane.create_session`).
    ``template`` (kind, name, namespace) is named in the error when the Router has no such
    template.
    """
    call = Call(
        target.endpoint,
        "GET",
        target.prefix,
        ok=_NOT_2XX,
        retry=ONCE,
        read_timeout=max(target.endpoint.read_timeout, CREATE_READ_TIMEOUT),
        finish_on_cancel=True,
    )
    if sent is not None:
        sent.append(call)
    reply: Reply = yield call
    header = reply.headers.get(SESSION_HEADER)
    if not header:
        if reply.status >= 300:  # the Router refused without opening a session
            error = reply.error(f"GET {target.endpoint.base_url}{target.prefix}")
            if isinstance(error, NotFoundError) and template is not None:
                name_missing_template(error, *template)
            raise error
        raise InvalidResponseError(
            f"Missing required response header: {SESSION_HEADER} (status: {reply.status}, "
            f"content-type: {reply.headers.get('Content-Type')}, "
            f"content-length: {reply.headers.get('Content-Length')})"
        )
    session_id = check_server_session_id(header)
    if on_id is not None:
        on_id(session_id)
    logger.info("bootstrapped agent-runtime session %s", session_id)
    return session_id


def bootstrapped_session_id(reply: Reply | None) -> str | None:
    """The valid session id a bootstrap answer's header carries, if any (never raises)."""
    header = reply.headers.get(SESSION_HEADER) if reply is not None else None
    return header if is_valid_session_id(header) else None


def invoke(
    target: RouterTarget,
    payload: Any,
    timeout: float | None,
    path: str,
    *,
    raise_errors: bool = True,
) -> Flow[Reply]:
    """``POST invocations/<path>`` with ``payload`` as JSON; sent once. An error answer
    raises, unless ``raise_errors`` is False (then it is returned as any other); read the
    agent's answer with :func:`answer_of`."""
    if target.session_id is None:
        raise SessionError("no session: bootstrap one first")
    body = encode_json(payload)
    reply: Reply = yield target.call(
        "POST",
        encode_invoke_path(path),
        body=body,
        content_type="application/json",
        read_timeout=check_timeout(timeout, "timeout"),
        ok=frozenset() if raise_errors else _NOT_2XX,
    )
    return reply


def answer_of(reply: Reply) -> Any:
    """The agent's answer: its JSON, or its text when it is not JSON."""
    try:
        return reply.json()
    except ValueError:
        return reply.text


def encode_invoke_path(path: str) -> str:
    """Encode the path (and optional query) an agent is invoked at; refuse dot segments."""
    if not isinstance(path, str):
        raise InvalidArgumentError("path must be a string")
    if not path:
        return ""
    check_text(path, "path")
    if any(c in path for c in "\r\n#"):
        raise InvalidArgumentError("path must not contain line breaks or '#'")
    route, sep, query = path.partition("?")
    route = route.lstrip("/")
    if any(s in (".", "..") for s in route.split("/")):
        raise InvalidArgumentError(f"path must not contain '.' or '..' segments: {path!r}")
    encoded = quote(route, safe="/:@!$&'()*+,;=-._~")
    return encoded + sep + quote(query, safe="=&:@!$'()*+,;/?-._~")
