"""Configuration resolution and input validation, in one place.

Every value a caller or a server gives us is checked here before it reaches a URL, a header or
a request body: URLs, session ids, Kubernetes names, timeouts, sandbox paths, argv lists,
environments, file modes, part sizes, ttl and metadata. Resolution order for URLs: the
argument, then the environment variable; there is no default URL.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from .exceptions import InvalidArgumentError, InvalidResponseError

WORKLOAD_MANAGER_URL_ENV = "WORKLOAD_MANAGER_URL"
ROUTER_URL_ENV = "ROUTER_URL"
MAX_CONNECTIONS_ENV = "AGENTCUBE_MAX_CONNECTIONS"
DEFAULT_MAX_CONNECTIONS = 100  # per host, for the async clients' pool (aiohttp's own default)
SERVICE_ACCOUNT_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105

_SESSION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,256}")
# Kubernetes DNS-1123 label (namespaces) and subdomain (object names).
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


_MISSING_URL = {
    WORKLOAD_MANAGER_URL_ENV: "Workload Manager URL must be provided via 'workload_manager_url' "
    "argument or 'WORKLOAD_MANAGER_URL' environment variable.",
    ROUTER_URL_ENV: "Router URL for Data Plane communication must be provided via 'router_url' "
    "argument or 'ROUTER_URL' environment variable.",
}


def resolve_url(value: str | None, env_var: str, arg_name: str, *, required: bool) -> str | None:
    """Return the URL from the argument, else the env var, validated and without trailing '/'.

    Raises InvalidArgumentError naming both the argument and the env var when ``required`` and
    neither is set, or when the URL is not http(s).
    """
    source = arg_name
    if not value:
        value = os.environ.get(env_var) or None
        source = env_var
    if not value:
        if required:
            raise InvalidArgumentError(_MISSING_URL[env_var])
        return None
    return validate_url(value, source)


_HOST = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\]")
# In ASCII text: a space (what str.isspace() finds there) or a control character.
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
# URLs found valid, and what validate_url returned for them: a process checks the same one
# or two URLs for every client it makes; each is checked in full once.
_VALID_URLS: dict[str, str] = {}
_VALID_URLS_MAX = 64


def validate_url(url: str, what: str) -> str:
    """Check the whole of ``url`` (an absolute http(s) URL with a valid host and port, no
    query, fragment or credentials); return it without a trailing '/'."""
    if not isinstance(url, str):
        raise InvalidArgumentError(f"{what} must be a string, not {type(url).__name__}")
    valid = _VALID_URLS.get(url)
    if valid is not None:
        return valid
    text = url.strip()
    if not text.isascii() or _SPACE_OR_CONTROL.search(text):
        raise InvalidArgumentError(f"{what} must be an ASCII URL without spaces or controls")
    try:
        parts = urlsplit(text)
        port = parts.port  # ValueError for a port out of range or not a number
    except ValueError as exc:
        raise InvalidArgumentError(f"{what} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(f"{what} must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise InvalidArgumentError(f"{what} must not have a query or fragment")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgumentError(f"{what} must not embed credentials; use auth_token or auth")
    host = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    if not _HOST.fullmatch(host) or port == 0:
        raise InvalidArgumentError(f"{what} has an invalid host or port")
    valid = text.rstrip("/")
    if len(_VALID_URLS) < _VALID_URLS_MAX:
        _VALID_URLS[url] = valid
    return valid


def is_valid_session_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and value not in (".", "..")
        and _SESSION_ID.fullmatch(value) is not None
    )


def check_session_id(value: object) -> str:
    """Validate a session id given by the caller (InvalidArgumentError, a ValueError)."""
    if not is_valid_session_id(value):
        raise InvalidArgumentError(
            f"invalid session_id {_preview(value)}: use 1 to 256 ASCII letters, digits or -_.:"
        )
    assert isinstance(value, str)
    return value


def check_server_session_id(value: object) -> str:
    """Validate a session id that came from a server (InvalidResponseError)."""
    if not is_valid_session_id(value):
        raise InvalidResponseError(f"the server returned an invalid session id {_preview(value)}")
    assert isinstance(value, str)
    return value


def check_name(value: object, what: str) -> str:
    """Validate a Kubernetes object name (DNS-1123 subdomain, at most 253 characters)."""
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise InvalidArgumentError(
            f"invalid {what} {_preview(value)}: use lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (Kubernetes naming rules)"
        )
    return value


def check_namespace(value: object) -> str:
    """Validate a Kubernetes namespace (DNS-1123 label, at most 63 characters)."""
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise InvalidArgumentError(
            f"invalid namespace {_preview(value)}: use at most 63 lowercase letters, digits and "
            "'-', starting and ending with a letter or digit (Kubernetes naming rules)"
        )
    return value


def max_connections() -> int:
    """The async pool's limit of requests in flight per host, from ``AGENTCUBE_MAX_CONNECTIONS``
    (default 100; 0 for no limit). Raises InvalidArgumentError for anything but a whole
    number >= 0."""
    text = os.environ.get(MAX_CONNECTIONS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_CONNECTIONS
    if not (text.isascii() and text.isdigit()):
        raise InvalidArgumentError(
            f"{MAX_CONNECTIONS_ENV} must be a whole number >= 0 (0: no limit), not {_preview(text)}"
        )
    return int(text)


def check_timeout(value: object, what: str) -> float | None:
    """Validate an optional timeout in seconds: None, or a positive finite number."""
    return None if value is None else check_seconds(value, what)


MAX_SECONDS = 30 * 86400.0  # a month: past it a timeout means "never", which none does


def check_seconds(value: object, what: str) -> float:
    """Validate a number of seconds: positive, finite, at most 30 days."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"{what} must be a number of seconds, not {_preview(value)}")
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        seconds = float("inf")
    if not 0 < seconds <= MAX_SECONDS:
        raise InvalidArgumentError(
            f"{what} must be a number of seconds above 0 and at most {MAX_SECONDS:.0f}, "
            f"not {_preview(value)}"
        )
    return seconds


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_ttl(ttl: object) -> None:
    """A session's ttl: None or a positive int of seconds."""
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
        raise InvalidArgumentError(f"ttl must be a positive number of seconds, not {ttl!r}")


def check_metadata(metadata: object) -> None:
    """A session's metadata: None or a mapping with string keys."""
    if metadata is not None and (
        not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata)
    ):
        raise InvalidArgumentError("metadata must be a dict with string keys")


# -- what goes into a sandbox ----------------------------------------------------------------------

DEFAULT_COMMAND_TIMEOUT = 120.0
# PicoD refuses request bodies over 32 MiB, and the Router must receive a whole request within
# 30 s: larger files go in parts of this size (8 MiB arrives in 30 s down to ~2.3 Mbit/s).
PART_SIZE = 8 * 1024 * 1024
MAX_PART_SIZE = 32 * 1024 * 1024 - 64 * 1024
MIN_PART_SIZE = 64 * 1024


def check_text(value: str, what: str) -> None:
    """Text that a URL or a JSON body can carry as is: no NUL, no lone surrogate."""
    if "\0" in value:
        raise InvalidArgumentError(f"{what} must not contain NUL")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no URL or JSON text can carry it as is
            raise InvalidArgumentError(f"{what} must be valid Unicode text") from None


def workspace_path(path: object, what: str = "remote_path", *, allow_root: bool = True) -> str:
    """A sandbox path as the sandbox resolves it: relative to the workspace, cleaned.

    An absolute path is taken relative to the workspace (as the sandbox does); ``..`` that
    stays inside is resolved here, so the path reaches the sandbox in its plain form. ``"."``
    is the workspace itself.

    Raises:
        InvalidArgumentError: not a non-empty string, NUL or invalid text, or it leaves the
            workspace (or names the workspace itself where ``allow_root`` is False).
    """
    if not isinstance(path, str) or not path:
        raise InvalidArgumentError(f"{what} must be a non-empty string")
    check_text(path, what)
    clean = posixpath.normpath(path)
    if clean.startswith("/"):
        clean = clean.lstrip("/") or "."
    if clean == ".." or clean.startswith("../"):
        raise InvalidArgumentError(f"{what} {path!r} leaves the sandbox's workspace")
    if clean == "." and not allow_root:
        raise InvalidArgumentError(f"{what} {path!r} names the workspace directory, not a file")
    return clean


def check_argv(command: object) -> list[str]:
    """A command as an argv: a non-empty list (or tuple) of strings."""
    if isinstance(command, tuple):
        command = list(command)
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise InvalidArgumentError("command must be a non-empty list of strings")
    for arg in command:
        check_text(arg, "a command argument")
    return command


def check_env(env: object) -> dict[str, str]:
    """Variables added to a command's environment: names (no ``=``, no NUL) to strings."""
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
        for k, v in env.items()
    ):
        raise InvalidArgumentError("env must map variable names to string values")
    return dict(env)


def command_timeout(timeout: object) -> float:
    """A command's timeout in seconds: None or 0 mean the default (120 s)."""
    if timeout is None or (
        isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout == 0
    ):
        return DEFAULT_COMMAND_TIMEOUT
    seconds = check_timeout(timeout, "timeout")
    assert seconds is not None
    return seconds


def check_mode(mode: object) -> int | None:
    """A file mode: None, an int, or an octal string such as "0755" or "755"."""
    if mode is None:
        return None
    if isinstance(mode, int) and not isinstance(mode, bool):
        bits = mode
    elif isinstance(mode, str) and 1 <= len(mode) <= 4 and all(c in "01234567" for c in mode):
        bits = int(mode, 8)
    else:
        raise InvalidArgumentError(f"mode must be an octal string like '0644', not {mode!r}")
    if not 0 <= bits <= 0o7777:
        raise InvalidArgumentError(f"mode {mode!r} is out of range (0 to 0o7777)")
    return bits


def check_part_size(part_size: object) -> int:
    """The size of an upload's parts: None (8 MiB) or an int from 64 KiB to 32 MiB - 64 KiB."""
    if part_size is None:
        return PART_SIZE
    if (
        isinstance(part_size, bool)
        or not isinstance(part_size, int)
        or not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE
    ):
        raise InvalidArgumentError(
            f"part_size must be an int between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes"
        )
    return part_size


def check_progress(on_progress: object) -> Callable[[int, int | None], object] | None:
    """``on_progress`` as given: None or a callable ``(done_bytes, total_bytes)``."""
    if on_progress is not None and not callable(on_progress):
        raise InvalidArgumentError("on_progress must be a callable (done_bytes, total_bytes)")
    return on_progress


DEFAULT_READ_LIMIT = 16 * 1024 * 1024


def check_max_bytes(max_bytes: object) -> int:
    """A positive byte count (``read_file``'s limit)."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise InvalidArgumentError("max_bytes must be a positive int")
    return max_bytes
