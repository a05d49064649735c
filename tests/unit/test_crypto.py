"""Field-level AES-GCM encryption: round trip, binding to the field, rotation, keyring errors."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cxstream.crypto import (
    NONCE_BYTES,
    DecryptionError,
    FieldCipher,
    generate_key,
    is_token,
    parse_token,
)
from cxstream.errors import ConfigurationError
from cxstream.settings import PrivacySettings, Settings

K1 = generate_key()
K2 = generate_key()
WHERE = {"event_type": "customer_registered", "field": "email"}


def cipher_for(keys: dict[str, str], active: str | None) -> FieldCipher:
    privacy = PrivacySettings(encryption_keys=keys, encryption_active_key=active)
    return FieldCipher.from_settings(Settings(privacy=privacy))


def test_round_trip_and_token_shape() -> None:
    cipher = cipher_for({"k1": K1}, "k1")
    value = "Zoë.Müller+cx@example.com"
    token = cipher.encrypt(value, **WHERE)
    assert is_token(token)
    assert token.startswith("cxe1.k1.")
    assert value not in token
    assert cipher.decrypt(token, **WHERE) == value


def test_fresh_nonce_per_token() -> None:
    cipher = cipher_for({"k1": K1}, "k1")
    tokens = {cipher.encrypt("same value", **WHERE) for _ in range(50)}
    assert len(tokens) == 50
    assert len({parse_token(t).nonce for t in tokens}) == 50


def test_token_is_standard_aes_gcm_with_the_documented_aad() -> None:
    # an authorised reader outside cxstream can decrypt with the spec in the module docstring
    cipher = cipher_for({"k1": K1}, "k1")
    parts = parse_token(cipher.encrypt("+86 138 0000 0000", event_type="feedback", field="phone"))
    aead = AESGCM(base64.b64decode(K1))
    plain = aead.decrypt(parts.nonce, parts.ciphertext, b"cxe1|feedback|phone|k1")
    assert plain.decode() == "+86 138 0000 0000"
    assert len(parts.nonce) == NONCE_BYTES


@pytest.mark.parametrize(
    "where",
    [
        {"event_type": "customer_registered", "field": "phone"},
        {"event_type": "feedback_submitted", "field": "email"},
    ],
)
def test_token_moved_to_another_field_or_event_fails(where: dict[str, str]) -> None:
    cipher = cipher_for({"k1": K1}, "k1")
    token = cipher.encrypt("alice@example.com", **WHERE)
    with pytest.raises(DecryptionError, match="fails authentication"):
        cipher.decrypt(token, **where)


def test_tampered_body_or_key_id_fails() -> None:
    cipher = cipher_for({"k1": K1, "k2": K2}, "k1")
    token = cipher.encrypt("alice@example.com", **WHERE)
    prefix, kid, body = token.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(DecryptionError, match="fails authentication"):
        cipher.decrypt(f"{prefix}.{kid}.{flipped}", **WHERE)
    # a token relabelled with another listed key id fails too (key id is in the AAD)
    with pytest.raises(DecryptionError, match="fails authentication"):
        cipher.decrypt(f"{prefix}.k2.{body}", **WHERE)


@pytest.mark.parametrize("token", ["", "plain text", "cxe1.k1", "cxe1.k1.!!!!", "cxe1.k1.AAAA"])
def test_malformed_tokens_raise_decryption_error(token: str) -> None:
    with pytest.raises(DecryptionError):
        cipher_for({"k1": K1}, "k1").decrypt(token, **WHERE)


def test_rotation_reencrypts_under_the_active_key_and_old_keys_still_decrypt() -> None:
    old = cipher_for({"k1": K1}, "k1")
    token = old.encrypt("alice@example.com", **WHERE)
    both = cipher_for({"k2": K2, "k1": K1}, "k2")
    assert both.decrypt(token, **WHERE) == "alice@example.com"
    assert both.needs_rotation(token)
    rotated = both.rotate(token, **WHERE)
    assert parse_token(rotated).key_id == "k2"
    assert not both.needs_rotation(rotated)
    assert both.rotate(rotated, **WHERE) == rotated  # idempotent
    # once k1 is removed, the rotated token still decrypts and the old one does not
    new_only = cipher_for({"k2": K2}, "k2")
    assert new_only.decrypt(rotated, **WHERE) == "alice@example.com"
    with pytest.raises(DecryptionError, match=r"not in privacy\.encryption_keys"):
        new_only.decrypt(token, **WHERE)


def test_single_key_is_active_without_naming_it() -> None:
    assert cipher_for({"only": K1}, None).active_key_id == "only"


@pytest.mark.parametrize(
    ("keys", "active", "message"),
    [
        ({}, None, "is empty"),
        ({"k1": K1, "k2": K2}, None, "name the one"),
        ({"k1": K1}, "k9", "is not one of"),
        ({"k1": "not base64 !"}, "k1", "not valid base64"),
        ({"k1": base64.b64encode(b"short").decode()}, "k1", "5 bytes"),
        ({"bad id": K1}, "bad id", "must match"),
    ],
)
def test_keyring_errors_name_the_setting(
    keys: dict[str, str], active: str | None, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        cipher_for(keys, active)


def test_keys_are_hidden_when_settings_are_printed() -> None:
    privacy = PrivacySettings(encryption_keys={"k1": K1}, encryption_active_key="k1")
    assert K1 not in repr(privacy)
    assert K1 not in str(Settings(privacy=privacy))
