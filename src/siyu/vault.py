"""Secrets at rest (channel app secrets, tokens, AES keys): Fernet under a key derived from SIYU_SECRET_KEY.

A stored secret can be used by the server and the worker but never shown again; changing
SIYU_SECRET_KEY makes the stored ones unreadable, and they must be entered again.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from siyu.config import Settings, get_settings, secret_key
from siyu.errors import SiyuError


class VaultError(SiyuError):
    """A stored secret cannot be decrypted with the current SIYU_SECRET_KEY."""

    status_code = 500


@functools.lru_cache(maxsize=4)
def _fernet(master: str) -> Fernet:
    # A derived key, so the cookie-signing secret itself never encrypts anything.
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"siyu-vault", info=b"stored secrets").derive(
        master.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal(plaintext: str, settings: Settings | None = None) -> str:
    """plaintext encrypted and authenticated, as text for a database column."""
    return _fernet(secret_key(settings or get_settings())).encrypt(plaintext.encode()).decode()


def unseal(token: str, settings: Settings | None = None) -> str:
    """The plaintext of a sealed token; VaultError when the key has changed or the token was altered."""
    try:
        return _fernet(secret_key(settings or get_settings())).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise VaultError(
            "a stored secret cannot be decrypted: SIYU_SECRET_KEY changed since it was saved; "
            "enter the channel's secrets again"
        ) from exc
