"""Small re-implementations of what the real services' Go runtime prints.

Texts and formats the wire shows: ``strconv.Quote``, ``time.Duration`` parsing and
printing, RFC 3339 timestamps, ``encoding/json`` output, ``os.FileMode`` strings, errno
texts, ``path.Clean``, URL path escaping, HTTP dates, ``mime.TypeByExtension`` and
``base64.StdEncoding`` decoding.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import math
import os
import re
import stat
import threading
import unicodedata
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

# -- strings ------------------------------------------------------------------------------------


def _one_per_byte(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return "\ufffd", error.start + 1


codecs.register_error("agentcube-go-replace", _one_per_byte)


def go_string(data: bytes) -> str:
    """Bytes as Go's JSON encoder shows them: each invalid UTF-8 byte becomes U+FFFD."""
    return data.decode("utf-8", "agentcube-go-replace")


def _printable(char: str) -> bool:
    if char == " ":
        return True
    category = unicodedata.category(char)
    return category[0] in "LMNPS"


def go_quote(text: str | bytes) -> str:
    """``strconv.Quote``: a double-quoted Go string literal."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    out = ['"']
    decoded = data.decode("utf-8", "surrogateescape")
    for char in decoded:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an invalid byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\a":
            out.append("\\a")
        elif char == "\b":
            out.append("\\b")
        elif char == "\f":
            out.append("\\f")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char == "\v":
            out.append("\\v")
        elif _printable(char):
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def errno_text(number: int | None) -> str:
    """Go's text for a ``syscall.Errno``: the C library's, first letter in lower case."""
    if number is None:
        return "unknown error"
    text = os.strerror(number)
    return text[:1].lower() + text[1:]


# -- durations ----------------------------------------------------------------------------------

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_INT64 = (1 << 63) - 1


def _time_quote(text: str) -> str:
    """The ``time`` package's own quoting: non-ASCII and control bytes as ``\\xNN``."""
    out = ['"']
    for char in text:
        if ord(char) >= 0x80 or char < " ":
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
        else:
            if char in ('"', "\\"):
                out.append("\\")
            out.append(char)
    out.append('"')
    return "".join(out)


def parse_duration(text: str) -> int:
    """``time.ParseDuration``: nanoseconds; ValueError carries Go's message."""
    invalid = ValueError(f"time: invalid duration {_time_quote(text)}")
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise invalid
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise invalid
        index = 0
        whole = 0
        while index < len(s) and "0" <= s[index] <= "9":
            whole = whole * 10 + ord(s[index]) - 48
            if whole > 1 << 63:
                raise invalid
            index += 1
        pre = index > 0
        s = s[index:]
        frac, scale, post = 0, 1.0, False
        if s[:1] == ".":
            s = s[1:]
            index = 0
            overflow = False
            while index < len(s) and "0" <= s[index] <= "9":
                if not overflow:
                    if frac > ((1 << 63) - 1) // 10:
                        overflow = True
                    else:
                        candidate = frac * 10 + ord(s[index]) - 48
                        if candidate > 1 << 63:
                            overflow = True
                        else:
                            frac = candidate
                            scale *= 10
                index += 1
            post = index > 0
            s = s[index:]
        if not pre and not post:
            raise invalid
        index = 0
        while index < len(s) and not (s[index] == "." or "0" <= s[index] <= "9"):
            index += 1
        if index == 0:
            raise ValueError(f"time: missing unit in duration {_time_quote(text)}")
        unit_name, s = s[:index], s[index:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise ValueError(
                f"time: unknown unit {_time_quote(unit_name)} in duration {_time_quote(text)}"
            )
        if whole > (1 << 63) // unit:
            raise invalid
        value = whole * unit
        if frac > 0:
            value += int(float(frac) * (float(unit) / scale))
            if value > 1 << 63:
                raise invalid
        total += value
        if total > 1 << 63:
            raise invalid
    if negative:
        return -total
    if total > _MAX_INT64:
        raise invalid
    return total


def _frac(value: int, digits: int) -> str:
    text = f"{value:0{digits}d}".rstrip("0")
    return "." + text if text else ""


def format_duration(nanos: int) -> str:
    """``time.Duration.String``: "1h2m3.5s", "61.8ms", "0s"."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    u = abs(nanos)
    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{u // 1_000}{_frac(u % 1_000, 3)}\u00b5s"
        return f"{sign}{u // 1_000_000}{_frac(u % 1_000_000, 6)}ms"
    seconds, frac = divmod(u, 1_000_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    out = f"{seconds}{_frac(frac, 9)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{out}"
    if minutes:
        return f"{sign}{minutes}m{out}"
    return sign + out


def format_seconds_rounded(nanos: int) -> str:
    """``fmt.Sprintf("%.0f", d.Seconds())``: round half to even."""
    value = round(nanos / 1e9)
    return str(int(value)) if value != 0 else ("-0" if nanos < 0 else "0")


# -- time ---------------------------------------------------------------------------------------


class MarshalError(ValueError):
    """``json.Marshal`` failed (a ``time.Time`` outside the years JSON can carry)."""


def _civil(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) of a day count from 1970-01-01, any year."""
    shifted = days + 719_468
    era = shifted // 146_097
    day_of_era = shifted - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    return year_of_era + era * 400 + (month <= 2), month, day


def _go_year(year: int) -> str:
    """The ``2006`` layout element: at least four digits, a sign when negative."""
    return ("-" if year < 0 else "") + f"{abs(year):04d}"


def rfc3339_nano(epoch_ns: int) -> str:
    """``time.RFC3339Nano`` in UTC as ``Time.MarshalJSON`` writes it (fraction without
    trailing zeros, ``Z``); :class:`MarshalError` outside the years 0 to 9999."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    days, second_of_day = divmod(seconds, 86_400)
    year, month, day = _civil(days)
    if not 0 <= year <= 9999:
        raise MarshalError("Time.MarshalJSON: year outside of range [0,9999]")
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    return (
        f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{_frac(nanos, 9)}Z"
    )


class GoTime:
    """A ``time.Time`` in a JSON answer: formatted (or failing) when the answer is marshalled."""

    __slots__ = ("epoch_ns",)

    def __init__(self, epoch_ns: int) -> None:
        self.epoch_ns = epoch_ns


_WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(epoch: int) -> str:
    """``http.TimeFormat`` (``Mon, 02 Jan 2006 15:04:05 GMT``) of Unix seconds, any year."""
    days, second_of_day = divmod(int(epoch), 86_400)
    year, month, day = _civil(days)
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    return (
        f"{_WEEKDAYS[(days + 4) % 7]}, {day:02d} {_MONTHS[month - 1]} {_go_year(year)} "
        f"{hour:02d}:{minute:02d}:{second:02d} GMT"
    )


_HTTP_DATE_FORMATS = (
    "%a, %d %b %Y %H:%M:%S GMT",  # RFC 1123
    "%A, %d-%b-%y %H:%M:%S GMT",  # RFC 850
    "%a %b %d %H:%M:%S %Y",  # ANSI C
)


def parse_http_date(text: str) -> int | None:
    """``http.ParseTime``: Unix seconds, or None."""
    for fmt in _HTTP_DATE_FORMATS:
        try:
            moment = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return int(moment.replace(tzinfo=timezone.utc).timestamp())
    ansi = re.fullmatch(r"([A-Z][a-z]{2}) ([A-Z][a-z]{2}) ( \d|\d\d) (.*)", text)
    if ansi:  # "Mon Jan  2 15:04:05 2006": a space-padded day
        return parse_http_date(
            f"{ansi.group(1)} {ansi.group(2)} {ansi.group(3).strip()} {ansi.group(4)}"
        )
    return None


# -- JSON output --------------------------------------------------------------------------------

_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029\ud800-\udfff]')


def _escape_char(match: re.Match[str]) -> str:
    char = match.group(0)
    known = _JSON_ESCAPES.get(char)
    if known is not None:
        return known
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"
    return f"\\u{ord(char):04x}"


def go_float(value: float) -> str:
    """A float64 as ``encoding/json`` writes it."""
    if not math.isfinite(value):
        raise ValueError("unsupported value")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        mantissa, _, exponent = f"{value!r}".partition("e")
        if not exponent:
            text = f"{Decimal(repr(value)):e}"
            mantissa, _, exponent = text.partition("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        exp = int(exponent)
        return f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}".replace("e-0", "e-", 1)
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def go_json(value: Any) -> bytes:
    """``json.Marshal``: compact, HTML-escaped, keys in the order given (sort maps first)."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts).encode("utf-8")


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(go_float(value))
    elif isinstance(value, str):
        out.append('"' + _NEEDS_ESCAPE.sub(_escape_char, value) + '"')
    elif isinstance(value, GoTime):
        out.append('"' + rfc3339_nano(value.epoch_ns) + '"')
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            _encode(str(key), out)
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__}")


def gin_h(**fields: Any) -> dict[str, Any]:
    """A ``gin.H`` map: Go marshals map keys sorted."""
    return {key: fields[key] for key in sorted(fields)}


# -- file modes ---------------------------------------------------------------------------------


def file_mode_string(st_mode: int) -> str:
    """``os.FileMode.String`` of an ``os.stat`` mode: ``-rw-r--r--``, ``drwxr-xr-x``, ..."""
    kind = stat.S_IFMT(st_mode)
    letters = ""
    if kind == stat.S_IFDIR:
        letters += "d"
    if kind == stat.S_IFLNK:
        letters += "L"
    if kind in (stat.S_IFBLK, stat.S_IFCHR):
        letters += "D"
    if kind == stat.S_IFIFO:
        letters += "p"
    if kind == stat.S_IFSOCK:
        letters += "S"
    if st_mode & stat.S_ISUID:
        letters += "u"
    if st_mode & stat.S_ISGID:
        letters += "g"
    if kind == stat.S_IFCHR:
        letters += "c"
    if st_mode & stat.S_ISVTX:
        letters += "t"
    rwx = "".join(
        char if st_mode & (1 << (8 - index)) else "-" for index, char in enumerate("rwxrwxrwx")
    )
    return (letters or "-") + rwx


# -- paths and URLs -----------------------------------------------------------------------------


def clean(path: str) -> str:
    """``path.Clean`` / ``filepath.Clean`` on Unix."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    joined = "/".join(parts)
    if rooted:
        return "/" + joined
    return joined or "."


def rel(base: str, target: str) -> str:
    """``filepath.Rel`` for two absolute, cleaned paths."""
    base_parts = [p for p in clean(base).split("/") if p]
    target_parts = [p for p in clean(target).split("/") if p]
    common = 0
    while (
        common < len(base_parts)
        and common < len(target_parts)
        and base_parts[common] == target_parts[common]
    ):
        common += 1
    ups = [".."] * (len(base_parts) - common)
    return "/".join(ups + target_parts[common:]) or "."


_PATH_SAFE = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~$&+,/:;=@"
)


def escape_path(path: str) -> str:
    """``url.URL.EscapedPath`` of a decoded path (no RawPath)."""
    out = []
    for byte in path.encode("utf-8", "surrogateescape"):
        out.append(chr(byte) if byte in _PATH_SAFE else f"%{byte:02X}")
    return "".join(out)


def unescape_path(raw: str) -> str | None:
    """``url.PathUnescape``; None for a malformed escape."""
    if "%" not in raw:
        return raw
    data = raw.encode("latin-1", "replace")
    out = bytearray()
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == 0x25:
            pair = data[index + 1 : index + 3]
            if len(pair) < 2 or not all(chr(c) in "0123456789abcdefABCDEF" for c in pair):
                return None
            out.append(int(pair, 16))
            index += 3
        else:
            out.append(byte)
            index += 1
    return bytes(out).decode("utf-8", "surrogateescape")


def html_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


def hex_escape_non_ascii(text: str) -> str:
    data = text.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if b < 0x80 else f"%{b:02x}" for b in data)


def canonical_header(name: str) -> str:
    """``textproto.CanonicalMIMEHeaderKey``."""
    if not name or any(c in name for c in " \t:") or not name.isascii():
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


# -- MIME types ---------------------------------------------------------------------------------

_BUILTIN_TYPES = {
    ".avif": "image/avif",
    ".css": "text/css; charset=utf-8",
    ".gif": "image/gif",
    ".htm": "text/html; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".mjs": "text/javascript; charset=utf-8",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".xml": "text/xml; charset=utf-8",
}
# Only used where the machine has no MIME database at all (Go would know none of these then).
_FALLBACK_TYPES = {".txt": "text/plain", ".csv": "text/csv", ".md": "text/markdown"}
_MIME_GLOBS = ("/usr/local/share/mime/globs2", "/usr/share/mime/globs2")
_MIME_FILES = (
    "/etc/mime.types",
    "/etc/apache2/mime.types",
    "/etc/apache/mime.types",
    "/etc/httpd/conf/mime.types",
)
_mime_lock = threading.Lock()
_mime_types: dict[str, str] | None = None
_mime_lower: dict[str, str] = {}


def _with_charset(mime_type: str) -> str:
    if mime_type.startswith("text/") and "charset=" not in mime_type:
        return mime_type + "; charset=utf-8"
    return mime_type


def _load_mime() -> dict[str, str]:
    types = dict(_BUILTIN_TYPES)

    def add(ext: str, mime_type: str) -> None:
        value = _with_charset(mime_type)
        types[ext] = value
        _mime_lower[ext.lower()] = value

    for ext, value in _BUILTIN_TYPES.items():
        _mime_lower[ext] = value
    for filename in _MIME_GLOBS:
        try:
            with open(filename, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    fields = line.rstrip("\n").split(":")
                    if len(fields) < 3 or not fields[0] or len(fields[2]) < 3:
                        continue
                    if fields[0][0] == "#" or fields[2][0] != "*" or fields[2][1] != ".":
                        continue
                    ext = fields[2][1:]
                    if any(c in ext for c in "?*[") or ext in types:
                        continue
                    add(ext, fields[1])
            return types
        except OSError:
            continue
    found = False
    for filename in _MIME_FILES:
        try:
            with open(filename, encoding="utf-8", errors="replace") as handle:
                found = True
                for line in handle:
                    fields = line.split()
                    if len(fields) <= 1 or fields[0].startswith("#"):
                        continue
                    for ext in fields[1:]:
                        if ext.startswith("#"):
                            break
                        add("." + ext, fields[0])
        except OSError:
            continue
    if not found:
        for ext, mime_type in _FALLBACK_TYPES.items():
            add(ext, mime_type)
    return types


def type_by_extension(ext: str) -> str:
    """``mime.TypeByExtension``: "" when unknown."""
    global _mime_types
    with _mime_lock:
        if _mime_types is None:
            _mime_types = _load_mime()
        types = _mime_types
    if ext in types:
        return types[ext]
    return _mime_lower.get(ext.lower(), "")


def ext(path: str) -> str:
    """``filepath.Ext``."""
    index = len(path) - 1
    while index >= 0 and path[index] != "/":
        if path[index] == ".":
            return path[index:]
        index -= 1
    return ""


# -- base64 -------------------------------------------------------------------------------------


def b64decode_std(text: str) -> bytes:
    """``base64.StdEncoding.DecodeString``; ValueError carries Go's message."""
    if text.isascii() and "\n" not in text and "\r" not in text:
        stripped = text.rstrip("=")
        if "=" not in stripped and len(text) % 4 == 0 and len(text) - len(stripped) <= 2:
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                pass
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    table = {ord(c): i for i, c in enumerate(alphabet)}
    src = text.encode("utf-8")
    out = bytearray()
    si = 0

    def corrupt(position: int) -> ValueError:
        return ValueError(f"illegal base64 data at input byte {position}")

    while True:
        quantum = [0, 0, 0, 0]
        dlen = 4
        j = 0
        while j < 4:
            if si == len(src):
                if j == 0:
                    return bytes(out)
                raise corrupt(si - j)
            byte = src[si]
            si += 1
            if byte in table:
                quantum[j] = table[byte]
                j += 1
                continue
            if byte in (0x0A, 0x0D):
                continue
            if byte != 0x3D:
                raise corrupt(si - 1)
            if j in (0, 1):
                raise corrupt(si - 1)
            if j == 2:
                while si < len(src) and src[si] in (0x0A, 0x0D):
                    si += 1
                if si == len(src):
                    raise corrupt(len(src))
                if src[si] != 0x3D:
                    raise corrupt(si - 1)
                si += 1
            while si < len(src) and src[si] in (0x0A, 0x0D):
                si += 1
            if si < len(src):
                raise corrupt(si)
            dlen = j
            break
        value = quantum[0] << 18 | quantum[1] << 12 | quantum[2] << 6 | quantum[3]
        out += value.to_bytes(3, "big")[: dlen - 1]
        if dlen < 4:
            return bytes(out)
