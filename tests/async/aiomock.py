"""Routes over aioresponses for the async tests: what a route answers, and what it was sent.

A route matches a method and a URL (its query ignored when the route names none) or a URL
prefix, and answers with a fixed :class:`Answer`, a list of answers (or exceptions) in turn, or
a function of the :class:`Request` (which may be a coroutine function, to hold a request at a
gate). Every request is kept: the route's ``calls``, and the router's ``calls`` for all of them,
matched or not. A request no route matches fails the test at the end (aioresponses answers it
with a connection error, so nothing leaves the machine).
"""

from __future__ import annotations

import inspect
import json as jsonlib
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from aiohttp import ClientResponse
from aioresponses import CallbackResult, aioresponses
from multidict import CIMultiDict

METHODS = ("GET", "POST", "DELETE", "PUT", "PATCH", "HEAD")
_NEEDS_WRITER = "stream_writer" in inspect.signature(ClientResponse.__init__).parameters


class _Response(ClientResponse):
    """aioresponses 0.7.9 builds its answers without the ``stream_writer`` that aiohttp 3.14
    requires (pnuckowski/aioresponses#289): one that says the request was sent."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        if _NEEDS_WRITER:
            kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


class Answer:
    """An HTTP answer for a route: a status, a JSON body, text or bytes, headers."""

    def __init__(
        self,
        status: int = 200,
        *,
        json: Any = None,
        text: str | None = None,
        content: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        if text is not None:
            content = text.encode()
            if not any(k.lower() == "content-type" for k in self.headers):
                self.headers["Content-Type"] = "text/plain; charset=utf-8"
        if json is not None:
            content = jsonlib.dumps(json).encode()
            self.headers.setdefault("Content-Type", "application/json")
        self.content = content

    def result(self) -> CallbackResult:
        headers = dict(self.headers)
        content_type = ""
        for key in list(headers):
            if key.lower() == "content-type":
                content_type = headers.pop(key)
        return CallbackResult(
            status=self.status,
            body=self.content,
            headers=headers,
            content_type=content_type,
            response_class=_Response,
        )


class Request:
    """A request as a route received it."""

    def __init__(self, method: str, url: str, kwargs: dict[str, Any]) -> None:
        self.method = method
        self.url = url
        self.headers = CIMultiDict(kwargs.get("headers") or {})
        data = kwargs.get("data")
        self.content = data if isinstance(data, bytes) else b""


class Call:
    def __init__(self, request: Request) -> None:
        self.request = request


class Calls(list[Call]):
    @property
    def last(self) -> Call:
        return self[-1]


class Route:
    """One route; ``mock(return_value=..., side_effect=...)`` sets what it answers."""

    def __init__(self) -> None:
        self.calls = Calls()
        self._answer: Answer = Answer(200)
        self._effect: Any = None

    def mock(self, return_value: Answer | None = None, side_effect: Any = None) -> Route:
        if return_value is not None:
            self._answer = return_value
        self._effect = iter(side_effect) if isinstance(side_effect, list) else side_effect
        return self

    @property
    def call_count(self) -> int:
        return len(self.calls)

    @property
    def called(self) -> bool:
        return bool(self.calls)

    async def respond(self, request: Request) -> CallbackResult:
        self.calls.append(Call(request))
        effect = self._effect
        if isinstance(effect, Iterator):
            effect = next(effect)
        if isinstance(effect, BaseException) or (
            isinstance(effect, type) and issubclass(effect, BaseException)
        ):
            raise effect
        if callable(effect):
            answer = effect(request)
            if inspect.isawaitable(answer):
                answer = await answer
        elif effect is not None:
            answer = effect
        else:
            answer = self._answer
        assert isinstance(answer, Answer), f"a route answered {answer!r}"
        return answer.result()


class MockRouter:
    """The routes of one test, over one ``aioresponses``."""

    def __init__(self, responses: aioresponses) -> None:
        self._responses = responses
        self._routes: list[Route] = []

    def _add(self, methods: tuple[str, ...], pattern: re.Pattern[str]) -> Route:
        route = Route()
        self._routes.append(route)
        for method in methods:

            async def callback(url: Any, *, _method: str = method, **kwargs: Any) -> Any:
                return await route.respond(Request(_method, str(url), kwargs))

            self._responses.add(pattern, method, callback=callback, repeat=True)
        return route

    def route(self, method: str | None = None, url__startswith: str | None = None) -> Route:
        pattern = re.compile(re.escape(url__startswith or "") + ".*", re.DOTALL)
        return self._add((method,) if method else METHODS, pattern)

    def _one(self, method: str, url: str | None, url__startswith: str | None) -> Route:
        if url__startswith is not None:
            return self.route(method, url__startswith)
        assert url is not None
        query = "" if "?" in url else r"(\?.*)?"
        return self._add((method,), re.compile(re.escape(url) + query + r"\Z", re.DOTALL))

    def get(self, url: str | None = None, *, url__startswith: str | None = None) -> Route:
        return self._one("GET", url, url__startswith)

    def post(self, url: str | None = None, *, url__startswith: str | None = None) -> Route:
        return self._one("POST", url, url__startswith)

    def delete(self, url: str | None = None, *, url__startswith: str | None = None) -> Route:
        return self._one("DELETE", url, url__startswith)

    @property
    def calls(self) -> list[Any]:
        """Every request sent, matched by a route or not."""
        return [call for calls in self._responses.requests.values() for call in calls]

    def unmatched(self) -> int:
        return len(self.calls) - sum(route.call_count for route in self._routes)


def mocked() -> Iterator[MockRouter]:
    """The body of a ``mock`` fixture: routes for the test, no request left unmatched."""
    with aioresponses() as responses:
        router = MockRouter(responses)
        yield router
        assert router.unmatched() == 0, "a request matched no route"
