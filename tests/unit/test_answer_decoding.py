"""JSON answers are decoded as 0.1.0 decoded them through requests' ``Response.json()``: bytes
that are not UTF-8 inside a JSON string become U+FFFD (the answer is still JSON), a declared
charset is honoured, and the strictness stays (no NaN, no absurd nesting) (issue 17).

The async twin is ``tests/async/test_async_answers_and_lost_sessions.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from agentcube import DataPlaneError, ServerError, ServiceAccountAuth
from agentcube._protocol import Reply

INVALID = b'{"stdout": "\xff\xfe", "stderr": "", "exit_code": 0}'
JSON = {"Content-Type": "application/json"}
GIN_JSON = {"Content-Type": "application/json; charset=utf-8"}


@pytest.fixture
def ci(make_ci: Any) -> Any:
    return make_ci(session_id="ci-1")


def _requests_json(content: bytes, headers: dict[str, str]) -> Any:
    """What 0.1.0 returned: requests' own ``Response.json()`` of that answer."""
    response = requests.models.Response()
    response._content = content
    response.status_code = 200
    response.headers = CaseInsensitiveDict(headers)
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    return response.json()


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (INVALID, JSON),
        (INVALID, GIN_JSON),
        (b'{"a": "\xed\xa0\x80 \xc3\x28 \xe9"}', JSON),  # an encoded surrogate, a bad pair
        (b'{"a": "caf\xe9"}', {"Content-Type": "application/json; charset=latin-1"}),
        (b'{"a": "caf\xe9"}', {"Content-Type": "application/json; charset=ISO-8859-1"}),
        (b'{"a": [1, "\xc3\xa9"]}', JSON),
    ],
    ids=repr,
)
def test_a_json_answer_reads_as_requests_read_it(content: bytes, headers: dict[str, str]) -> None:
    reply = Reply(200, CaseInsensitiveDict(headers), content, None)
    assert reply.json() == _requests_json(content, headers)


@pytest.mark.parametrize(
    "content", [b'{"a": NaN}', b'{"a": -Infinity}', b"[" * 100_000, b"\xff\xfe", b""], ids=repr
)
def test_the_strictness_stays(content: bytes) -> None:
    # 0.1.0 parsed NaN and Infinity, and a deep nesting raised RecursionError: kept strict here.
    with pytest.raises(ValueError):
        Reply(200, CaseInsensitiveDict(JSON), content, None).json()


def test_execute_with_invalid_utf8_in_its_answer_returns_the_output(cube, ci) -> None:
    cube.execute(content=INVALID, headers=GIN_JSON)
    assert ci.execute_command("x") == "\ufffd\ufffd"
    expected = {"stdout": "\ufffd\ufffd", "stderr": "", "exit_code": 0}
    assert ci.execute_command_result("x") == expected
    assert ci.data_plane.execute(["x"]).stdout == "\ufffd\ufffd"  # the model reads it too


def test_an_unusual_execute_answer_with_invalid_utf8_goes_through_the_model(cube, ci) -> None:
    cube.execute(content=b'{"stdout": "\xff", "exit_code": "0"}', headers=JSON)
    assert ci.execute_command_result("x") == {"stdout": "\ufffd", "stderr": "", "exit_code": 0}


def test_invoke_with_invalid_utf8_in_its_answer_returns_the_dict(cube, make_ar, requests_mock):
    cube.bootstrap("ar-1")
    requests_mock.post(cube.ar_url(), content=b'{"reply": "\xff\xfe ok"}', headers=JSON)
    assert make_ar().invoke({"q": 1}) == {"reply": "\ufffd\ufffd ok"}


def test_invoke_of_a_text_answer_decodes_it_in_its_charset(cube, make_ar, requests_mock):
    cube.bootstrap("ar-1")
    plain = {"Content-Type": "text/plain; charset=latin-1"}
    requests_mock.post(cube.ar_url(), content=b"caf\xe9", headers=plain)
    assert make_ar().invoke({"q": 1}) == "caf\u00e9"


def test_list_files_with_invalid_utf8_in_its_answer_lists(cube, ci, requests_mock) -> None:
    body = b'{"files": [{"name": "a\xff.txt", "size": 1, "mode": "-rw-r--r--", "is_dir": false}]}'
    requests_mock.get(cube.ci_url("api/files"), content=body, headers=GIN_JSON)
    (entry,) = ci.list_files(".")
    assert entry["name"] == "a\ufffd.txt"


def test_an_error_answer_with_invalid_utf8_keeps_its_message(cube, ci) -> None:
    cube.execute(status_code=500, content=b'{"error": "bad \xff"}', headers=JSON)
    with pytest.raises(ServerError) as info:
        ci.execute_command("x")
    assert info.value.message == "bad \ufffd"


def test_an_answer_that_is_not_json_still_raises(cube, ci) -> None:
    cube.execute(content=b"\xff\xfe", headers=JSON)
    with pytest.raises(DataPlaneError):
        ci.execute_command("x")


def test_a_token_answer_with_invalid_utf8_elsewhere_still_gives_its_token(requests_mock):
    answer = b'{"access_token": "tok-1", "expires_in": 60, "scope": "\xff"}'
    requests_mock.post("http://idp.test/token", content=answer, headers=JSON)
    assert ServiceAccountAuth("http://idp.test/token", "client", "secret").get_token() == "tok-1"
