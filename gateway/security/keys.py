"""The gateway's own token-signing key (RS256), from a PEM file.

`GATEWAY_AUTH_SIGNING_KEY` names the file; without it the key lives in the data folder and is
made on first start. Every process and node that serves the same partners must use the same
file, or a token issued by one is refused by another.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ALGORITHM = "RS256"


class SigningKey:
    def __init__(self, private_key) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        jwk = json.loads(RSAAlgorithm.to_jwk(self.public_key))
        self.kid = thumbprint(jwk)
        self.public_jwk = {**jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def jwks(self) -> dict:
        return {"keys": [self.public_jwk]}


def thumbprint(jwk: dict) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def load_or_create(path: Path) -> SigningKey:
    """Read the PEM key at `path`, or make one there (atomically: concurrent workers agree)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".signing-key-")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
            os.close(fd)
            try:
                os.link(tmp, path)  # fails if another worker got there first: use its key
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: the gateway signs its tokens with RS256 and needs an RSA private key")
    return SigningKey(key)
