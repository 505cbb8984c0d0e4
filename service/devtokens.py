"""Development sign-in without an identity provider: a locally generated RSA key signs
tokens shaped like the broker's. The service trusts the key only when LY_DEV_KEY_FILE points
at it and LY_ENVIRONMENT is not "production" (a production configuration refuses it)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_KEY_FILE = ".ly/dev-key.pem"


def ensure_key(path: str | Path = DEFAULT_KEY_FILE) -> Path:
    """Create the development key unless it exists (readable by its owner only)."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    return path


def issue(path: str | Path, *, subject: str, roles: list[str], cvr: int | None = None,
          kommuner: list[int] | None = None, level: str | None = "substantial",
          name: str | None = None, ttl_seconds: int = 8 * 3600, issuer: str = "ly-dev",
          audience: str = "ly", extra: dict | None = None) -> str:
    """A signed development token with Ly's claims."""
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "nbf": now,
              "exp": now + ttl_seconds, "jti": str(uuid.uuid4()), "roles": roles}
    if cvr is not None:
        claims["cvr"] = cvr
    if kommuner:
        claims["kommunekode"] = kommuner if len(kommuner) > 1 else kommuner[0]
    if level:
        claims["loa"] = level
    if name:
        claims["name"] = name
    claims.update(extra or {})
    key = Path(path).read_bytes()
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "ly-dev"})
