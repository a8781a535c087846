"""Go's formats, as the sandbox (PicoD, written in Go) reads and writes them: durations and
file modes."""

from __future__ import annotations

import math


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration string ("30s", "1500ms"), rounded up to the millisecond."""
    millis = math.ceil(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


_SPECIAL_BITS = (("u", 0o4000), ("g", 0o2000), ("t", 0o1000))


def parse_mode(text: object) -> int | None:
    """Permission bits from a file-info ``mode``: Go's FileMode string (``-rwxr-xr-x``,
    ``urwxr-xr-x`` for setuid) or an octal string; None when it is neither."""
    if not isinstance(text, str) or not text:
        return None
    if text.isdigit() and all(c in "01234567" for c in text):
        return int(text, 8)
    if len(text) < 10:
        return None
    perms, prefix = text[-9:], text[:-9]
    bits = 0
    for i, c in enumerate(perms):
        if c == "rwxrwxrwx"[i]:
            bits |= 1 << (8 - i)
        elif c != "-":
            return None
    for letter, bit in _SPECIAL_BITS:
        if letter in prefix:
            bits |= bit
    return bits


def go_mode_string(bits: int) -> str:
    """A regular file's mode as Go prints it."""
    prefix = "".join(c for c, bit in _SPECIAL_BITS if bits & bit)
    perms = "".join(c if bits & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
    return (prefix or "-") + perms
