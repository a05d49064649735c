"""Identity stitching: the internal topics that link anonymous activity to customers.

Anonymous web/app activity (``channel_interaction`` with ``anonymous_id`` but no
``customer_id``) is keyed by the anonymous id, so it lands on another partition (and maybe
another worker) than the customer's events. When an event carries both ids (the first page
after a login on the device/cookie used before), the customer's owner sends a **link**
``{"anonymous_id", "customer_id", "at"}`` to ``<prefix>.profile_links`` keyed by the anonymous
id: the owner of the anonymous id's partition gets it. That owner records the customer in the
anonymous id's state and sends a **merge** ``{"anonymous_id", "customer_id", "version",
"activity"}`` to ``<prefix>.profile_merges`` keyed by the customer id, carrying the anonymous
id's *whole* activity so far and its version (events folded in); every later anonymous event
sends a new merge. The customer's owner keeps the merge with the highest version per anonymous
id, so duplicates, replays and reordering change nothing, and "activity before the link" and
"after" end up the same. First link wins: an anonymous id linked to a second customer stays with
the first (counted as ``link_conflicts``).

Erasure: the customer's owner sends an **erase link** (``"erase": true``, ``at`` = erasure
time) for every anonymous id linked to them; that id's owner replaces its state by an
erased-marker (offsets and erasure time, no customer id), drops its events that occurred up to
then and ignores links made before it, so a replay brings nothing back.

Sends are at-least-once: a replayed input (crash before its offsets were committed) re-sends the
link or merge it may have lost, which the receivers absorb.

Both topics carry JSON (not Avro: they are internal, never leave the platform); their lanes
decode JSON and dead-letter what does not parse.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from cxstream.errors import DecodeError
from streams.batching import BatchDecoder, InputEvent
from streams.dlq import SourceMessage

log = logging.getLogger(__name__)

LINKS = "profile_links"
MERGES = "profile_merges"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_REQUIRED = {
    LINKS: ("anonymous_id", "customer_id"),
    MERGES: ("anonymous_id", "customer_id", "version", "activity"),
}


def link_message(anonymous_id: str, customer_id: str, at: int, *, erase: bool = False) -> bytes:
    """A link; with ``erase`` the customer was erased at ``at`` and so is the id's activity."""
    record: dict[str, Any] = {"anonymous_id": anonymous_id, "customer_id": customer_id, "at": at}
    if erase:
        record["erase"] = True
    return _dumps(record).encode()


def merge_message(
    anonymous_id: str, customer_id: str, version: int, activity: dict[str, Any]
) -> bytes:
    return _dumps(
        {
            "anonymous_id": anonymous_id,
            "customer_id": customer_id,
            "version": version,
            "activity": activity,
        }
    ).encode()


def parse(name: str, value: bytes | None) -> dict[str, Any]:
    """A link or merge record; raises ``DecodeError`` naming what is wrong."""
    if not value:
        raise DecodeError(f"{name}: message has no value", reason="empty")
    try:
        record = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"{name}: not JSON: {exc}", reason="invalid_json") from exc
    if not isinstance(record, dict):
        raise DecodeError(f"{name}: a {type(record).__name__}, not an object", reason="not_object")
    missing = [field for field in _REQUIRED[name] if record.get(field) is None]
    if missing:
        raise DecodeError(f"{name}: missing {', '.join(missing)}", reason="missing_field")
    return record


class JsonDecoder(BatchDecoder):
    """Decodes a batch of an internal JSON topic; what does not parse is dead-lettered."""

    async def decode(self, messages: Sequence[Any]) -> list[InputEvent]:
        (name,) = self.expect
        good: list[InputEvent] = []
        pending = []
        for message in messages:
            try:
                record = parse(name, message.value)
            except DecodeError as exc:
                log.warning(
                    "%s: %s[%d]@%d -> dead letters: %s",
                    self.step,
                    message.topic,
                    message.partition,
                    message.offset,
                    exc,
                )
                source = SourceMessage.from_faust(message)
                pending.append(await self.dead_letters.send(source, exc, step=self.step))
                continue
            good.append(
                InputEvent(
                    name,
                    record,
                    0,
                    message.key,
                    message.topic,
                    message.partition,
                    message.offset,
                    round((message.timestamp or 0) * 1000),
                    message,
                )
            )
        await self.dead_letters.delivered(pending)
        return good
