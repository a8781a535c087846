"""The SDK's sessions remember what the environment adds to a request (proxies, NO_PROXY, CA
bundle), and must give exactly what requests itself computes, whatever changes in between."""

from __future__ import annotations

import itertools
import os
import sys
from typing import Any

import pytest
import requests
import requests.sessions

from agentcube._drivers import _environment, _pool

pytestmark = pytest.mark.skipif(
    not _environment._ENV_ONLY_PROXIES,
    reason="proxies come from the system here, not only from env",
)

_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "REQUEST_METHOD",
)

URLS = (
    "http://127.0.0.1:8080/v1/code-interpreter",
    "https://router.example.invalid/v1/namespaces/default/x/invocations/api/files",
    "http://localhost:1/z?q=1",
    "https://[::1]:8443/a",
)

ENVIRONMENTS: list[dict[str, str]] = [
    {},
    {"HTTP_PROXY": "http://proxy.invalid:3128"},
    {"https_proxy": "http://secure-proxy.invalid:3128"},
    {"ALL_PROXY": "socks5://all.invalid:1080"},
    {"Http_Proxy": "http://mixed-case.invalid:1"},  # urllib lowercases every name
    {"HTTP_PROXY": "http://p.invalid:1", "NO_PROXY": "127.0.0.1,localhost"},
    {"HTTPS_PROXY": "http://p.invalid:1", "no_proxy": "127.0.0.0/8"},
    {"HTTP_PROXY": "http://p.invalid:1", "NO_PROXY": "*"},
    {"HTTPS_PROXY": "http://p.invalid:1", "NO_PROXY": ".example.invalid"},
    {"HTTP_PROXY": "http://p.invalid:1", "REQUEST_METHOD": "GET"},  # CGI: http_proxy ignored
    {"REQUESTS_CA_BUNDLE": "/etc/bundle.pem"},
    {"CURL_CA_BUNDLE": "/etc/curl.pem"},
]


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name in _VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    _clear(monkeypatch)
    return monkeypatch


def _settings(session: requests.Session, url: str, stream: bool | None = False) -> Any:
    # What Session.request passes: a fresh, empty proxies dict, verify and cert unset.
    return session.merge_environment_settings(url, {}, stream, None, None)


def _reference(session: requests.Session, url: str, stream: bool | None = False) -> Any:
    return requests.Session.merge_environment_settings(session, url, {}, stream, None, None)


def _configure(session: requests.Session, how: str) -> None:
    if how == "proxies":
        session.proxies = {"http": "http://session-proxy.invalid:1"}
    elif how == "no-verify":
        session.verify = False
    elif how == "cert":
        session.cert = "/etc/client.pem"
    elif how == "no-trust-env":
        session.trust_env = False


@pytest.mark.parametrize("how", ["default", "proxies", "no-verify", "cert", "no-trust-env"])
def test_every_environment_gives_what_requests_computes(
    clean_env: pytest.MonkeyPatch, how: str
) -> None:
    session = _pool.pooled_session()
    _configure(session, how)
    for env, url, stream in itertools.product(ENVIRONMENTS, URLS, (False, True)):
        _clear(clean_env)
        for name, value in env.items():
            clean_env.setenv(name, value)
        expected = _reference(session, url, stream)
        # Twice: computed, then remembered.
        assert _settings(session, url, stream) == expected, (env, url)
        assert _settings(session, url, stream) == expected, (env, url)


def test_a_change_of_environment_is_seen_at_the_next_request(clean_env: pytest.MonkeyPatch) -> None:
    session = _pool.pooled_session()
    url = URLS[1]
    assert _settings(session, url)["proxies"] == {}
    clean_env.setenv("HTTPS_PROXY", "http://p.invalid:3128")
    assert _settings(session, url)["proxies"]["https"] == "http://p.invalid:3128"
    clean_env.setenv("NO_PROXY", "router.example.invalid")
    assert _settings(session, url)["proxies"] == {}
    clean_env.delenv("NO_PROXY")
    clean_env.setenv("HTTPS_PROXY", "http://other.invalid:3128")  # same names, a new value
    assert _settings(session, url)["proxies"]["https"] == "http://other.invalid:3128"
    clean_env.delenv("HTTPS_PROXY")
    assert _settings(session, url)["proxies"] == {}
    clean_env.setenv("REQUESTS_CA_BUNDLE", "/etc/a.pem")
    assert _settings(session, url)["verify"] == "/etc/a.pem"


def test_a_change_of_the_sessions_own_settings_is_seen(clean_env: pytest.MonkeyPatch) -> None:
    session = _pool.pooled_session()
    url = URLS[0]
    assert _settings(session, url)["proxies"] == {}
    session.proxies["http"] = "http://changed-in-place.invalid:1"
    assert _settings(session, url)["proxies"] == {"http": "http://changed-in-place.invalid:1"}
    session.verify = "/etc/own.pem"
    assert _settings(session, url)["verify"] == "/etc/own.pem"
    session.trust_env = False
    clean_env.setenv("REQUESTS_CA_BUNDLE", "/etc/env.pem")
    assert _settings(session, url) == _reference(session, url)
    assert _settings(session, url)["verify"] == "/etc/own.pem"


def test_the_environment_is_scanned_once_per_origin_while_it_stays_the_same(
    clean_env: pytest.MonkeyPatch,
) -> None:
    scans: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counting(url: str, no_proxy: str | None = None) -> Any:
        scans.append(url)
        return real(url, no_proxy=no_proxy)

    clean_env.setattr(requests.sessions, "get_environ_proxies", counting)
    session = _pool.pooled_session()
    for path in ("a", "b", "c?x=1"):
        _settings(session, "http://127.0.0.1:8080/" + path)
    assert len(scans) == 1
    _settings(session, "http://127.0.0.1:9090/a")  # another origin
    assert len(scans) == 2
    clean_env.setenv("SOME_UNRELATED_VARIABLE", "1")  # any change: looked at again
    _settings(session, "http://127.0.0.1:8080/a")
    assert len(scans) == 3
    _settings(session, "http://127.0.0.1:8080/a", stream=True)  # stream is part of the answer
    assert len(scans) == 4


def test_explicit_per_request_settings_are_never_answered_from_memory(
    clean_env: pytest.MonkeyPatch,
) -> None:
    session = _pool.pooled_session()
    url = URLS[0]
    _settings(session, url)
    given = {"http": "http://given.invalid:1"}
    assert session.merge_environment_settings(url, given, False, None, None)["proxies"] == given
    assert session.merge_environment_settings(url, {}, False, False, None)["verify"] is False
    assert session.merge_environment_settings(url, {}, False, None, "/c.pem")["cert"] == "/c.pem"


def test_each_answer_is_a_fresh_dict(clean_env: pytest.MonkeyPatch) -> None:
    session = _pool.pooled_session()
    first = _settings(session, URLS[0])
    first["proxies"]["http"] = "http://mutated.invalid:1"
    first["verify"] = "/mutated.pem"
    second = _settings(session, URLS[0])
    assert second["proxies"] == {} and second["verify"] is True


def test_the_memory_is_bounded(clean_env: pytest.MonkeyPatch) -> None:
    session = _pool.pooled_session()
    for port in range(1, 200):
        _settings(session, f"http://127.0.0.1:{port}/")
    cache = session._env_cache  # type: ignore[attr-defined]
    assert cache is not None and 0 < len(cache) <= _environment._ENV_CACHE_SIZE


def test_only_where_proxies_come_from_the_environment_alone() -> None:
    import urllib.request

    expected = sys.platform != "darwin" and os.name != "nt"
    assert _environment._ENV_ONLY_PROXIES is (
        expected and urllib.request.getproxies is urllib.request.getproxies_environment
    )


def test_a_change_made_and_undone_while_an_answer_is_computed_lasts_a_second_at_most(
    clean_env: pytest.MonkeyPatch,
) -> None:
    # Another thread's request with proxies={"no_proxy": ...} sets no_proxy and puts it back
    # (requests.utils.set_environ); here it happens exactly while this session computes.
    clean_env.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    url = "http://api.example.invalid/x"
    real = requests.sessions.get_environ_proxies

    def meanwhile(url: str, no_proxy: str | None = None) -> Any:
        with requests.utils.set_environ("no_proxy", "api.example.invalid"):
            return real(url, no_proxy=no_proxy)

    now = [1000.0]
    clean_env.setattr(_environment, "_clock", lambda: now[0])
    session = _pool.pooled_session()
    clean_env.setattr(requests.sessions, "get_environ_proxies", meanwhile)
    _settings(session, url)
    clean_env.setattr(requests.sessions, "get_environ_proxies", real)  # as it was
    expected = _reference(session, url)
    assert expected["proxies"] == {"http": "http://proxy.invalid:3128"}
    now[0] += _environment._ENV_CACHE_SECONDS
    assert _settings(session, url) == expected


def test_functions_that_read_the_environment_replaced_later_are_used(
    clean_env: pytest.MonkeyPatch,
) -> None:
    session = _pool.pooled_session()
    url = URLS[0]
    assert _settings(session, url)["proxies"] == {}
    clean_env.setattr(
        requests.sessions, "get_environ_proxies", lambda url, no_proxy=None: {"http": "http://x:1"}
    )
    assert _settings(session, url)["proxies"] == {"http": "http://x:1"}
    clean_env.setattr(requests.utils, "proxy_bypass", lambda host: True)
    assert _settings(session, url) == _reference(session, url)


def test_a_replaced_os_environ_is_read_as_requests_reads_it(clean_env: pytest.MonkeyPatch) -> None:
    session = _pool.pooled_session()
    url = URLS[1]
    assert _settings(session, url)["proxies"] == {}
    clean_env.setattr(os, "environ", {"HTTPS_PROXY": "http://replaced.invalid:1"})
    assert _settings(session, url) == _reference(session, url)
    assert _settings(session, url)["proxies"]["https"] == "http://replaced.invalid:1"


def test_the_answer_has_requests_types_and_none_differs_from_empty(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    session = _pool.pooled_session()
    url = URLS[0]
    # requests 2.34 leaves the environment out for None; before 2.34, None raised.
    for proxies in (None, {}, None):
        for stream in (0, False, 1, True, None):
            try:
                expected = requests.Session.merge_environment_settings(
                    session, url, None if proxies is None else {}, stream, None, None
                )
            except AttributeError:
                with pytest.raises(AttributeError):
                    session.merge_environment_settings(url, proxies, stream, None, None)
                continue
            got = session.merge_environment_settings(url, proxies, stream, None, None)
            assert got == expected
            assert type(got["stream"]) is type(expected["stream"])
            assert type(got["proxies"]) is type(expected["proxies"])


def test_a_session_without_a_proxies_dict_gets_what_requests_gives(
    clean_env: pytest.MonkeyPatch,
) -> None:
    session = _pool.pooled_session()
    session.proxies = None  # type: ignore[assignment]
    assert _settings(session, URLS[0]) == _reference(session, URLS[0])
