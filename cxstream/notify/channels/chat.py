"""Chat incoming webhooks: Slack's ``{text, blocks}`` or a Teams ``MessageCard``.

Incoming webhooks carry no idempotency header; the delivery key is in the message text so that
people can tell a repeat, and the delivery log keeps repeats to the crash window.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from cxstream.notify.channels import Delivery
from cxstream.notify.channels.posting import post
from cxstream.notify.notification import Notification

_COLOURS = {"info": "439FE0", "warning": "DAA038", "critical": "A30200"}


def _lines(notification: Notification) -> list[str]:
    lines = [f"*{notification.level.upper()}* [{notification.department}] {notification.summary}"]
    if notification.deadline_at is not None:
        lines.append(
            f"deadline: <!date^{notification.deadline_at // 1000}^{{date_short}} "
            f"{{time}}|{notification.deadline_at}>"
        )
    if notification.late_ms:
        lines.append(f"fired {notification.late_ms / 1000:.0f} s late")
    if notification.link:
        lines.append(f"<{notification.link}|open item>")
    return lines


def slack_message(notification: Notification, key: str) -> dict[str, Any]:
    text = "\n".join(_lines(notification))
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert `{key}`"}]},
        ],
    }


def teams_message(notification: Notification, key: str) -> dict[str, Any]:
    level = notification.level
    colour = _COLOURS.get(level, _COLOURS["critical" if "escalation" in level else "warning"])
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "themeColor": colour,
        "summary": notification.summary,
        "title": f"{level.upper()} [{notification.department}]",
        "text": "<br>".join(_lines(notification)) + f"<br>alert {key}",
    }


class ChatChannel:
    name = "chat"

    def __init__(
        self, session: aiohttp.ClientSession, *, style: str = "slack", timeout: float = 10.0
    ) -> None:
        self._session = session
        self._render = teams_message if style == "teams" else slack_message
        self._timeout = timeout

    async def send(self, delivery: Delivery) -> None:
        body = json.dumps(self._render(delivery.notification, delivery.key)).encode()
        await post(
            self._session,
            delivery.address,
            body,
            {"content-type": "application/json"},
            step=f"notify.chat to {delivery.recipient}",
            timeout=self._timeout,
        )
