"""Field-level authenticated encryption (AES-GCM) for PII an authorised reader needs back.

Pseudonyms (:mod:`cxstream.privacy`) are for joins and counts; when a value itself must be
recoverable (a contact e-mail for a callback, a phone number for the hotline) it is stored as a
ciphertext token made here. A token is ASCII, so it fits Avro strings, ClickHouse ``String``
columns and Redis hashes::

    cxe1.<key id>.<base64url(nonce[12] || ciphertext || tag[16])>

- **Keyring** from ``settings.privacy.encryption_keys`` (key id -> base64 AES-128/192/256 key)
  and ``settings.privacy.encryption_active_key``: new tokens use the active key; any listed key
  decrypts, so keys rotate by adding a new one, making it active, re-encrypting stored tokens
  with :meth:`FieldCipher.rotate` and only then removing the old key.
- **AAD** binds a token to its place: ``cxe1|<event type>|<field>|<key id>``. A token copied
  into another field or event type, or with its key id edited, fails authentication instead of
  decrypting to a value in the wrong place.
- A fresh random 96-bit nonce per token (``os.urandom``): at most 2^32 tokens per key keep the
  nonce-collision risk below NIST's bound, far beyond what one key should protect before it
  rotates.

>>> import base64
>>> from cxstream.settings import PrivacySettings, Settings
>>> key = base64.b64encode(bytes(32)).decode()
>>> settings = Settings(privacy=PrivacySettings(encryption_keys={"k1": key},
...                                             encryption_active_key="k1"))
>>> cipher = FieldCipher.from_settings(settings)
>>> token = cipher.encrypt("alice@example.com", event_type="customer_registered", field="email")
>>> token.startswith("cxe1.k1."), cipher.decrypt(token, event_type="customer_registered",
...                                               field="email")
(True, 'alice@example.com')
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cxstream.errors import ConfigurationError, CxStreamError
from cxstream.settings import Settings

TOKEN_VERSION = "cxe1"
NONCE_BYTES = 12
TAG_BYTES = 16
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_KEY_SIZES = frozenset({16, 24, 32})


class DecryptionError(CxStreamError):
    """A token is malformed, made with an unknown key, or fails authentication."""


def generate_key() -> str:
    """A new random AES-256 key, base64 encoded (the format ``encryption_keys`` takes)."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def is_token(value: object) -> bool:
    """Whether ``value`` looks like a token of this module (cheap check, no decryption)."""
    return isinstance(value, str) and value.startswith(TOKEN_VERSION + ".")


def _decode_key(key_id: str, encoded: str) -> bytes:
    if not _KEY_ID.match(key_id):
        raise ConfigurationError(
            f"privacy.encryption_keys: key id {key_id!r} must match [A-Za-z0-9_-]{{1,32}}"
        )
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(
            f"privacy.encryption_keys[{key_id!r}] is not valid base64"
        ) from exc
    if len(raw) not in _KEY_SIZES:
        raise ConfigurationError(
            f"privacy.encryption_keys[{key_id!r}] is {len(raw)} bytes; AES-GCM keys are 16, 24 "
            "or 32 bytes (generate one with cxstream.crypto.generate_key())"
        )
    return raw


def _aad(event_type: str, field: str, key_id: str) -> bytes:
    return f"{TOKEN_VERSION}|{event_type}|{field}|{key_id}".encode()


@dataclass(frozen=True)
class TokenParts:
    key_id: str
    nonce: bytes
    ciphertext: bytes


def parse_token(token: str) -> TokenParts:
    """Split a token into key id, nonce and ciphertext (raises :class:`DecryptionError`)."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != TOKEN_VERSION or not _KEY_ID.match(parts[1]):
        raise DecryptionError(f"not a {TOKEN_VERSION} token (expected {TOKEN_VERSION}.<kid>.<b64>)")
    body = parts[2]
    try:
        blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise DecryptionError(f"token of key {parts[1]!r}: body is not base64url") from exc
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError(f"token of key {parts[1]!r}: body too short ({len(blob)} bytes)")
    return TokenParts(parts[1], blob[:NONCE_BYTES], blob[NONCE_BYTES:])


class FieldCipher:
    """Encrypts and decrypts field values with a keyring; thread-safe (AESGCM is stateless)."""

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if not keys:
            raise ConfigurationError(
                "privacy.encryption_keys is empty; field encryption needs at least one key "
                '(CX_PRIVACY__ENCRYPTION_KEYS=\'{"k1": "<base64 key>"}\')'
            )
        if active_key_id not in keys:
            raise ConfigurationError(
                f"privacy.encryption_active_key={active_key_id!r} is not one of "
                f"privacy.encryption_keys ({', '.join(sorted(keys))})"
            )
        self.active_key_id = active_key_id
        self._aeads = {key_id: AESGCM(key) for key_id, key in keys.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldCipher:
        privacy = settings.privacy
        keys = {
            key_id: _decode_key(key_id, secret.get_secret_value())
            for key_id, secret in privacy.encryption_keys.items()
        }
        active = privacy.encryption_active_key
        if active is None and keys:
            if len(keys) != 1:
                raise ConfigurationError(
                    "privacy.encryption_active_key is not set and privacy.encryption_keys holds "
                    f"{len(keys)} keys; name the one new ciphertexts use"
                )
            (active,) = keys
        return cls(keys, active or "")

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._aeads)

    def encrypt_bytes(self, value: bytes, *, event_type: str, field: str) -> str:
        key_id = self.active_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aeads[key_id].encrypt(nonce, value, _aad(event_type, field, key_id))
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{TOKEN_VERSION}.{key_id}.{body}"

    def encrypt(self, value: str, *, event_type: str, field: str) -> str:
        """Token of ``value`` under the active key, bound to ``event_type`` and ``field``."""
        return self.encrypt_bytes(value.encode("utf-8"), event_type=event_type, field=field)

    def decrypt_bytes(self, token: str, *, event_type: str, field: str) -> bytes:
        parts = parse_token(token)
        aead = self._aeads.get(parts.key_id)
        where = f"{event_type}.{field}"
        if aead is None:
            raise DecryptionError(
                f"{where}: token made with key {parts.key_id!r}, which is not in "
                f"privacy.encryption_keys ({', '.join(self.key_ids)})"
            )
        try:
            return aead.decrypt(
                parts.nonce, parts.ciphertext, _aad(event_type, field, parts.key_id)
            )
        except InvalidTag as exc:
            raise DecryptionError(
                f"{where}: token of key {parts.key_id!r} fails authentication (tampered, or "
                "made for another field or event type)"
            ) from exc

    def decrypt(self, token: str, *, event_type: str, field: str) -> str:
        """The value of a token; raises :class:`DecryptionError` for any bad token."""
        raw = self.decrypt_bytes(token, event_type=event_type, field=field)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecryptionError(f"{event_type}.{field}: plaintext is not UTF-8") from exc

    def needs_rotation(self, token: str) -> bool:
        """Whether ``token`` was made with a key other than the active one."""
        return parse_token(token).key_id != self.active_key_id

    def rotate(self, token: str, *, event_type: str, field: str) -> str:
        """``token`` re-encrypted under the active key (unchanged if it already uses it).

        Idempotent, so a rotation job that crashes half-way can simply run again.
        """
        if not self.needs_rotation(token):
            return token
        value = self.decrypt_bytes(token, event_type=event_type, field=field)
        return self.encrypt_bytes(value, event_type=event_type, field=field)
