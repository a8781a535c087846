"""Replaying one corpus scenario against a running AgentCube, as ``corpus/README.md`` says.

Each step is sent with ``http.client`` (one HTTP/1.1 request per connection, the path
appended verbatim, no redirect followed) and compared under the corpus's match rules. The
result is a list of mismatch descriptions; empty means the scenario passed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CORPUS = Path(__file__).parent / "corpus"
NAMESPACE = "default"
NAME = "my-interpreter"
UNKNOWN_SESSION = "00000000-0000-4000-8000-000000000000"
BOUNDARY = "agentcube-corpus-7d41c2e9"
SESSION_HEADER = "x-agentcube-session-id"
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


def load_scenarios() -> list[dict[str, Any]]:
    """Every scenario of the corpus, sorted by id."""
    scenarios = [json.loads(path.read_text()) for path in sorted(CORPUS.glob("*.json"))]
    return sorted(scenarios, key=lambda s: s["id"])


@dataclass
class Target:
    """Where to replay: the WorkloadManager and Router URLs, and a bearer token if any."""

    workload_manager_url: str
    router_url: str
    token: str | None = None


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    wire: bytes
    elapsed: float
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    return connection, f"{parts.hostname}:{parts.port}"


def _control(target: Target, method: str, path: str, body: bytes | None) -> tuple[int, Any]:
    connection, host = _connection(target.workload_manager_url, 60)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host)
        if target.token:
            connection.putheader("Authorization", f"Bearer {target.token}")
        if body is not None:
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        connection.close()


def create_session(target: Target) -> str:
    body = json.dumps({"name": NAME, "namespace": NAMESPACE}).encode()
    status, answer = _control(target, "POST", "/v1/code-interpreter", body)
    if status != 200:
        raise RuntimeError(f"creating a session answered {status}: {answer}")
    return str(answer["sessionId"])


def delete_session(target: Target, session_id: str) -> None:
    _control(target, "DELETE", f"/v1/code-interpreter/sessions/{session_id}", None)


# -- requests -------------------------------------------------------------------------------------


def _generated(spec: dict[str, Any]) -> bytes:
    prefix = spec.get("prefix", "").encode()
    suffix = spec.get("suffix", "").encode()
    fill = spec["fill"].encode()
    return prefix + fill * (spec["size"] - len(prefix) - len(suffix)) + suffix


def _multipart(spec: dict[str, Any]) -> bytes:
    parts: list[bytes] = []
    for name, value in spec.get("fields", {}).items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + str(value).encode()
            + b"\r\n"
        )
    if "file_b64" in spec or "generate" in spec:
        if "generate" in spec:
            data = spec["generate"]["byte"].encode() * spec["generate"]["size"]
        else:
            data = base64.b64decode(spec["file_b64"])
        field_name = spec.get("file_field", "file")
        file_name = spec.get("file_name", "upload.bin")
        parts.append(
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field_name}"; '
                f'filename="{file_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


def _url(step: dict[str, Any], session: str) -> str:
    request = step["request"]
    if session == "own-wrong-name":
        base = "/v1/namespaces/other-ns/code-interpreters/other-name/invocations"
    elif session == "own-as-agent-runtime":
        base = f"/v1/namespaces/{NAMESPACE}/agent-runtimes/{NAME}/invocations"
    else:
        base = f"/v1/namespaces/{NAMESPACE}/code-interpreters/{NAME}/invocations"
    if not request.get("no_trailing_slash"):
        base += "/"
    return base + request.get("path", "")


def send(target: Target, step: dict[str, Any], session_id: str) -> Answer:
    """Send one step's request; the answer with its raw (still encoded) body."""
    request = step["request"]
    method = request.get("method", "GET")
    session = request.get("session", "own")
    headers: dict[str, str | None] = {"Accept-Encoding": "identity"}
    body: bytes | None = None
    if "json" in request:
        body = json.dumps(request["json"], separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
    elif "multipart" in request:
        body = _multipart(request["multipart"])
        headers["Content-Type"] = f"multipart/form-data; boundary={BOUNDARY}"
    elif "body_b64" in request:
        body = base64.b64decode(request["body_b64"])
    elif "body_generate" in request:
        body = _generated(request["body_generate"])
    for name, value in request.get("headers", {}).items():
        for existing in [k for k in headers if k.lower() == name.lower()]:
            del headers[existing]
        headers[name] = value
    connection, host = _connection(target.router_url, float(request.get("timeout_s", 60)))
    started = time.monotonic()
    try:
        connection.putrequest(
            method, _url(step, session), skip_host=True, skip_accept_encoding=True
        )
        connection.putheader("Host", host)
        connection.putheader(
            SESSION_HEADER, UNKNOWN_SESSION if session == "unknown" else session_id
        )
        if target.token:
            connection.putheader("Authorization", f"Bearer {target.token}")
        for name, value in headers.items():
            if value is not None:
                connection.putheader(name, value)
        slow = request.get("slow_body")
        if slow is not None:
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            sock = connection.sock
            assert sock is not None
            for part in slow["parts"]:
                time.sleep(part.get("delay_s", 0))
                data = part["text"].encode() if "text" in part else base64.b64decode(part["b64"])
                sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            if slow.get("finish", True):
                sock.sendall(b"0\r\n\r\n")
        else:
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders()
            if body is not None:
                try:
                    connection.sock.sendall(body)  # type: ignore[union-attr]
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server answered early; read what it said
        response = connection.getresponse()
        wire = response.read()
        elapsed = time.monotonic() - started
        names = {name.lower() for name, _ in response.getheaders()}
        answer_headers = {name: response.getheader(name) or "" for name in names}
        return Answer(response.status, answer_headers, wire, elapsed)
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        return Answer(0, {}, b"", time.monotonic() - started, error=repr(exc))
    finally:
        connection.close()


# -- comparison -----------------------------------------------------------------------------------


def _decoded(answer: Answer) -> bytes:
    encoding = answer.headers.get("content-encoding", "").lower()
    if encoding == "gzip":
        return gzip.decompress(answer.wire) if answer.wire else b""
    return answer.wire


def _rule_for(rules: dict[str, str], path: str) -> str | None:
    if path in rules:
        return rules[path]
    wildcard = re.sub(r"\[\d+\]", "[*]", path)
    return rules.get(wildcard)


def _check_rule(rule: str, actual: Any, path: str, problems: list[str]) -> None:
    kind, _, argument = rule.partition(":")
    ok = True
    if kind == "any":
        return
    if kind == "number":
        ok = isinstance(actual, (int, float)) and not isinstance(actual, bool)
    elif kind == "integer":
        ok = isinstance(actual, int) and not isinstance(actual, bool)
    elif kind == "string":
        ok = isinstance(actual, str)
    elif kind == "rfc3339":
        ok = isinstance(actual, str) and RFC3339.fullmatch(actual) is not None
    elif kind == "regex":
        ok = isinstance(actual, str) and re.fullmatch(argument, actual, re.DOTALL) is not None
    elif kind == "sha256":
        ok = isinstance(actual, str) and hashlib.sha256(actual.encode()).hexdigest() == argument
    else:
        problems.append(f"{path}: unknown match rule {rule!r}")
        return
    if not ok:
        shown = actual if not isinstance(actual, str) or len(actual) < 300 else actual[:300] + "..."
        problems.append(f"{path}: {shown!r} does not satisfy {rule!r}")


def compare_value(
    expected: Any, actual: Any, rules: dict[str, str], path: str, problems: list[str]
) -> None:
    rule = _rule_for(rules, path)
    if rule is not None and rule != "exact":
        _check_rule(rule, actual, path, problems)
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            problems.append(f"{path}: expected an object, got {actual!r}")
            return
        if set(expected) != set(actual):
            problems.append(f"{path}: keys {sorted(actual)} != expected {sorted(expected)}")
            return
        for key in expected:
            compare_value(expected[key], actual[key], rules, f"{path}.{key}", problems)
        return
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            problems.append(f"{path}: expected {expected!r}, got {actual!r}")
            return
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            compare_value(want, got, rules, f"{path}[{index}]", problems)
        return
    if type(expected) is not type(actual) and not (
        isinstance(expected, (int, float))
        and isinstance(actual, (int, float))
        and not isinstance(expected, bool)
        and not isinstance(actual, bool)
    ):
        problems.append(f"{path}: expected {expected!r}, got {actual!r}")
    elif expected != actual:
        problems.append(f"{path}: expected {expected!r}, got {actual!r}")


def compare(step: dict[str, Any], answer: Answer) -> list[str]:
    """Every way ``answer`` differs from the step's recorded response."""
    expected = step["response"]
    problems: list[str] = []
    if answer.error is not None:
        return [f"request failed: {answer.error}"]
    allowed = expected["status"] if isinstance(expected["status"], list) else [expected["status"]]
    if answer.status not in allowed:
        problems.append(f"status {answer.status}, expected {expected['status']}")
    for name, want in expected.get("headers", {}).items():
        got = answer.headers.get(name.lower())
        if want == "<present>":
            if got is None:
                problems.append(f"header {name}: absent, expected present")
        elif want == "<absent>":
            if got is not None:
                problems.append(f"header {name}: {got!r}, expected absent")
        elif want == "<wire-length>":
            if got != str(len(answer.wire)):
                problems.append(
                    f"header {name}: {got!r}, expected the wire length {len(answer.wire)}"
                )
        elif isinstance(want, str) and want.startswith("regex:"):
            if got is None or re.fullmatch(want[len("regex:") :], got) is None:
                problems.append(f"header {name}: {got!r} does not match {want!r}")
        elif got != want:
            problems.append(f"header {name}: {got!r}, expected {want!r}")
    try:
        data = _decoded(answer)
    except (OSError, EOFError, ValueError) as exc:
        return [*problems, f"body: cannot undo Content-Encoding: {exc!r}"]
    rules: dict[str, str] = expected.get("match", {})
    body = expected.get("body", {})
    if "json" in body:
        try:
            actual = json.loads(data)
        except ValueError:
            problems.append(f"body: not JSON: {data[:300]!r}")
        else:
            compare_value(body["json"], actual, rules, "$", problems)
    elif "text" in body:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"body: not UTF-8: {data[:300]!r}")
        else:
            compare_value(body["text"], text, rules, "$", problems)
    elif "gzip_of_text" in body:
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            problems.append(f"body: not a gzip stream ({exc!r}): {data[:300]!r}")
        else:
            if inner != body["gzip_of_text"].encode("utf-8"):
                problems.append(
                    f"body: a gzip stream of {inner[:300]!r}, "
                    f"expected one of {body['gzip_of_text']!r}"
                )
    elif "bytes_b64" in body:
        if data != base64.b64decode(body["bytes_b64"]):
            problems.append(f"body: {len(data)} bytes differ from the recorded ones")
    elif body.get("empty"):
        if data:
            problems.append(f"body: expected empty, got {data[:300]!r}")
    elif "sha256" in body:
        if len(data) != body["length"] or hashlib.sha256(data).hexdigest() != body["sha256"]:
            problems.append(f"body: {len(data)} bytes, sha256 differs")
    if "elapsed_s" in expected:
        low, high = expected["elapsed_s"]
        if not low <= answer.elapsed <= high:
            problems.append(f"elapsed {answer.elapsed:.2f}s outside [{low}, {high}]")
    return problems


def replay(target: Target, scenario: dict[str, Any]) -> list[str]:
    """Run one scenario in a fresh session; its mismatches, step by step."""
    problems: list[str] = []
    session_id = create_session(target)
    try:
        for index, step in enumerate(scenario["steps"]):
            answer = send(target, step, session_id)
            for problem in compare(step, answer):
                request = step["request"]
                problems.append(
                    f"step {index} ({request.get('method', 'GET')} {request.get('path', '')!r}): "
                    f"{problem}"
                )
    finally:
        delete_session(target, session_id)
    return problems
