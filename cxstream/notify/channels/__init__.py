"""Delivery channels. Each has ``name`` and ``async send(delivery)`` raising ``DeliveryError``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cxstream.notify.notification import Notification


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert to one recipient on one channel."""

    #: idempotency key: same alert, recipient and channel give the same key on every replay
    key: str
    notification: Notification
    recipient: str
    address: str


class Channel(Protocol):
    name: str

    async def send(self, delivery: Delivery) -> None: ...


def delivery_key(alert_id: str, recipient: str, channel: str) -> str:
    return f"{alert_id}/{recipient}/{channel}"
