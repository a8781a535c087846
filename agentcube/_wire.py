"""The wire's constants and its JSON reading, in one leaf module (it imports nothing else of
the SDK but its version).

What every other module agrees on about the bytes: the header naming a session, the
User-Agent the SDK sends, and how an answer's body is read as JSON (strictly: no NaN or
Infinity). Errors, the sans-I/O core and the flows import from here; nothing here imports them.
"""

from __future__ import annotations

import json
from typing import Any

from ._version import __version__

SESSION_HEADER = "x-agentcube-session-id"
"""The header the Router reads (and answers with) to name a session."""

USER_AGENT = f"agentcube-sdk-python/{__version__}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(data: bytes | str) -> Any:
    """Strict JSON (no NaN or Infinity); ValueError for anything else, nesting included.

    As ``json.loads(data, parse_constant=...)``, with one decoder for the process instead of
    a new one per answer.
    """
    try:
        if isinstance(data, str):
            if data.startswith("\ufeff"):
                raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
            return _DECODER.decode(data)
        if isinstance(data, (bytes, bytearray)):
            return _DECODER.decode(data.decode(json.detect_encoding(data), "surrogatepass"))
        return json.loads(data, parse_constant=_reject_constant)  # raises its own TypeError
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def dump_json(payload: Any) -> bytes:
    """A JSON body, compact and strict (no NaN or Infinity). Raises what :func:`json.dumps`
    raises (TypeError, ValueError, RecursionError) or UnicodeEncodeError (a lone surrogate);
    :func:`agentcube._protocol.encode_json` turns those into the SDK's argument error."""
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")
