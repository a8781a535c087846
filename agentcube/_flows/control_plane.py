"""The WorkloadManager's operations: create a session (``POST /v1/<segment>``) and delete one
(``DELETE /v1/<segment>/sessions/<id>``), for any resource kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._config import (
    check_metadata,
    check_name,
    check_namespace,
    check_server_session_id,
    check_session_id,
    check_ttl,
    is_valid_session_id,
)
from .._protocol import Call, Endpoint, Flow, Reply, encode_json
from ..exceptions import InvalidResponseError, NotFoundError
from ._common import CREATE_READ_TIMEOUT, logger, name_missing_template

if TYPE_CHECKING:
    from ..kinds import ResourceKind
    from ..models import CreateSessionResponse

_NOT_FOUND = frozenset({404})


def create_session(
    endpoint: Endpoint,
    kind: ResourceKind,
    name: str,
    namespace: str,
    *,
    ttl: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    sent: list[Call] | None = None,
    on_id: Callable[[str], None] | None = None,
) -> Flow[str]:
    """``POST /v1/<segment>`` with ``{"name", "namespace", "ttl", "metadata"}``; the new id.

    Sent once (a retry could make a second sandbox), with a read timeout past the server's own
    2-minute bound. Only a valid ``sessionId`` is required of the answer. The call is appended
    to ``sent`` before it goes out (its ``answer`` is the whole reply: see
    :func:`parse_create_answer`), and ``on_id`` gets the new id the moment it is read.
    """
    check_name(name, "name")
    check_namespace(namespace)
    check_ttl(ttl)
    check_metadata(metadata)
    body = encode_json(
        {"name": name, "namespace": namespace, "ttl": ttl, "metadata": dict(metadata or {})}
    )
    call = Call(
        endpoint,
        "POST",
        kind.create_path,
        body=body,
        content_type="application/json",
        read_timeout=max(endpoint.read_timeout, CREATE_READ_TIMEOUT),
        finish_on_cancel=True,
    )
    if sent is not None:
        sent.append(call)
    try:
        reply = yield call
    except NotFoundError as exc:
        name_missing_template(exc, kind, name, namespace)
        raise
    session_id: str = _create_body(reply, kind, on_id)["sessionId"]
    logger.info("created %s session %s", kind.name, session_id)
    return session_id


def created_session_id(reply: Reply | None) -> str | None:
    """The valid session id a create answer carries, if any (never raises)."""
    if reply is None:
        return None
    try:
        body = reply.json()
    except ValueError:
        return None
    session_id = body.get("sessionId") if isinstance(body, dict) else None
    return session_id if is_valid_session_id(session_id) else None


def parse_create_answer(
    reply: Reply, kind: ResourceKind, on_id: Callable[[str], None] | None = None
) -> CreateSessionResponse:
    """The create answer as its wire model (for the public API that returns it)."""
    from ..models import CreateSessionResponse

    body = _create_body(reply, kind, on_id)
    try:
        return CreateSessionResponse.model_validate(body)
    except ValueError:  # the id is what matters; never lose it over another field
        return CreateSessionResponse.model_construct(session_id=body["sessionId"])


def _create_body(
    reply: Reply, kind: ResourceKind, on_id: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The create answer as a dict with a valid ``sessionId`` (handed to ``on_id`` at once)."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    session_id = body.get("sessionId") if isinstance(body, dict) else None
    if not session_id:
        raise InvalidResponseError(
            f"Failed to create session: 'sessionId' missing from response (HTTP {reply.status});"
            f" a {kind.name} sandbox may be running"
        )
    check_server_session_id(session_id)
    if on_id is not None:
        on_id(session_id)
    assert isinstance(body, dict)
    return body


def delete_session(
    endpoint: Endpoint,
    kind: ResourceKind,
    session_id: str,
    *,
    timeout: float | None = None,
    deadline: float | None = None,
) -> Flow[bool]:
    """``DELETE /v1/<segment>/sessions/<id>``: True if deleted now, False if already gone.

    Retried (it is idempotent). Only the WorkloadManager's own 404 (``{"message"}``) means
    "already gone": a 404 from anything else at that URL (a misconfigured URL) raises.
    """
    check_session_id(session_id)
    reply = yield Call(
        endpoint,
        "DELETE",
        kind.session_path(session_id),  # validated: only URL-safe characters
        read_timeout=timeout,
        ok=_NOT_FOUND,
        session_id=session_id,
        deadline=deadline,
        finish_on_cancel=True,
    )
    if reply.status == 404:
        if not _is_workload_manager_message(reply):
            where = f"DELETE {endpoint.base_url}{kind.session_path(session_id)}"
            raise reply.error(where, session_id)
        logger.info("%s session %s was already gone", kind.name, session_id)
        return False
    logger.info("deleted %s session %s", kind.name, session_id)
    return True


def _is_workload_manager_message(reply: Reply) -> bool:
    try:
        body = reply.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("message"), str)
