"""Tokens, signed cookies, CSRF tokens and password hashes."""

from __future__ import annotations

from app.auth.passwords import hash_password, verify_password
from app.auth.tokens import csrf_token_for, csrf_token_valid, new_token, sign, token_hash, unsign


def test_csrf_token_is_bound_to_its_nonce_and_secret() -> None:
    token = csrf_token_for("secret", "nonce-1")
    assert csrf_token_valid("secret", "nonce-1", token)
    assert not csrf_token_valid("secret", "nonce-2", token)
    assert not csrf_token_valid("other-secret", "nonce-1", token)
    assert not csrf_token_valid("secret", "nonce-1", None)
    assert not csrf_token_valid("secret", None, token)
    assert not csrf_token_valid("secret", "nonce-1", "nonce-1.forged")


def test_signed_values_reject_tampering() -> None:
    signed = sign("k", "session", "abc")
    assert unsign("k", "session", signed) == "abc"
    assert unsign("k", "flash", signed) is None  # salts separate purposes
    assert unsign("k2", "session", signed) is None
    assert unsign("k", "session", signed[:-2] + "xx") is None
    assert unsign("k", "session", None) is None


def test_tokens_are_long_random_and_stored_hashed() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 43 for t in tokens)
    t = next(iter(tokens))
    assert token_hash(t) != t and len(token_hash(t)) == 64


def test_argon2_hashes_verify_and_reject() -> None:
    h = hash_password("correct horse battery")
    assert h.startswith("$argon2id$")
    assert verify_password("correct horse battery", h)
    assert not verify_password("wrong", h)
    assert not verify_password("anything", None)
    assert not verify_password("anything", "not-a-hash")
