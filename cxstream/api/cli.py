"""``cxstream api``: serve the HTTP API (see :mod:`cxstream.api.app`)."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default=None, help="Override CX_API__HOST.")
@click.option("--port", type=int, default=None, help="Override CX_API__PORT.")
def api(host: str | None, port: int | None) -> None:
    """Serve the HTTP API (ingest, profile and recommendation lookups) until Ctrl-C/SIGTERM."""
    import logging

    from aiohttp import web

    from cxstream.api.app import create_api
    from cxstream.settings import load_settings

    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper())
    app = create_api(settings)
    web.run_app(
        app,
        host=host or settings.api.host,
        port=port if port is not None else settings.api.port,
        access_log=None,  # per-request logs would cost more than the lookups; see /metrics
        print=lambda text: click.echo(text, err=True),
    )
