"""Identifiers drawn from the seeded RNG, so that a seed reproduces every id byte for byte."""

from __future__ import annotations

import random

# Version 4 and RFC 4122 variant bits, applied exactly as ``uuid.UUID(int=..., version=4)`` does.
_CLEAR = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_SET = (0x8000 << 48) | (4 << 76)


def uuid4_from(rng: random.Random) -> str:
    """A version-4 UUID string from 128 bits of ``rng``.

    Same text as ``str(uuid.UUID(int=rng.getrandbits(128), version=4))`` at a third of the cost
    (no UUID object is built), which matters at 100k+ events per second.
    """
    h = "%032x" % ((rng.getrandbits(128) & _CLEAR) | _SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hex_id(rng: random.Random, prefix: str, bits: int = 64) -> str:
    """A short opaque id such as ``fb-3f9a...`` (feedback, sessions, transactions)."""
    return f"{prefix}{rng.getrandbits(bits):0{bits // 4}x}"
