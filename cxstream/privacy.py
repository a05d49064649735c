"""Pseudonyms for personal data: a keyed HMAC, so the same value always maps to the same short
token while nobody without ``settings.privacy.pseudonym_key`` can recompute or reverse it.

Every sink stores PII-marked fields (``"pii": "<class>"`` in the Avro schemas) through
:func:`pseudonymise` unless ``settings.privacy.store_pii_in_clear`` is set, so tokens agree across
ClickHouse, Redis and exports and can still be joined, counted and grouped.

>>> from cxstream.settings import Settings
>>> settings = Settings()
>>> token = pseudonymise("Alice@Example.com ", settings, pii_class="email")
>>> len(token), token == pseudonymise("alice@example.com", settings, pii_class="email")
(16, True)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from functools import lru_cache

from cxstream.settings import Settings

#: pseudonym length in characters (base32 of 80 bits: collisions stay negligible at 10^9 values)
PSEUDONYM_LENGTH = 16
_DIGEST_BYTES = 10
#: values remembered per key; PII repeats a lot (the same customer's e-mail, IP, account)
_CACHE_SIZE = 1 << 16


def normalise(value: str, pii_class: str = "") -> str:
    """The canonical spelling of a value, so trivially different spellings share a pseudonym."""
    value = value.strip()
    if pii_class == "email":
        return value.casefold()
    if pii_class == "phone":
        return "".join(ch for ch in value if ch.isdigit() or ch == "+")
    if pii_class in {"national_id", "account"}:
        return value.replace(" ", "").upper()
    return value


@lru_cache(maxsize=8)
def _pseudonymiser(key: bytes) -> Callable[[str], str]:
    # one keyed HMAC state per key, copied per value: skips re-deriving the padded key each time
    base = hmac.new(key, digestmod=hashlib.sha256)

    @lru_cache(maxsize=_CACHE_SIZE)
    def apply(value: str) -> str:
        mac = base.copy()
        mac.update(value.encode("utf-8"))
        return base64.b32encode(mac.digest()[:_DIGEST_BYTES]).decode("ascii").lower()

    return apply


def pseudonymiser(settings: Settings) -> Callable[[str, str], str]:
    """A fast ``(value, pii_class) -> pseudonym`` function bound to the settings' key."""
    apply = _pseudonymiser(settings.privacy.pseudonym_key.get_secret_value().encode("utf-8"))

    def pseudonymise_value(value: str, pii_class: str = "") -> str:
        return apply(normalise(value, pii_class))

    return pseudonymise_value


def pseudonymise(value: str, settings: Settings, *, pii_class: str = "") -> str:
    """Stable short pseudonym of ``value`` (16 lowercase base32 characters).

    ``pii_class`` (``email``, ``phone``, ...) only selects the normalisation; the same normalised
    value gets the same pseudonym whatever field it comes from, so an e-mail address given in a
    feedback form and at registration can still be matched.
    """
    return pseudonymiser(settings)(value, pii_class)
