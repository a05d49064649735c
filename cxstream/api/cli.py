"""``cxstream api``: serve the HTTP API (see :mod:`cxstream.api.app`, :mod:`cxstream.api.serve`)."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default=None, help="Override CX_API__HOST.")
@click.option("--port", type=int, default=None, help="Override CX_API__PORT.")
@click.option("--processes", type=int, default=None, help="Override CX_API__PROCESSES.")
def api(host: str | None, port: int | None, processes: int | None) -> None:
    """Serve the HTTP API (ingest, profile and recommendation lookups) until Ctrl-C/SIGTERM."""
    import logging

    from cxstream.api.serve import serve, serve_processes
    from cxstream.settings import load_settings

    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper())
    host = host or settings.api.host
    port = port if port is not None else settings.api.port
    processes = processes or settings.api.processes
    if processes > 1:
        raise SystemExit(serve_processes(settings, host, port, processes))
    serve(settings, host, port, echo=lambda text: click.echo(text, err=True))
