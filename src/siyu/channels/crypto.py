"""WeChat's callback security: SHA-1 signatures and the AES-256-CBC message envelope.

One implementation serves the Official Account ("safe mode") and WeCom; they differ only in the id
appended to each plaintext (the app id or the corp id). See docs/wechat.md and wechat-protocol.md §1.4.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeChat pads to 32 bytes (PKCS#7 with a 32-byte block), not AES's 16.


class CryptoError(ValueError):
    """A signature does not match, or an envelope cannot be decrypted."""


def signature(*parts: str) -> str:
    """sha1 of the parts sorted and joined, lowercase hex: how WeChat signs URLs and envelopes."""
    return hashlib.sha1("".join(sorted(parts)).encode(), usedforsecurity=False).hexdigest()


def signature_matches(given: str, *parts: str) -> bool:
    """True when given is the signature of parts (compared in constant time)."""
    return hmac.compare_digest(given.lower().encode(), signature(*parts).encode())


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte key of a 43-character EncodingAESKey; CryptoError when it is not one."""
    if len(encoding_aes_key) != 43:
        raise CryptoError(f"EncodingAESKey must be 43 characters, got {len(encoding_aes_key)}")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise CryptoError("EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise CryptoError("EncodingAESKey does not decode to 32 bytes")
    return key


class MessageCrypto:
    """Encrypts and decrypts envelopes for one account: token, EncodingAESKey and app id / corp id."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        self.token = token
        self.key = aes_key(encoding_aes_key)
        self.receive_id = receive_id

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def encrypt(self, text: str, random_prefix: bytes | None = None) -> str:
        """Base64 of AES(random 16 bytes + length + text + receive id), padded to 32 bytes."""
        prefix = random_prefix if random_prefix is not None else os.urandom(16)
        if len(prefix) != 16:
            raise CryptoError("the random prefix must be 16 bytes")
        body = text.encode()
        plain = prefix + struct.pack(">I", len(body)) + body + self.receive_id.encode()
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> str:
        """The text inside an envelope; CryptoError if it is corrupt or was made for another id."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except binascii.Error as exc:
            raise CryptoError("Encrypt is not base64") from exc
        if not data or len(data) % 16:
            raise CryptoError("Encrypt is not a whole number of AES blocks")
        decryptor = self._cipher().decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise CryptoError("bad padding: wrong EncodingAESKey?")
        plain = plain[:-pad]
        if len(plain) < 20:
            raise CryptoError("envelope too short")
        (length,) = struct.unpack(">I", plain[16:20])
        body, receive_id = plain[20 : 20 + length], plain[20 + length :]
        if len(body) != length:
            raise CryptoError("envelope length does not match its content")
        if receive_id.decode(errors="replace") != self.receive_id:
            raise CryptoError(
                f"envelope was made for {receive_id.decode(errors='replace')!r}, not this account"
            )
        try:
            return body.decode()
        except UnicodeDecodeError as exc:
            raise CryptoError("envelope content is not UTF-8") from exc

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        """The msg_signature of an encrypted payload."""
        return signature(self.token, timestamp, nonce, encrypted)

    def open(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> str:
        """Check msg_signature, then decrypt; CryptoError on either failure."""
        if not signature_matches(msg_signature, self.token, timestamp, nonce, encrypted):
            raise CryptoError("msg_signature does not match")
        return self.decrypt(encrypted)

    def seal(self, text: str, timestamp: str, nonce: str, random_prefix: bytes | None = None) -> str:
        """The XML reply envelope of text (Encrypt, MsgSignature, TimeStamp, Nonce)."""
        encrypted = self.encrypt(text, random_prefix)
        sig = self.sign(timestamp, nonce, encrypted)
        return (
            f"<xml>\n<Encrypt><![CDATA[{encrypted}]]></Encrypt>\n"
            f"<MsgSignature><![CDATA[{sig}]]></MsgSignature>\n"
            f"<TimeStamp>{timestamp}</TimeStamp>\n<Nonce><![CDATA[{nonce}]]></Nonce>\n</xml>"
        )
