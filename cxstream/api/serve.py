"""Running the API: one process, or ``api.processes`` processes sharing the port.

With several processes each binds the same port with ``SO_REUSEPORT`` and the kernel spreads
new connections over them; the parent only supervises (if one child exits, the others are
stopped too, and the exit code is the child's). Each process has its own Kafka producer, Redis
pool, rate limiter and Prometheus registry: ``/metrics`` shows the process that answered.

``api.loop``: ``auto`` uses uvloop when it is importable (cheaper socket writes and event-loop
turns, see ``cxstream/bench/api.py``), else asyncio's loop.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import signal
from collections.abc import Callable
from types import FrameType

from cxstream.errors import ConfigurationError
from cxstream.settings import Settings


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """A fresh event loop of kind ``choice`` (``auto``, ``uvloop``, ``asyncio``)."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError as exc:
            if choice == "uvloop":
                raise ConfigurationError(
                    "api.loop=uvloop but uvloop is not installed: pip install uvloop"
                ) from exc
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the API in this process until SIGINT/SIGTERM."""
    from aiohttp import web

    from cxstream.api.app import create_api

    loop = new_event_loop(settings.api.loop)
    asyncio.set_event_loop(loop)
    web.run_app(
        create_api(settings),
        host=host,
        port=port,
        reuse_port=reuse_port or None,
        access_log=None,  # per-request logs would cost more than the lookups; see /metrics
        print=echo,
        loop=loop,
    )


def _child(settings: Settings, host: str, port: int) -> None:
    logging.basicConfig(level=settings.log_level.upper())
    serve(settings, host, port, reuse_port=True, echo=lambda text: None)


def serve_processes(settings: Settings, host: str, port: int, processes: int) -> int:
    """Serve with ``processes`` processes on one port; returns the exit code."""
    if port == 0:
        raise ConfigurationError(
            f"api.processes={processes} needs a fixed api.port (0 would give each its own port)"
        )
    spawn = multiprocessing.get_context("spawn")
    children = [
        spawn.Process(target=_child, args=(settings, host, port), name=f"cxstream-api-{i}")
        for i in range(processes)
    ]
    for child in children:
        child.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: aiohttp shuts down gracefully

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        multiprocessing.connection.wait([child.sentinel for child in children])
        stop(signal.SIGTERM, None)
        for child in children:
            child.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [child.exitcode or 0 for child in children]
    # a child stopped by our SIGTERM exits 0 (aiohttp's graceful exit); report a real failure
    return next((code for code in codes if code not in (0, -signal.SIGTERM)), 0)
