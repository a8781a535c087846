"""What a mocked ``POST api/files`` received, whichever body the SDK chose (JSON or multipart)."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json

import requests


def upload_fields(request: requests.PreparedRequest) -> dict[str, bytes]:
    """The upload's fields (``path``, ``mode``) and its content as ``file``, as bytes."""
    body = request.body
    data = body if isinstance(body, bytes) else b"".join(body)
    assert request.headers["Content-Length"] == str(len(data))
    if request.headers["Content-Type"] == "application/json":
        sent = json.loads(data)
        assert set(sent) == {"path", "mode", "content"}
        return {
            "path": sent["path"].encode(),
            "mode": sent["mode"].encode(),
            "file": base64.b64decode(sent["content"], validate=True),
        }
    raw = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode() + data
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    assert message.is_multipart()
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }
