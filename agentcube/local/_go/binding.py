"""Request bodies decoded as gin's ``ShouldBindJSON`` does, with Go's error texts.

gin decodes with ``encoding/json``'s ``Decoder`` (one value; what follows an object or array
is not looked at), then runs the validator's ``binding:"required"`` checks. The common case
goes through Python's ``json`` module; anything it refuses is scanned again by a small
re-implementation of Go's scanner, which either accepts it as Go would or produces Go's
exact error text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .stdlib import go_quote

#: A field type: "string", "[]string" or "map[string]string".
FieldType = str


@dataclass(frozen=True)
class GoStruct:
    """A Go request struct: its package-qualified and bare names and its JSON fields."""

    qualified: str
    name: str
    fields: tuple[tuple[str, str, FieldType, bool], ...]  # (json name, Go name, type, required)


EXECUTE_REQUEST = GoStruct(
    "picod.ExecuteRequest",
    "ExecuteRequest",
    (
        ("command", "Command", "[]string", True),
        ("timeout", "Timeout", "string", False),
        ("working_dir", "WorkingDir", "string", False),
        ("env", "Env", "map[string]string", False),
    ),
)
UPLOAD_FILE_REQUEST = GoStruct(
    "picod.UploadFileRequest",
    "UploadFileRequest",
    (
        ("path", "Path", "string", True),
        ("content", "Content", "string", True),
        ("mode", "Mode", "string", False),
    ),
)
CREATE_SANDBOX_REQUEST = GoStruct(
    "types.CreateSandboxRequest",
    "CreateSandboxRequest",
    (
        ("kind", "Kind", "string", False),
        ("name", "Name", "string", False),
        ("namespace", "Namespace", "string", False),
    ),
)


class BindError(ValueError):
    """The body could not be bound; ``str(error)`` is gin's ``err.Error()``."""


class _Pairs(list[tuple[str, Any]]):
    """A JSON object kept as its (key, value) pairs in order, duplicates included."""


_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_DEPTH = 10000


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _fix_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, _Pairs):
        return _Pairs((_fix_surrogates(k), _fix_surrogates(v)) for k, v in value)
    if isinstance(value, list):
        return [_fix_surrogates(item) for item in value]
    return value


def decode_value(data: bytes) -> Any:
    """The first JSON value of ``data`` as Go's Decoder reads it; BindError with Go's text."""
    try:
        text = data.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_Pairs, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return _Scanner(data).document()
    return _fix_surrogates(value)


def bind(data: bytes, struct: GoStruct) -> dict[str, Any]:
    """Decode ``data`` into ``struct`` and validate it, as ``ShouldBindJSON`` does."""
    value = decode_value(data)
    result: dict[str, Any] = {json_name: None for json_name, _, _, _ in struct.fields}
    errors: list[str] = []
    if isinstance(value, _Pairs):
        by_name = {json_name: (json_name, kind) for json_name, _, kind, _ in struct.fields}
        folded = {_fold(json_name): (json_name, kind) for json_name, _, kind, _ in struct.fields}
        for key, item in value:
            field = by_name.get(key) or folded.get(_fold(key))
            if field is None:
                continue
            json_name, kind = field
            decoded = _convert(item, kind, f"{struct.name}.{json_name}", errors)
            if decoded is not _KEEP:
                result[json_name] = decoded
    elif value is not None:
        errors.append(
            f"json: cannot unmarshal {_json_kind(value)} into Go value of type {struct.qualified}"
        )
    if errors:
        raise BindError(errors[0])
    missing = [
        f"Key: '{struct.name}.{go_name}' Error:Field validation for '{go_name}' failed on the "
        "'required' tag"
        for json_name, go_name, _, required in struct.fields
        if required and result[json_name] in (None, "")
    ]
    if missing:
        raise BindError("\n".join(missing))
    return result


_KEEP = object()


def _fold(name: str) -> str:
    return "".join(c.lower().upper() if len(c.lower().upper()) == 1 else c for c in name)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, _Pairs):
        return "object"
    return "array"


def _type_error(value: Any, where: str, go_type: str) -> str:
    kind = _json_kind(value)
    return f"json: cannot unmarshal {kind} into Go struct field {where} of type {go_type}"


def _convert(value: Any, kind: FieldType, where: str, errors: list[str]) -> Any:
    """``value`` decoded into a Go field of ``kind``; type errors are appended."""
    if value is None:
        return None  # null leaves a string "" and a slice or map nil
    if kind == "string":
        if isinstance(value, str):
            return value
        errors.append(_type_error(value, where, "string"))
        return _KEEP
    if kind == "[]string":
        if isinstance(value, list) and not isinstance(value, _Pairs):
            items = []
            for item in value:
                if isinstance(item, str):
                    items.append(item)
                else:
                    if item is not None:
                        errors.append(
                            f"json: cannot unmarshal {_json_kind(item)} into Go struct field "
                            f"{where} of type string"
                        )
                    items.append("")
            return items
        errors.append(_type_error(value, where, "[]string"))
        return _KEEP
    # map[string]string
    if isinstance(value, _Pairs):
        mapping: dict[str, str] = {}
        for key, item in value:
            if isinstance(item, str):
                mapping[key] = item
            elif item is None:
                mapping[key] = ""
            else:
                errors.append(
                    f"json: cannot unmarshal {_json_kind(item)} into Go struct field {where} "
                    "of type string"
                )
                mapping[key] = ""
        return mapping
    errors.append(
        f"json: cannot unmarshal {_json_kind(value)} into Go struct field {where} of type "
        "map[string]string"
    )
    return _KEEP


# -- Go's scanner ---------------------------------------------------------------------------------

_SPACE = b" \t\r\n"
_ESCAPES = {
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
    ord("\\"): "\\",
    ord("/"): "/",
    ord('"'): '"',
}
_HEX = b"0123456789abcdefABCDEF"


def _quote_char(byte: int) -> str:
    if byte == ord("'"):
        return "'\\''"
    if byte == ord('"'):
        return "'\"'"
    quoted = go_quote(chr(byte))
    return "'" + quoted[1:-1] + "'"


class _NumberAtEnd(IndexError):
    """A complete number runs to the end of the input."""


_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]*')
_DIGITS = re.compile(rb"[0-9]*")
_OBJECT, _ARRAY = 0, 1
#: containers deeper than this are only checked, not built (the structs are shallow)
_BUILD_DEPTH = 4


class _Scanner:
    """Go's ``encoding/json`` Decoder for one top-level value: its syntax errors, then the value.

    The syntax check is iterative (Go allows 10000 levels of nesting); the value is built
    only to the depth the request structs look at.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data

    def error(self, byte: int, context: str) -> BindError:
        return BindError(f"invalid character {_quote_char(byte)} {context}")

    def document(self) -> Any:
        data = self.data
        if not data.strip(_SPACE):
            raise BindError("EOF")
        try:
            self._check()
        except IndexError:
            raise BindError("unexpected EOF") from None
        value, _ = self._build(self._skip_space(0), 0)
        return value

    # -- the syntax check -------------------------------------------------------------------------
    def _skip_space(self, i: int) -> int:
        data = self.data
        while i < len(data) and data[i] in _SPACE:
            i += 1
        return i

    def _string_end(self, i: int) -> int:
        """``i`` is at the opening quote; the index after the closing one."""
        data = self.data
        i += 1
        while True:
            match = _STRING_RUN.match(data, i)
            assert match is not None
            i = match.end()
            byte = data[i]  # IndexError at the end: unexpected EOF
            if byte == 0x22:
                return i + 1
            if byte < 0x20:
                raise self.error(byte, "in string literal")
            escape = data[i + 1]
            if escape in _ESCAPES:
                i += 2
            elif escape == ord("u"):
                for offset in range(2, 6):
                    if data[i + offset] not in _HEX:
                        raise self.error(data[i + offset], "in \\u hexadecimal character escape")
                i += 6
            else:
                raise self.error(escape, "in string escape code")

    def _number_end(self, i: int) -> int:
        data = self.data
        if data[i] == ord("-"):
            i += 1
            if not 0x30 <= data[i] <= 0x39:
                raise self.error(data[i], "in numeric literal")
        if data[i] == 0x30:
            i += 1
        else:
            i = _DIGITS.match(data, i).end()  # type: ignore[union-attr]
        if i < len(data) and data[i] == ord("."):
            i += 1
            if not 0x30 <= data[i] <= 0x39:
                raise self.error(data[i], "after decimal point in numeric literal")
            i = _DIGITS.match(data, i).end()  # type: ignore[union-attr]
        if i < len(data) and data[i] in b"eE":
            i += 1
            if data[i] in b"+-":
                i += 1
            if not 0x30 <= data[i] <= 0x39:
                raise self.error(data[i], "in exponent of numeric literal")
            i = _DIGITS.match(data, i).end()  # type: ignore[union-attr]
        if i >= len(data):
            raise _NumberAtEnd()  # Go needs one more byte to end a number in a container
        return i

    def _literal_end(self, i: int) -> int:
        data = self.data
        for word in (b"true", b"false", b"null"):
            if data[i] == word[0]:
                for offset in range(1, len(word)):
                    if data[i + offset] != word[offset]:
                        raise self.error(
                            data[i + offset],
                            f"in literal {word.decode()} (expecting {_quote_char(word[offset])})",
                        )
                return i + len(word)
        raise self.error(data[i], "looking for beginning of value")

    def _check(self) -> None:
        data = self.data
        stack: list[int] = []
        i = self._skip_space(0)
        expect_value = True
        while True:
            if expect_value:
                i = self._skip_space(i)
                byte = data[i]
                if byte in (0x7B, 0x5B):  # { [
                    stack.append(_OBJECT if byte == 0x7B else _ARRAY)
                    if len(stack) > _MAX_DEPTH:
                        raise self.error(byte, "exceeded max depth")
                    i = self._skip_space(i + 1)
                    closing = 0x7D if byte == 0x7B else 0x5D
                    if data[i] == closing:
                        stack.pop()
                        i += 1
                    elif byte == 0x7B:
                        i = self._key(i)
                        continue
                    else:
                        continue
                elif byte == 0x22:
                    i = self._string_end(i)
                elif byte == ord("-") or 0x30 <= byte <= 0x39:
                    if not stack:
                        try:
                            i = self._number_end(i)
                        except _NumberAtEnd:
                            return  # a number ending the input is complete at the top level
                    else:
                        i = self._number_end(i)
                else:
                    i = self._literal_end(i)
                expect_value = False
            if not stack:
                if i < len(data) and data[i] not in _SPACE and data[i - 1] not in b"]}":
                    raise self.error(data[i], "after top-level value")
                return
            i = self._skip_space(i)
            byte = data[i]
            if stack[-1] == _OBJECT:
                if byte == 0x2C:
                    i = self._key(self._skip_space(i + 1))
                    expect_value = True
                elif byte == 0x7D:
                    stack.pop()
                    i += 1
                else:
                    raise self.error(byte, "after object key:value pair")
            elif byte == 0x2C:
                i += 1
                expect_value = True
            elif byte == 0x5D:
                stack.pop()
                i += 1
            else:
                raise self.error(byte, "after array element")

    def _key(self, i: int) -> int:
        """At an object key: past the key and its colon."""
        data = self.data
        if data[i] != 0x22:
            raise self.error(data[i], "looking for beginning of object key string")
        i = self._skip_space(self._string_end(i))
        if data[i] != ord(":"):
            raise self.error(data[i], "after object key")
        return i + 1

    # -- building the (valid) value ---------------------------------------------------------------
    def _build(self, i: int, depth: int) -> tuple[Any, int]:
        data = self.data
        i = self._skip_space(i)
        byte = data[i]
        if byte == 0x22:
            end = self._string_end(i)
            return _decode_string(data[i + 1 : end - 1]), end
        if byte == 0x7B:
            pairs = _Pairs()
            if depth >= _BUILD_DEPTH:
                return pairs, self._container_end(i)
            i = self._skip_space(i + 1)
            if data[i] == 0x7D:
                return pairs, i + 1
            while True:
                i = self._skip_space(i)
                end = self._string_end(i)
                key = _decode_string(data[i + 1 : end - 1])
                i = self._skip_space(end) + 1  # past the colon
                value, i = self._build(i, depth + 1)
                pairs.append((key, value))
                i = self._skip_space(i)
                if data[i] == 0x7D:
                    return pairs, i + 1
                i += 1  # the comma
        if byte == 0x5B:
            items: list[Any] = []
            if depth >= _BUILD_DEPTH:
                return items, self._container_end(i)
            i = self._skip_space(i + 1)
            if data[i] == 0x5D:
                return items, i + 1
            while True:
                value, i = self._build(i, depth + 1)
                items.append(value)
                i = self._skip_space(i)
                if data[i] == 0x5D:
                    return items, i + 1
                i += 1
        if byte == ord("-") or 0x30 <= byte <= 0x39:
            match = re.compile(rb"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?").match(data, i)
            assert match is not None
            return float(match.group(0)), match.end()
        for word, value in ((b"true", True), (b"false", False), (b"null", None)):
            if data.startswith(word, i):
                return value, i + len(word)
        raise AssertionError("the syntax check let an invalid value through")

    def _container_end(self, i: int) -> int:
        data = self.data
        depth = 0
        while True:
            byte = data[i]
            if byte == 0x22:
                i = self._string_end(i)
                continue
            if byte in (0x7B, 0x5B):
                depth += 1
            elif byte in (0x7D, 0x5D):
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1


def _decode_string(raw: bytes) -> str:
    """The contents of a scanned string literal, decoded as Go's ``unquote``."""
    out: list[str] = []
    index = 0
    text = raw.decode("utf-8", "agentcube-go-replace")
    length = len(text)
    while index < length:
        char = text[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        code = text[index + 1]
        if code != "u":
            out.append(_ESCAPES[ord(code)])
            index += 2
            continue
        unit = int(text[index + 2 : index + 6], 16)
        index += 6
        if 0xD800 <= unit < 0xE000:
            if text[index : index + 2] == "\\u":
                low = int(text[index + 2 : index + 6], 16)
                if 0xD800 <= unit < 0xDC00 and 0xDC00 <= low < 0xE000:
                    out.append(chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)))
                    index += 6
                    continue
            out.append("\ufffd")
            continue
        out.append(chr(unit))
    return "".join(out)
