"""``POST /v1/alerts/{alert_id}/ack``: on-call acknowledges an alert and stops its escalation.

Choice: an ack store in the notifier's delivery log, not a ``feedback_status_changed`` event.
That event's ``acknowledged`` status means the bank acknowledged the *customer's* feedback (a
lifecycle step the SLA clock reads), needs the clear ``customer_id`` that alerts deliberately do
not carry, and exists only for feedback, while acks also apply to security and pipeline alerts.
So acknowledging alert X of a subject suppresses delivery of every later *escalation* level
above X's level for that subject (warnings and breaches are still sent: a reopened item must
page again). The SLA engine keeps firing its alerts (they land in ClickHouse for the board);
only paging stops.

Authentication: ``Authorization: Bearer <notify.ack_api_key>`` (constant-time comparison).
Body (optional JSON): ``{"by": "<who>"}``. Answers 200 with the acknowledgement, 401, 404.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cxstream.notify.delivery_log import DeliveryLog
from cxstream.notify.notification import ESCALATIONS, LEVELS
from cxstream.settings import Settings

if TYPE_CHECKING:
    from cxstream.notify.service import Notifier

LOG_KEY = web.AppKey("delivery_log", DeliveryLog)
API_KEY = web.AppKey("api_key", bytes)


def ack_app(
    api_key: str, delivery_log: DeliveryLog, notifier: Notifier | None = None
) -> web.Application:
    app = web.Application()
    app[LOG_KEY] = delivery_log
    app[API_KEY] = api_key.encode()
    app.router.add_post("/v1/alerts/{alert_id}/ack", _ack)
    if notifier is not None:

        async def stats(_request: web.Request) -> web.Response:
            return web.json_response(dict(notifier.counts))

        app.router.add_get("/v1/notify/stats", stats)
    return app


def _authorised(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), request.app[API_KEY]
    )


async def _ack(request: web.Request) -> web.Response:
    if not _authorised(request):
        return web.json_response(
            {"error": "missing or wrong bearer token"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    alert_id = request.match_info["alert_id"]
    by: str | None = None
    if request.can_read_body:
        try:
            body: Any = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if isinstance(body, dict) and isinstance(body.get("by"), str):
            by = body["by"][:200]
    ack = request.app[LOG_KEY].acknowledge(alert_id, by)
    if ack is None:
        return web.json_response({"error": f"unknown alert {alert_id}"}, status=404)
    return web.json_response(
        {
            "alert_id": alert_id,
            "acknowledged_at": ack.at_ms,
            "acknowledged_level": LEVELS[ack.level_rank],
            "suppresses": sorted(
                level for level in ESCALATIONS if LEVELS.index(level) > ack.level_rank
            ),
        }
    )


async def start_ack_api(
    settings: Settings, delivery_log: DeliveryLog, notifier: Notifier | None = None
) -> web.AppRunner:
    config = settings.notify
    if config.ack_api_key is None:
        raise ValueError("notify.ack_api_key is unset: the ack API would be unauthenticated")
    runner = web.AppRunner(ack_app(config.ack_api_key.get_secret_value(), delivery_log, notifier))
    await runner.setup()
    await web.TCPSite(runner, config.ack_host, config.ack_port).start()
    return runner
