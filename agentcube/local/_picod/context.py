"""What every PicoD handler shares: gin's context with PicoD's error body, and body binding."""

from __future__ import annotations

from typing import Any

from .._go.binding import BindError, GoStruct, bind
from .._go.gin import BodyReadError, Context, GoResponse, read_all
from .._go.stdlib import gin_h


class PicodContext(Context):
    """gin's context; PicoD's errors are ``{"error": message, "code": status}``."""

    def error(self, status: int, message: str) -> GoResponse:
        return self.json(status, gin_h(error=message, code=status))


def bind_body(c: PicodContext, struct: GoStruct) -> dict[str, Any] | GoResponse:
    """The JSON body bound to ``struct`` (gin's ``ShouldBindJSON``), or PicoD's 400."""
    try:
        data = read_all(c.request.body)
    except BodyReadError as exc:
        return c.error(400, str(exc))
    try:
        return bind(data, struct)
    except BindError as exc:
        return c.error(400, str(exc))
