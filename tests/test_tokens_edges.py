"""Bearer tokens: random, URL-safe, 256 bits; stored as their SHA-256; compared in constant time."""

from __future__ import annotations

import base64
import hashlib

from app.security.tokens import TOKEN_BYTES, digests_match, new_token, token_digest


def test_a_new_token_is_url_safe_random_and_carries_token_bytes_of_entropy() -> None:
    token = new_token()
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) == TOKEN_BYTES == 32
    assert new_token() != token


def test_the_digest_is_the_hex_sha256_of_the_token_even_with_a_lone_surrogate() -> None:
    assert token_digest("abc") == hashlib.sha256(b"abc").hexdigest()
    assert (
        token_digest("\ud800")
        == hashlib.sha256("\ud800".encode("utf-8", "surrogatepass")).hexdigest()
    )


def test_digests_match_only_when_equal() -> None:
    assert digests_match(token_digest("a"), token_digest("a")) is True
    assert digests_match(token_digest("a"), token_digest("b")) is False
