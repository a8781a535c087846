"""Properties of the pieces the reliability promises rest on (requests-mock, no sockets).

* Retries: never more attempts than the policy allows, never a second POST once one may have
  reached the server, and the outcome is the last attempt's.
* Tokens: a token is either sendable as a header or refused without being echoed.
* Error messages: a server that echoes the token never puts it in the SDK's message.
* Token lifetimes from a token endpoint are always finite.
"""

from __future__ import annotations

import json
import math

import pytest
import requests
import requests_mock as rm
from hypothesis import given, settings
from hypothesis import strategies as st

from agentcube import (
    AgentCubeError,
    APIConnectionError,
    APITimeoutError,
    ServerError,
    ServiceAccountAuth,
    TokenAuth,
)
from agentcube._credentials import check_bearer_token as _check_bearer_token
from agentcube._drivers._sync import SyncTransport
from agentcube._protocol import Call, Endpoint, RetryPolicy
from agentcube.auth import TokenAuth as _TokenAuth

URL = "http://svc.test"
PROPERTY = settings(max_examples=150, deadline=None)

# One attempt's outcome: an HTTP status, or a transport failure before or after sending.
OUTCOMES = st.sampled_from([200, 404, 429, 500, 502, 503, 504, "refused", "read-timeout", "reset"])


def _response(outcome: int | str) -> dict[str, object]:
    if outcome == "refused":  # the connection was never opened: nothing was sent
        return {"exc": requests.exceptions.ConnectTimeout("connect timed out")}
    if outcome == "read-timeout":
        return {"exc": requests.exceptions.ReadTimeout("read timed out")}
    if outcome == "reset":
        return {"exc": requests.exceptions.ConnectionError("connection reset by peer")}
    return {"status_code": outcome, "json": {"message": f"status {outcome}"}}


@PROPERTY
@given(
    method=st.sampled_from(["GET", "DELETE", "POST"]),
    outcomes=st.lists(OUTCOMES, min_size=1, max_size=6),
    max_attempts=st.integers(min_value=1, max_value=5),
)
def test_retries_stay_within_the_policy(
    method: str, outcomes: list[int | str], max_attempts: int
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, backoff=0, max_backoff=0)
    endpoint = Endpoint(URL, None, 5.0, 5.0, policy)
    transport = SyncTransport()
    # Pad with the last outcome: the server keeps answering the same way.
    answers = [_response(o) for o in outcomes] + [_response(outcomes[-1])] * max_attempts
    with rm.Mocker() as mock:
        mock.register_uri(method, URL + "/x", answers)
        try:
            result: object = transport.send(Call(endpoint, method, "/x")).raw
        except AgentCubeError as exc:
            result = exc
        calls = mock.call_count
    assert 1 <= calls <= max_attempts
    seen = (outcomes + [outcomes[-1]] * max_attempts)[:calls]
    idempotent = method != "POST"
    for outcome in seen[:-1]:  # every attempt but the last was retried: was it allowed?
        if idempotent:
            assert outcome in (429, 502, 503, 504, "refused", "read-timeout", "reset")
        else:
            # Only what never reached a server, or what the Router shed (429), is re-sent.
            assert outcome in ("refused", 429), (
                "a POST that may have reached the server was re-sent"
            )
    last = seen[-1]
    if isinstance(result, requests.Response):
        assert last in (200,)
    elif last == "read-timeout":
        assert isinstance(result, APITimeoutError)
    elif last in ("refused", "reset"):
        assert isinstance(result, APIConnectionError)
    else:
        assert getattr(result, "status_code", None) == last
        assert isinstance(result, ServerError) == (last >= 500)


@PROPERTY
@given(st.text(max_size=40) | st.text(alphabet="ab \t\r\n\x00\x7f\u00e9\u2028", max_size=10))
def test_a_token_is_sendable_or_refused_without_echo(token: str) -> None:
    try:
        checked = _check_bearer_token(token)
    except ValueError as exc:
        if len(token.strip()) >= 3:
            assert token.strip() not in str(exc)
        return
    assert checked == token
    prepared = requests.Request("GET", URL, headers={"Authorization": f"Bearer {token}"})
    header = prepared.prepare().headers["Authorization"]  # requests' own header validation
    header.encode("latin-1")  # what http.client does with it
    assert header == f"Bearer {token}"
    assert TokenAuth(token).get_token() == token


@PROPERTY
@given(
    token=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~+/", min_size=8, max_size=40),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
    key=st.sampled_from(["message", "error", None]),
)
def test_a_server_echoing_the_token_never_puts_it_in_the_error(
    token: str, before: str, after: str, key: str | None
) -> None:
    echoed = before + token + after
    endpoint = Endpoint(URL, _TokenAuth(token), 5.0, 5.0, RetryPolicy(max_attempts=1))
    with rm.Mocker() as mock:
        body = {"json": {key: echoed}} if key else {"text": echoed}
        mock.post(URL + "/x", status_code=401, **body)
        with pytest.raises(AgentCubeError) as info:
            SyncTransport().send(Call(endpoint, "POST", "/x", session_id="s-1"))
    error = info.value
    for text in (str(error), repr(error), getattr(error, "message", None) or ""):
        assert token not in text


@PROPERTY
@given(
    expires_in=st.one_of(
        st.none(),
        st.integers(),
        st.floats(),  # NaN and infinities included
        st.text(max_size=5),
        st.just(10**400),
    )
)
def test_token_lifetimes_are_always_finite(expires_in: object) -> None:
    auth = ServiceAccountAuth("http://idp.test/token", "client", "secret")
    with rm.Mocker() as mock:
        # json.dumps writes NaN and Infinity, which requests parses back, like servers may send.
        text = json.dumps({"access_token": "tok-1", "expires_in": expires_in})
        mock.post("http://idp.test/token", text=text)
        assert auth.get_token() == "tok-1"
    assert math.isfinite(auth._expires_at)


def test_retry_delays_never_exceed_their_cap() -> None:
    policy = RetryPolicy(max_attempts=10, backoff=0.2, max_backoff=2.0)
    for attempt in range(1, 10):
        cap = min(2.0, 0.2 * 2 ** (attempt - 1))
        assert all(0 <= policy.delay(attempt) <= cap for _ in range(200))


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "\u00e9t\u00e9", " lead", "trail "])
def test_token_auth_refuses_what_cannot_be_sent(bad: str) -> None:
    if bad != bad.strip():  # TokenAuth strips surrounding spaces: that token is fine
        assert TokenAuth(bad).get_token() == bad.strip()
        return
    with pytest.raises(ValueError) as info:
        TokenAuth(bad)
    assert bad not in str(info.value)
