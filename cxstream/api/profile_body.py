"""The JSON body of a mirrored profile, built from the Redis hash without decoding its values.

The mirror (:func:`processors.profiles.mirror.encode_fields`) stores one JSON value per
attribute, so the body is those values joined under their (JSON-escaped) names: no
``json.loads`` per field and no ``json.dumps`` of the whole profile, which was most of the
lookup's CPU. The answer equals ``with_ages(decode_fields(raw))``
(:func:`processors.profiles.view.with_ages`), tested in ``tests/unit/test_api_profile_body.py``.
The values are trusted as JSON: only the mirror writes these hashes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

#: attribute added at read time (it depends on the present), as with_ages does
AGE = "oldest_open_feedback_age_seconds"
_OLDEST = b"oldest_open_feedback_at"
_AGE = AGE.encode()
_AGE_NAME = json.dumps(AGE).encode() + b":"
#: names seen so far -> their JSON key prefix; bounded, names are the view's attributes
_names: dict[bytes, bytes] = {}
_MAX_NAMES = 1024


def _name(raw: bytes) -> bytes:
    found = _names.get(raw)
    if found is None:
        found = json.dumps(raw.decode(), ensure_ascii=False).encode() + b":"
        if len(_names) < _MAX_NAMES:
            _names[raw] = found
    return found


def profile_body(raw: Mapping[bytes, bytes], now_ms: int) -> bytes | None:
    """The profile as JSON bytes from an HGETALL answer; ``None`` for a missing (empty) hash.

    Raises ``ValueError`` when ``oldest_open_feedback_at`` is not an integer or null.
    """
    if not raw:
        return None
    parts = []
    oldest = b"null"
    for name, value in raw.items():
        if name == _AGE:  # with_ages overrides a stored one
            continue
        if name == _OLDEST:
            oldest = value
        parts.append(_name(name) + value)
    if oldest == b"null":
        parts.append(_AGE_NAME + b"null")
    else:
        parts.append(_AGE_NAME + repr((now_ms - int(oldest)) / 1000).encode())
    return b"{" + b",".join(parts) + b"}"
