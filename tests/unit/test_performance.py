"""The performance changes keep every behaviour: each fast path answers what the slow one did."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import threading
import time
from typing import Any

import pytest
import requests

from agentcube import _config, _protocol
from agentcube._drivers import _environment, _pool, _watchdog
from agentcube._flows import commands, control_plane, files
from agentcube.exceptions import DataPlaneError, InvalidArgumentError
from agentcube.kinds import AGENT_RUNTIME, CODE_INTERPRETER, ResourceKind
from agentcube.models import ExecuteResponse, FileInfo


def _reply(content: bytes, status: int = 200) -> _protocol.Reply:
    return _protocol.Reply(status, {}, content, None)


# -- ResourceKind: no dataclasses import, still a frozen dataclass to whoever asks ----------------


def test_resource_kind_behaves_as_the_frozen_dataclass_it_was():
    kind = ResourceKind("Browser", "browser", "browsers")
    assert repr(kind) == (
        "ResourceKind(name='Browser', control_plane_segment='browser', router_segment='browsers')"
    )
    assert kind == ResourceKind("Browser", "browser", "browsers")
    assert kind != CODE_INTERPRETER and kind != ("Browser", "browser", "browsers")
    assert hash(kind) == hash(ResourceKind("Browser", "browser", "browsers"))
    assert dataclasses.is_dataclass(kind)
    assert [f.name for f in dataclasses.fields(kind)] == [
        "name",
        "control_plane_segment",
        "router_segment",
    ]
    assert dataclasses.asdict(AGENT_RUNTIME) == {
        "name": "AgentRuntime",
        "control_plane_segment": "agent-runtime",
        "router_segment": "agent-runtimes",
    }
    assert dataclasses.replace(kind, name="Other").name == "Other"
    assert pickle.loads(pickle.dumps(kind)) == kind  # noqa: S301
    assert copy.deepcopy(kind) == kind
    with pytest.raises(dataclasses.FrozenInstanceError):
        del kind.name
    match kind:
        case ResourceKind(name, cp, router):
            assert (name, cp, router) == ("Browser", "browser", "browsers")


# -- answers read without building a model: the same values, the same errors ---------------------

EXECUTE_ANSWERS = [
    {"exit_code": 0, "stdout": "out", "stderr": "err"},
    {"exit_code": 3, "stdout": None, "stderr": None, "duration": "1ms", "extra": [1]},
    {"exit_code": 0},
    {"exit_code": 1.0, "stdout": "x"},  # lax: the model accepts it
    {"exit_code": "2", "stdout": "x"},
    {"exit_code": True},
    {"exit_code": 0, "stdout": 5},
    {"exit_code": None},
    {"stdout": "x"},
    [],
    "text",
]


@pytest.mark.parametrize("answer", EXECUTE_ANSWERS, ids=repr)
def test_execute_answers_read_as_the_model_reads_them(answer: Any):
    reply = _reply(json.dumps(answer).encode())
    try:
        model = commands.parse_executed(reply, "s-1").response()
    except DataPlaneError as exc:
        with pytest.raises(DataPlaneError) as fast:
            commands.parse_executed(reply, "s-1")
        assert str(fast.value) == str(exc)
        return
    fast_result = commands.parse_executed(reply, "s-1")
    assert (fast_result.exit_code, fast_result.stdout, fast_result.stderr) == (
        model.exit_code,
        model.stdout,
        model.stderr,
    )


@pytest.mark.parametrize("content", [b"", b"not json", b"{", b'{"exit_code": NaN}', b"\xff"])
def test_execute_answers_that_are_not_json_raise_as_before(content: bytes):
    with pytest.raises(DataPlaneError) as slow:
        commands.parse_executed(_reply(content), None).response()
    with pytest.raises(DataPlaneError) as fast:
        commands.parse_executed(_reply(content), None)
    assert str(fast.value) == str(slow.value)


FILE_ANSWERS = [
    {"path": "a.txt", "size": 3, "mode": "-rw-r--r--", "modified": "2024-01-01T00:00:00Z"},
    {"path": "a.txt", "size": 3, "mode": None, "other": {"x": 1}},
    {},
    {"size": "3"},  # lax: the model accepts it
    {"size": 1.5},
    {"path": 5},
    {"mode": 420},
    [],
]


@pytest.mark.parametrize("answer", FILE_ANSWERS, ids=repr)
def test_file_answers_read_as_the_model_reads_them(answer: Any):
    content = json.dumps(answer).encode()
    try:
        expected = FileInfo.model_validate_json(content)
    except ValueError:
        with pytest.raises(DataPlaneError):
            files.parse_file_info(_reply(content), "s-1")
        return
    info = files.parse_file_info(_reply(content), "s-1")
    assert files.file_info(info) == expected
    assert files.file_info(info).model_dump() == expected.model_dump()


def test_create_answers_keep_their_model():
    reply = _reply(b'{"sessionId": "s-1", "entryPoints": [{"path": "/x"}], "new": 1}')
    created = control_plane.parse_create_answer(reply, CODE_INTERPRETER)
    assert created.session_id == "s-1"
    assert created.entry_points[0].path == "/x"
    broken = _reply(b'{"sessionId": "s-2", "entryPoints": 7}')
    assert control_plane.parse_create_answer(broken, CODE_INTERPRETER).session_id == "s-2"


def test_models_still_build_and_validate():
    assert ExecuteResponse.model_validate({"exit_code": 0, "stdout": None}).stdout == ""


# -- JSON: one decoder, the answers of json.loads --------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": [1, 2.5, "\\u00e9", null]}',
        '{"a": 1}',
        "\ufeff{}".encode(),
        '{"a": 1}'.encode("utf-16"),
        bytearray(b"[1]"),
    ],
    ids=repr,
)
def test_parse_json_answers_as_json_loads(data: Any):
    assert _protocol.parse_json(data) == json.loads(data)


@pytest.mark.parametrize(
    "data", [b"NaN", b'{"a": Infinity}', b"", b"\xff", "\ufeff{}", b"[" * 100_000], ids=repr
)
def test_parse_json_refuses_what_it_refused(data: Any):
    with pytest.raises(ValueError):
        _protocol.parse_json(data)


# -- URLs: checked in full once, refused every time ------------------------------------------------


def test_a_valid_url_is_checked_once_and_an_invalid_one_always(monkeypatch):
    checked: list[str] = []
    real = _config.urlsplit

    def counting(url: str) -> Any:
        checked.append(url)
        return real(url)

    monkeypatch.setattr(_config, "urlsplit", counting)
    monkeypatch.setattr(_config, "_VALID_URLS", {})
    for _ in range(3):
        assert _config.validate_url("http://once.test:8080/", "router_url") == (
            "http://once.test:8080"
        )
    assert checked == ["http://once.test:8080/"]
    for _ in range(2):
        with pytest.raises(InvalidArgumentError):
            _config.validate_url("http://bad.test:0", "router_url")
    assert checked.count("http://bad.test:0") == 2
    for text in ("http://a .test", "http://a.test\x7f", "http://a\t.test", "http://\x1fa.test"):
        with pytest.raises(InvalidArgumentError, match="without spaces or controls"):
            _config.validate_url(text, "router_url")


# -- sessions: built without default adapters, the same as requests builds them --------------------


def test_pooled_sessions_are_what_requests_session_builds():
    ours, theirs = _pool.pooled_session(), requests.Session()
    assert _environment._KNOWN_SESSION
    assert sorted(vars(ours)) == sorted(vars(theirs))
    for name, value in vars(theirs).items():
        if name == "adapters":
            assert list(ours.adapters) == list(value)
            assert all(a is _pool._pool for a in ours.adapters.values())
        elif name == "cookies":
            assert type(ours.cookies) is type(value) and len(ours.cookies) == 0
        else:
            assert getattr(ours, name) == value, name
    other = _pool.pooled_session()
    assert other.cookies is not ours.cookies and other.headers is not ours.headers
    assert other.hooks is not ours.hooks and other.hooks["response"] is not ours.hooks["response"]


def test_an_unknown_requests_session_is_built_by_requests(monkeypatch):
    monkeypatch.setattr(_environment, "_KNOWN_SESSION", False)
    session = _pool.pooled_session()
    assert isinstance(session, requests.Session)
    assert all(a is _pool._pool for a in session.adapters.values())


# -- the watchdog: no wake-up per request, still fires --------------------------------------------


def test_the_watchdog_is_woken_only_for_an_earlier_deadline():
    dog = _watchdog.Watchdog()
    wakeups = 0
    notify = dog._lock.notify

    def counting_notify(n: int = 1) -> None:
        nonlocal wakeups
        wakeups += 1
        notify(n)

    dog._lock.notify = counting_notify  # type: ignore[method-assign]
    first = dog.arm(100.0)
    time.sleep(0.05)  # the thread now sleeps until the first deadline
    for _ in range(20):
        dog.disarm(dog.arm(200.0))
    assert wakeups == 1
    dog.disarm(dog.arm(0.01))  # earlier: the thread must know
    assert wakeups == 2
    dog.disarm(first)


def test_the_watchdog_still_cuts_an_attempt_past_its_deadline():
    dog = _watchdog.Watchdog()
    dog.disarm(dog.arm(100.0))  # the thread runs and sleeps on a deadline far away

    class Conn:
        def __init__(self) -> None:
            self.sock = self
            self.cut = threading.Event()

        def shutdown(self, how: int) -> None:
            self.cut.set()

    watch = dog.arm(0.05)
    watch.conn = conn = Conn()
    assert conn.cut.wait(5)
    assert dog.disarm(watch) is True


def test_a_watchdog_thread_outlived_by_forget_in_child_ends_quietly():
    dog = _watchdog.Watchdog()
    dog.disarm(dog.arm(0.05))  # the thread sleeps until that deadline, then looks again
    old = dog._thread
    assert old is not None
    dog.forget_in_child()  # as the tests that simulate a fork do, in this process
    old.join(5)
    assert not old.is_alive()  # it ended; before, it raised "cannot wait on un-acquired lock"
    watch = dog.arm(100.0)  # a new thread takes over
    assert dog._thread is not None and dog._thread is not old
    dog.disarm(watch)
