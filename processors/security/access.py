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
#: actions whose source ip a rule reads (credential stuffing): only their ip is pseudonymised,
#: the keyed HMAC being the costliest part of reading an event
IP_ACTIONS = frozenset({"login_failure"})


# not frozen: a frozen dataclass sets each of its 19 fields through object.__setattr__, which
# made building this view the costliest step per event; nothing writes to it after reading
@dataclass(slots=True)
class Access:
    event_id: str
    #: event time (epoch ms): windows use it, so a replay sees the same windows
    ts: int
    principal: str
    principal_type: str
    action: str
    #: pseudonym of the source ip (clear only with ``store_pii_in_clear``); None unless the
    #: action is in :data:`IP_ACTIONS`
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
        get = record.get
        action = record["action"]
        ip = (get("ip") or None) if action in IP_ACTIONS else None
        if ip is not None and not clear:
            ip = pseudonym(ip, "ip")
        # positional, in field order: the cheapest way to build the view
        return Access(
            record["event_id"],
            record["occurred_at"],
            record["principal_id"],
            record["principal_type"],
            action,
            ip,
            get("device_id") or None,
            get("geo_city"),
            get("geo_country"),
            get("geo_lat"),
            get("geo_lon"),
            get("staff_team"),
            get("target_customer_id"),
            get("record_count") or 1,
            get("amount_minor"),
            get("auth_method"),
            offset,
            partition,
        )

    return read
