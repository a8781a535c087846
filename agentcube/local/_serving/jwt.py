"""The Router's signature on forwarded requests: RS256 JWTs from a key pair made at start.

``cryptography`` (the ``local`` extra) is imported only when a signer is made.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from .._go.stdlib import gin_h, go_json

TOKEN_LIFETIME = 5 * 60
ISSUER = "agentcube-router"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Signer:
    """A 2048-bit RSA key pair; signs the Router's per-request tokens."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem: str = (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def token(self, session_id: str, now: float | None = None) -> str:
        """``generateSandboxJWT``: exp (now + 5 min), iat, iss, session_id; RS256."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = gin_h(
            exp=issued + TOKEN_LIFETIME, iat=issued, iss=ISSUER, session_id=session_id
        )
        signing_input = (
            _b64url(go_json(gin_h(alg="RS256", typ="JWT"))) + "." + _b64url(go_json(claims))
        )
        signature = self._key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return signing_input + "." + _b64url(signature)
