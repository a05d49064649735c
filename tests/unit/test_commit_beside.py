"""The count-triggered offset commit runs beside the drain loop (streams/batching.py).

Faust awaited it inside the loop, which stood still for the commit's producer flush and broker
round trip. These tests drive ``_commit_beside`` on the real consumer class with only its
``commit`` and ``crash`` replaced by recorders, which is the scheduling under test.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.batching import _batching_transport_class


class _Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.started = 0
        self.release = asyncio.Event()
        self.fail = fail
        self.crashed: list[BaseException] = []

    async def commit(self) -> bool:
        self.started += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("broker said no")
        return True

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


def _consumer(recorder: _Recorder) -> Any:
    cls = _batching_transport_class().Consumer
    consumer = cls.__new__(cls)  # no app, no broker: only the two methods below run
    consumer.commit = recorder.commit
    consumer.crash = recorder.crash
    return consumer


def test_the_loop_does_not_wait_and_one_commit_runs_at_a_time() -> None:
    async def scenario() -> None:
        recorder = _Recorder()
        consumer = _consumer(recorder)
        consumer._commit_beside()  # returns at once: the commit waits for `release`
        await asyncio.sleep(0)
        assert recorder.started == 1
        consumer._commit_beside()  # still running: not started twice
        await asyncio.sleep(0)
        assert recorder.started == 1
        recorder.release.set()
        await consumer._beside
        consumer._commit_beside()  # done: the next one starts
        await asyncio.sleep(0)
        assert recorder.started == 2
        await consumer._beside
        assert not recorder.crashed

    asyncio.run(scenario())


def test_a_failed_commit_crashes_the_consumer() -> None:
    async def scenario() -> None:
        recorder = _Recorder(fail=True)
        consumer = _consumer(recorder)
        consumer._commit_beside()
        recorder.release.set()
        with pytest.raises(RuntimeError):
            await consumer._beside
        await asyncio.sleep(0)
        await consumer._crashing
        assert [str(e) for e in recorder.crashed] == ["broker said no"]

    asyncio.run(scenario())
