"""API keys per frontend: the key a request presents names the frontend that sent it."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from pydantic import SecretStr

from cxstream.errors import ConfigurationError

HEADER = "X-API-Key"


class ApiKeys:
    """Looks up the frontend of a presented key in constant time per configured key."""

    def __init__(self, keys: Mapping[str, SecretStr]) -> None:
        if not keys:
            raise ConfigurationError("api.keys is empty: no frontend could call the API")
        # digests of equal length, so compare_digest's time does not depend on key lengths
        self._keys = [(_digest(secret.get_secret_value()), name) for name, secret in keys.items()]
        empty = [name for name, secret in keys.items() if not secret.get_secret_value()]
        if empty:
            raise ConfigurationError(f"api.keys: frontend {empty[0]!r} has an empty key")

    def frontend(self, presented: str | None) -> str | None:
        """The frontend whose key is ``presented``, or ``None`` (missing or unknown key)."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for expected, name in self._keys:  # no early exit: every key is compared
            if hmac.compare_digest(digest, expected):
                found = name
        return found


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from ``X-API-Key`` or ``Authorization: Bearer <key>``."""
    key = headers.get(HEADER)
    if key:
        return key.strip()
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()
