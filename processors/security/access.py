"""The view of an ``access_event`` record that the rules and the model read.

The source ip is PII: it is replaced by its keyed pseudonym here, before anything is stored,
logged or flagged (``settings.privacy.store_pii_in_clear`` keeps it in clear on request).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cxstream.privacy import pseudonymiser
from cxstream.settings import Settings

#: actions that are a login attempt (the denominator of false flags per 10k benign logins)
LOGIN_ACTIONS = frozenset({"login_success", "login_failure"})


@dataclass(frozen=True, slots=True)
class Access:
    event_id: str
    #: event time (epoch ms): windows use it, so a replay sees the same windows
    ts: int
    principal: str
    principal_type: str
    action: str
    #: pseudonym of the source ip (clear only with ``store_pii_in_clear``)
    ip: str | None
    device: str | None
    city: str | None
    country: str | None
    lat: float | None
    lon: float | None
    team: str | None
    target: str | None
    record_count: int
    amount_minor: int | None
    auth_method: str | None
    offset: int = -1
    partition: int = -1


def access_reader(settings: Settings) -> Callable[[Mapping[str, Any], int, int], Access]:
    """``(record, partition, offset) -> Access`` with the ip pseudonymised by ``settings``."""
    clear = settings.privacy.store_pii_in_clear
    pseudonym = pseudonymiser(settings)

    def read(record: Mapping[str, Any], partition: int = -1, offset: int = -1) -> Access:
        ip = record.get("ip")
        if ip and not clear:
            ip = pseudonym(ip, "ip")
        return Access(
            event_id=record["event_id"],
            ts=record["occurred_at"],
            principal=record["principal_id"],
            principal_type=record["principal_type"],
            action=record["action"],
            ip=ip or None,
            device=record.get("device_id") or None,
            city=record.get("geo_city"),
            country=record.get("geo_country"),
            lat=record.get("geo_lat"),
            lon=record.get("geo_lon"),
            team=record.get("staff_team"),
            target=record.get("target_customer_id"),
            record_count=record.get("record_count") or 1,
            amount_minor=record.get("amount_minor"),
            auth_method=record.get("auth_method"),
            offset=offset,
            partition=partition,
        )

    return read
