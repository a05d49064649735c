"""POST with the retry classification every HTTP channel shares."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp

from cxstream.notify.errors import DeliveryError

#: statuses worth retrying: timeouts, rate limits and server errors
RETRYABLE = frozenset({408, 425, 429})


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    step: str,
    timeout: float,
) -> None:
    # chat webhook URLs embed their token: errors (logs, dead letters) name only the host
    where = urlsplit(url).netloc or "?"
    try:
        async with session.post(
            url, data=body, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            status = response.status
            if 200 <= status < 300:
                await response.read()
                return
            text = (await response.text(errors="replace"))[:200]
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise DeliveryError(f"{step}: POST to {where} failed: {exc!r}", retryable=True) from exc
    raise DeliveryError(
        f"{step}: POST to {where} answered {status}: {text}",
        retryable=status >= 500 or status in RETRYABLE,
        status=status,
    )
