"""Choosing the API's event loop and refusing a process count that cannot share a port."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from cxstream.api.serve import new_event_loop, serve_processes
from cxstream.errors import ConfigurationError
from cxstream.settings import Settings


@pytest.mark.parametrize(
    ("choice", "kind"),
    [("auto", uvloop.Loop), ("uvloop", uvloop.Loop), ("asyncio", asyncio.SelectorEventLoop)],
)
def test_loop_choice(choice: str, kind: type) -> None:
    loop = new_event_loop(choice)
    try:
        assert type(loop) is kind
    finally:
        loop.close()


def test_several_processes_need_a_fixed_port() -> None:
    with pytest.raises(ConfigurationError, match=r"fixed api\.port"):
        serve_processes(Settings(), "127.0.0.1", 0, 2)
