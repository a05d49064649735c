from __future__ import annotations

import base64
import hashlib
import hmac

from pydantic import SecretStr

from cxstream.privacy import PSEUDONYM_LENGTH, normalise, pseudonymise, pseudonymiser
from cxstream.settings import PrivacySettings, Settings


def _settings(key: str) -> Settings:
    return Settings(privacy=PrivacySettings(pseudonym_key=SecretStr(key)))


def test_pseudonym_is_the_truncated_keyed_hmac_of_the_value() -> None:
    # recomputed here with the standard library, independently of the module's caching
    digest = hmac.new(b"k1", b"13800138000", hashlib.sha256).digest()
    expected = base64.b32encode(digest[:10]).decode().lower()
    assert pseudonymise("13800138000", _settings("k1")) == expected
    assert len(expected) == PSEUDONYM_LENGTH


def test_pseudonym_is_stable_and_depends_on_the_key() -> None:
    a, b = _settings("key-a"), _settings("key-b")
    assert pseudonymise("alice", a) == pseudonymise("alice", a)
    assert pseudonymise("alice", a) != pseudonymise("alice", b)
    assert pseudonymise("alice", a) != pseudonymise("alicf", a)


def test_normalisation_makes_spellings_of_one_value_agree() -> None:
    settings = _settings("k")
    assert pseudonymise(" Alice@Example.COM", settings, pii_class="email") == pseudonymise(
        "alice@example.com", settings, pii_class="email"
    )
    assert normalise("+86 (138) 0013-8000", "phone") == "+8613800138000"
    assert normalise("ab 12 cd", "account") == "AB12CD"
    # without a class nothing but surrounding blanks is changed
    assert pseudonymise("Alice", settings) != pseudonymise("alice", settings)


def test_bound_pseudonymiser_matches_the_function() -> None:
    settings = _settings("k")
    bound = pseudonymiser(settings)
    values = [f"user{i}@example.com" for i in range(2000)]
    assert [bound(v, "email") for v in values] == [
        pseudonymise(v, settings, pii_class="email") for v in values
    ]
    assert len({bound(v, "email") for v in values}) == len(values)
