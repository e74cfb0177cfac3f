"""Random tokens, stored only as hashes, and the signed cookies that carry them."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from itsdangerous import BadSignature, URLSafeSerializer


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign(secret: str, salt: str, value: str) -> str:
    return URLSafeSerializer(secret, salt=salt).dumps(value)


def unsign(secret: str, salt: str, signed: str | None) -> str | None:
    if not signed:
        return None
    try:
        value = URLSafeSerializer(secret, salt=salt).loads(signed)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


def csrf_token_for(secret: str, nonce: str) -> str:
    """Signed double-submit token: only the server can make one that matches a cookie nonce."""
    mac = hmac.new(secret.encode(), f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()
    return f"{nonce}.{mac}"


def csrf_token_valid(secret: str, nonce: str | None, submitted: str | None) -> bool:
    if not nonce or not submitted:
        return False
    return hmac.compare_digest(csrf_token_for(secret, nonce), submitted)
