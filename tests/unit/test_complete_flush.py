"""Faust's producer-buffer flush returns only once every buffered table write was handed over.

Faust's own flush gives up after 0.1 s without progress; with sends slower than that (a busy
loop, a slow broker) offsets committed right after it overtook their table writes.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.complete_flush import install_complete_flush


def _future(sent: list[int], number: int, seconds: float) -> Any:
    async def publish_message(fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(seconds)
        sent.append(number)

    channel = SimpleNamespace(publish_message=publish_message)
    return SimpleNamespace(message=SimpleNamespace(channel=channel))


def test_flush_waits_for_slow_sends_including_the_one_in_hand() -> None:
    install_complete_flush()
    from faust.transport.producer import ProducerBuffer

    async def scenario() -> list[int]:
        buffer = ProducerBuffer()
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
        await buffer.start()
        try:
            sent: list[int] = []
            for number in range(3):
                buffer.put(_future(sent, number, 0.25))  # each slower than Faust's 0.1 s
            await asyncio.sleep(0)  # the background task takes the first one in hand
            await buffer.flush()
            return sent
        finally:
            await buffer.stop()

    assert asyncio.run(scenario()) == [0, 1, 2]
