"""Password hashing through passlib's API (the maintained `libpass` distribution).

Argon2id: no 72-byte truncation as with bcrypt, and memory-hard. A length cap in the
request models keeps hashing cost bounded.
"""

from __future__ import annotations

from functools import lru_cache

from passlib.context import CryptContext


@lru_cache(maxsize=1)
def _context() -> CryptContext:
    return CryptContext(schemes=["argon2"], deprecated="auto")


def hash_password(password: str) -> str:
    return _context().hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """Constant work whether or not the user exists (`password_hash` None)."""
    if password_hash is None:
        _context().dummy_verify()
        return False
    try:
        return _context().verify(password, password_hash)
    except (ValueError, TypeError):
        return False
