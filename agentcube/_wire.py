"""The wire's constants and its JSON reading, in one leaf module (it imports nothing else of
the SDK but its version).

What every other module agrees on about the bytes: the header naming a session, the
User-Agent the SDK sends, and how an answer's body is decoded and read as JSON (strictly: no
NaN or Infinity). Errors, the sans-I/O core and the flows import from here; nothing here
imports them.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from typing import Any

from ._version import __version__

SESSION_HEADER = "x-agentcube-session-id"
"""The header the Router reads (and answers with) to name a session."""

USER_AGENT = f"agentcube-sdk-python/{__version__}"

SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
"""The stable code upstream's Router (volcano-sh/agentcube#460) gives its answer for an
unknown session; a 404 carrying it in any top-level field is the service's own answer."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def charset_of(headers: Mapping[str, str]) -> str | None:
    """The charset the ``Content-Type`` header declares, if any (``headers`` is a
    case-insensitive mapping, as both drivers' are)."""
    content_type = headers.get("content-type")
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("'\"") or None
    return None


def _decode_declared(data: bytes, charset: str | None) -> str | None:
    """``data`` decoded in the declared ``charset`` (undecodable bytes become U+FFFD); None
    when no charset is declared, it is UTF-8, or it is no text codec Python knows."""
    if charset is None:
        return None
    try:
        if codecs.lookup(charset).name == "utf-8":
            return None
        return data.decode(charset, "replace")
    except LookupError:  # unknown, or not a text encoding ("hex", "rot13")
        return None


def decode_text(data: bytes, charset: str | None = None) -> str:
    """An answer's body as text: in its declared charset, else UTF-8; bytes that do not
    decode become U+FFFD (as requests' ``Response.text``, which 0.1.0 returned)."""
    text = _decode_declared(data, charset)
    return data.decode("utf-8", "replace") if text is None else text


def decode_json_text(data: bytes, charset: str | None = None) -> str:
    """The text of a JSON answer, decoded as 0.1.0 did through requests' ``Response.json()``
    for what JSON servers send: in the declared charset when it is not UTF-8, else in UTF-8
    (or UTF-16/32, told by the first bytes, a BOM skipped), bytes that do not decode becoming
    U+FFFD. (requests read ``text/*`` without a charset as Latin-1 and guessed the charset of
    an answer without a Content-Type; here both are UTF-8.)"""
    text = _decode_declared(data, charset)
    return data.decode(json.detect_encoding(data), "replace") if text is None else text


def parse_json(data: bytes | str, charset: str | None = None) -> Any:
    """Strict JSON (no NaN or Infinity); ValueError for anything else, nesting included.

    Bytes are decoded by :func:`decode_json_text` (``charset`` is the one the answer
    declared), with one decoder for the process instead of a new one per answer.
    """
    try:
        if isinstance(data, (bytes, bytearray)):
            data = decode_json_text(bytes(data), charset)
        elif not isinstance(data, str):
            return json.loads(data, parse_constant=_reject_constant)  # raises its own TypeError
        elif data.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
        return _DECODER.decode(data)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def dump_json(payload: Any) -> bytes:
    """A JSON body, compact and strict (no NaN or Infinity). Raises what :func:`json.dumps`
    raises (TypeError, ValueError, RecursionError) or UnicodeEncodeError (a lone surrogate);
    :func:`agentcube._protocol.encode_json` turns those into the SDK's argument error."""
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")
